//! `mintcache._native`: the transport of the Python package `mintcache`, built on the
//! `mintcache-client` crate (its connection builder: endpoints, TLS, TCP_NODELAY, connect
//! timeout; tonic's HTTP/2 channel underneath).
//!
//! It sends one gRPC call and hands back the answer, nothing more. What a call means (messages,
//! retries, the circuit breaker, deadlines across attempts, the mint) stays in the Python package,
//! which serializes the messages itself: this module carries bytes, as grpcio does for it in the
//! pure-Python transport, so that both transports run the same Python code above them.
//!
//! - [`Channel`]: the connections to one endpoint. `call` (sync: the GIL is released while the
//!   call runs, and the calling thread drives the I/O itself, see [`Driver`]) and `call_async`
//!   (asyncio: an awaitable completed from the I/O thread, through pyo3-async-runtimes).
//! - [`Metadata`]: request metadata made once per set of call options (the token is marked
//!   sensitive and never shown), attached to each call by reference.
//! - `RpcError(code, details, never_sent)`: a failed call, with its gRPC status code number and
//!   whether it failed before any request could leave (no connection), so that Python may send
//!   even a write again.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use mintcache_client::{Backoff, Client};
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::{Code, Status};

pyo3::create_exception!(
    _native,
    RpcError,
    PyException,
    "A call that failed: args are (code: int, details: str, never_sent: bool)."
);

/// The largest answer taken (grpcio's default is 4 MiB; a batched read of large values can be
/// more). The Python package's `MAX_RECEIVE_BYTES`.
const MAX_RECEIVE_BYTES: usize = 64 * 1024 * 1024;
/// The response header that flags a read answered as a miss because memcached failed.
const DEGRADED_HEADER: &str = "x-cache-degraded";

/// Messages as the bytes Python serialized, both ways.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Who drives a channel's I/O.
#[derive(Clone)]
enum Driver {
    /// The thread that waits for the answer runs the runtime while it waits (a current-thread
    /// runtime per process, shared by every sync channel): the request is written and the
    /// answer read on the caller's thread, with no hand-off to another thread and back. Several
    /// Python threads may call at once; one drives, the others are woken with their answers.
    Caller(Arc<Runtime>),
    /// The I/O thread of pyo3-async-runtimes' runtime (asyncio channels).
    Io,
}

/// The callers' runtime of this process (made again in a forked child, whose copy of the
/// parent's would share its epoll instance).
static CALLER_RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

fn caller_runtime() -> PyResult<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = CALLER_RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, runtime)) = slot.as_ref()
        && *owner == pid
    {
        return Ok(Arc::clone(runtime));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}")))?;
    *slot = Some((pid, Arc::clone(&runtime)));
    Ok(runtime)
}

/// The runtime of asyncio channels: pyo3-async-runtimes', with one worker thread (the calls'
/// work is small; a second thread would mostly add wake-ups on a small machine).
fn io_runtime() -> &'static Runtime {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(1)
            .thread_name("mintcache-io")
            .enable_all();
        pyo3_async_runtimes::tokio::init(builder);
    });
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Request metadata, made once per set of call options.
#[pyclass(frozen, module = "mintcache._native")]
struct Metadata {
    map: MetadataMap,
}

#[pymethods]
impl Metadata {
    /// `pairs`: `(key, value)` text pairs; `authorization` is marked sensitive.
    #[new]
    fn new(pairs: Vec<(String, String)>) -> PyResult<Self> {
        let mut map = MetadataMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            let name = AsciiMetadataKey::from_bytes(key.as_bytes())
                .map_err(|_| PyValueError::new_err(format!("invalid metadata key {key:?}")))?;
            let mut text = AsciiMetadataValue::try_from(value.as_str())
                // The value is not echoed: it may be a token.
                .map_err(|_| PyValueError::new_err(format!("{key}: not valid metadata text")))?;
            if key == "authorization" {
                text.set_sensitive(true);
            }
            map.append(name, text);
        }
        Ok(Self { map })
    }

    fn __repr__(&self) -> String {
        let keys: Vec<&str> = self
            .map
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect();
        format!("Metadata(keys={keys:?})")
    }
}

/// The connections to one endpoint.
#[pyclass(frozen, module = "mintcache._native")]
struct Channel {
    channel: Mutex<Option<tonic::transport::Channel>>,
    driver: Driver,
    target: String,
}

/// TLS settings from Python: PEM bytes of the CA (`None`: the system roots), the client
/// certificate and key (mutual TLS), and the name to check the server's certificate against.
type TlsSettings = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<String>,
);

#[pymethods]
impl Channel {
    /// `target`: `host:port` (`[v6]:port`) or `dns:///host:port`. `tls`: see [`TlsSettings`]
    /// (`None`: plain text). `asyncio`: calls are awaited with `call_async` rather than made
    /// with `call`. `connect_timeout`: seconds a connection may take to set up.
    #[new]
    #[pyo3(signature = (target, tls=None, asyncio=false, connect_timeout=5.0))]
    fn new(
        target: &str,
        tls: Option<TlsSettings>,
        asyncio: bool,
        connect_timeout: f64,
    ) -> PyResult<Self> {
        let authority = authority(target)?;
        let connect_timeout = seconds(connect_timeout, "connect_timeout")?
            .ok_or_else(|| PyValueError::new_err("connect_timeout must be seconds > 0"))?;
        let mut builder = Client::builder()
            .endpoint(authority)
            .connect_timeout(connect_timeout)
            .no_timeout()
            .retry(Backoff::NONE);
        if let Some((ca, cert, key, server_name)) = tls {
            let mut config = match ca {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_enabled_roots(),
            };
            match (cert, key) {
                (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
                (None, None) => {}
                _ => {
                    return Err(PyValueError::new_err(
                        "TLS: a client certificate needs both cert and key",
                    ));
                }
            }
            if let Some(name) = server_name {
                config = config.domain_name(name);
            }
            builder = builder.tls(config);
        }
        let driver = if asyncio {
            Driver::Io
        } else {
            Driver::Caller(caller_runtime()?)
        };
        // The channel's background task starts on the runtime that will drive it.
        let _entered = match &driver {
            Driver::Caller(runtime) => runtime.enter(),
            Driver::Io => io_runtime().enter(),
        };
        let client = builder
            .build()
            .map_err(|e| PyValueError::new_err(format!("endpoint {target:?}: {e}")))?;
        Ok(Self {
            channel: Mutex::new(Some(client.channel())),
            driver,
            target: target.to_owned(),
        })
    }

    /// One unary call: `path` (`/mintcache.v1.Cache/Get`), the serialized request, its
    /// metadata, and the seconds it may take (`None`: no deadline). Returns the serialized
    /// answer and whether the server flagged it degraded; raises `RpcError`. The GIL is
    /// released while the call runs.
    #[pyo3(signature = (path, request, metadata, timeout=None))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        request: &[u8],
        metadata: &Metadata,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let Driver::Caller(runtime) = &self.driver else {
            return Err(PyRuntimeError::new_err(
                "this channel is for asyncio: use call_async",
            ));
        };
        let call = self.prepare(path, request, metadata, timeout)?;
        let result = py.detach(|| runtime.block_on(call.run()));
        answer(py, result)
    }

    /// The asyncio form of [`call`](Self::call): returns an awaitable of the same answer.
    #[pyo3(signature = (path, request, metadata, timeout=None))]
    fn call_async<'py>(
        &self,
        py: Python<'py>,
        path: &str,
        request: &[u8],
        metadata: &Metadata,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !matches!(self.driver, Driver::Io) {
            return Err(PyRuntimeError::new_err(
                "this channel is not for asyncio: use call",
            ));
        }
        let call = self.prepare(path, request, metadata, timeout)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            call.run().await.map(Answer).map_err(rpc_error)
        })
    }

    /// Closes the connections (calls made afterwards raise `RuntimeError`).
    fn close(&self) {
        self.channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn __repr__(&self) -> String {
        let kind = match self.driver {
            Driver::Caller(_) => "sync",
            Driver::Io => "asyncio",
        };
        format!("Channel({:?}, {kind})", self.target)
    }
}

impl Channel {
    fn prepare(
        &self,
        path: &str,
        request: &[u8],
        metadata: &Metadata,
        timeout: Option<f64>,
    ) -> PyResult<Call> {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("this channel is closed"))?;
        Ok(Call {
            channel,
            path: method_path(path)?,
            body: Bytes::copy_from_slice(request),
            metadata: metadata.map.clone(),
            timeout: match timeout {
                None => None,
                Some(t) => Some(seconds(t, "timeout")?.unwrap_or(Duration::ZERO)),
            },
        })
    }
}

/// One call, ready to run without the GIL.
struct Call {
    channel: tonic::transport::Channel,
    path: PathAndQuery,
    body: Bytes,
    metadata: MetadataMap,
    timeout: Option<Duration>,
}

impl Call {
    async fn run(self) -> Result<(Bytes, bool), Status> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        if self.timeout == Some(Duration::ZERO) {
            return Err(Status::deadline_exceeded("Deadline Exceeded"));
        }
        let mut grpc =
            tonic::client::Grpc::new(self.channel).max_decoding_message_size(MAX_RECEIVE_BYTES);
        let mut request = tonic::Request::new(self.body);
        *request.metadata_mut() = self.metadata;
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
            grpc.unary(request, self.path, RawCodec).await
        };
        // tonic enforces the `grpc-timeout` it sends until the answer's headers; this bounds the
        // whole call, the answer's body included.
        let result = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("Deadline Exceeded"))),
            None => call.await,
        };
        match result {
            Ok(response) => {
                let degraded = response
                    .metadata()
                    .get(DEGRADED_HEADER)
                    .is_some_and(|v| v.as_bytes() == b"1");
                Ok((response.into_inner(), degraded))
            }
            // tonic enforces the `grpc-timeout` it sends too, as CANCELLED: past the
            // deadline, that is DEADLINE_EXCEEDED.
            Err(status)
                if status.code() == Code::Cancelled
                    && deadline.is_some_and(|d| Instant::now() >= d) =>
            {
                Err(Status::deadline_exceeded("Deadline Exceeded"))
            }
            Err(status) => Err(transport_failure_as_unavailable(status)),
        }
    }
}

/// The answer of `call_async`, turned into `(bytes, bool)` when the awaitable completes.
struct Answer((Bytes, bool));

impl<'py> IntoPyObject<'py> for Answer {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        let (body, degraded) = self.0;
        (PyBytes::new(py, &body), degraded).into_pyobject(py)
    }
}

fn answer(py: Python<'_>, result: Result<(Bytes, bool), Status>) -> PyResult<Bound<'_, PyTuple>> {
    match result {
        Ok(answer) => Answer(answer).into_pyobject(py),
        Err(status) => Err(rpc_error(status)),
    }
}

fn rpc_error(status: Status) -> PyErr {
    let never_sent = never_sent(&status);
    RpcError::new_err((
        status.code() as i32,
        status.message().to_owned(),
        never_sent,
    ))
}

/// Whether a failed call's request cannot have left this process: tonic reports a connection
/// that could not be set up (TCP connect, TLS handshake) as a `ConnectError` among the status's
/// sources. Any other failure may have come after the request was sent.
fn never_sent(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A call that died with its connection, or on a connection that never became HTTP/2 (a
/// plain-text client at a TLS port), comes back from tonic as CANCELLED, UNKNOWN or INTERNAL
/// with the transport's error as its source (statuses sent by a server have none): it is a
/// transport failure like a refused connection, reported as UNAVAILABLE (as grpcio does).
fn transport_failure_as_unavailable(status: Status) -> Status {
    let from_transport = std::error::Error::source(&status).is_some();
    if from_transport
        && matches!(
            status.code(),
            Code::Cancelled | Code::Unknown | Code::Internal
        )
    {
        Status::unavailable(format!("connection failed: {}", status.message()))
    } else {
        status
    }
}

/// The methods' paths, parsed once.
fn method_path(path: &str) -> PyResult<PathAndQuery> {
    const KNOWN: [&str; 14] = [
        "/mintcache.v1.Cache/Get",
        "/mintcache.v1.Cache/GetMany",
        "/mintcache.v1.Cache/Set",
        "/mintcache.v1.Cache/SetMany",
        "/mintcache.v1.Cache/Add",
        "/mintcache.v1.Cache/Delete",
        "/mintcache.v1.Cache/DeleteMany",
        "/mintcache.v1.Cache/Touch",
        "/mintcache.v1.Cache/Invalidate",
        "/mintcache.v1.Cache/Increment",
        "/mintcache.v1.Cache/Flush",
        "/mintcache.v1.Cache/Peek",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    ];
    if let Some(known) = KNOWN.iter().find(|k| **k == path) {
        return Ok(PathAndQuery::from_static(known));
    }
    PathAndQuery::try_from(path)
        .map_err(|_| PyValueError::new_err(format!("invalid method path {path:?}")))
}

/// `host:port`, `[v6]:port` or `dns:///host:port` as the authority of an `http(s)://` URI (the
/// Python side checks the same before it picks this transport).
fn authority(target: &str) -> PyResult<&str> {
    let authority = target.strip_prefix("dns:///").unwrap_or(target);
    let digits = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let bare = !authority.contains(['/', '?', '#', '@', ',', ' '])
        && match authority.strip_prefix('[') {
            Some(v6) => v6
                .split_once("]:")
                .is_some_and(|(host, port)| !host.is_empty() && digits(port)),
            None => authority.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains(':') && digits(port)
            }),
        };
    if bare {
        Ok(authority)
    } else {
        Err(PyValueError::new_err(format!(
            "the native transport takes host:port or dns:///host:port targets, not {target:?}"
        )))
    }
}

fn seconds(value: f64, what: &str) -> PyResult<Option<Duration>> {
    if !value.is_finite() || value < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be seconds >= 0"
        )));
    }
    Ok((value > 0.0).then(|| Duration::from_secs_f64(value)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Channel>()?;
    m.add_class::<Metadata>()?;
    m.add("RpcError", m.py().get_type::<RpcError>())?;
    Ok(())
}
