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
//!   call runs, and the calling thread drives the I/O itself, see [`Driver`]) and `start`
//!   (asyncio: the call runs on one I/O thread and its answer is queued in a [`Completions`],
//!   which wakes the event loop through a pipe; the I/O thread never takes the GIL).
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
    /// The I/O thread of this process (asyncio channels): calls run there, and their answers
    /// reach the event loop through [`Completions`].
    Io(Arc<Runtime>),
}

/// The callers' runtime and the I/O runtime of this process (made again in a forked child:
/// a copy of the parent's would share its epoll instance, and has no threads).
static CALLER_RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);
static IO_RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

fn process_runtime(
    slot: &Mutex<Option<(u32, Arc<Runtime>)>>,
    build: fn() -> std::io::Result<Runtime>,
) -> PyResult<Arc<Runtime>> {
    let pid = std::process::id();
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, runtime)) = slot.as_ref()
        && *owner == pid
    {
        return Ok(Arc::clone(runtime));
    }
    let runtime = build()
        .map(Arc::new)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the I/O runtime: {e}")))?;
    *slot = Some((pid, Arc::clone(&runtime)));
    Ok(runtime)
}

fn caller_runtime() -> PyResult<Arc<Runtime>> {
    process_runtime(&CALLER_RUNTIME, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    })
}

/// One worker thread: a call's work is small, and a second thread would mostly add wake-ups
/// on a small machine.
fn io_runtime() -> PyResult<Arc<Runtime>> {
    process_runtime(&IO_RUNTIME, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mintcache-io")
            .enable_all()
            .build()
    })
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
    /// (`None`: plain text). `asyncio`: calls are started with `start` rather than made
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
            Driver::Io(io_runtime()?)
        } else {
            Driver::Caller(caller_runtime()?)
        };
        // The channel's background task starts on the runtime that will drive it.
        let _entered = match &driver {
            Driver::Caller(runtime) | Driver::Io(runtime) => runtime.enter(),
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
                "this channel is for asyncio: use start",
            ));
        };
        let call = self.prepare(path, request, metadata, timeout)?;
        let result = py.detach(|| runtime.block_on(call.run()));
        answer(py, result)
    }

    /// Starts an asyncio call on the I/O thread: its answer is queued in `completions` under
    /// `token` (see [`Completions`]). Returns what stops it.
    #[pyo3(signature = (path, request, metadata, timeout, completions, token))]
    fn start(
        &self,
        path: &str,
        request: &[u8],
        metadata: &Metadata,
        timeout: Option<f64>,
        completions: &Completions,
        token: u64,
    ) -> PyResult<Aborter> {
        let Driver::Io(runtime) = &self.driver else {
            return Err(PyRuntimeError::new_err(
                "this channel is not for asyncio: use call",
            ));
        };
        let call = self.prepare(path, request, metadata, timeout)?;
        let queue = Arc::clone(&completions.shared);
        let handle = runtime.spawn(async move {
            let result = call.run().await;
            queue.push(token, result);
        });
        Ok(Aborter {
            handle: handle.abort_handle(),
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
            Driver::Io(_) => "asyncio",
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

/// The answers of one event loop's calls (`Channel.start`), handed over without the GIL: the
/// I/O thread queues each answer and, when the queue was empty, writes a byte to a pipe that the
/// loop watches (`loop.add_reader(completions.fileno(), ...)`); the loop then `take`s every
/// answer queued. One wake-up of the loop per batch of answers, and the I/O thread never waits
/// for the GIL.
#[pyclass(frozen, module = "mintcache._native")]
struct Completions {
    shared: Arc<CompletionQueue>,
    reader: std::io::PipeReader,
}

/// What a call ended with: the answer and its degraded flag, or the failure.
type Outcome = Result<(Bytes, bool), Status>;

struct CompletionQueue {
    done: Mutex<Vec<(u64, Outcome)>>,
    writer: std::io::PipeWriter,
}

impl CompletionQueue {
    fn push(&self, token: u64, result: Outcome) {
        let was_empty = {
            let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
            done.push((token, result));
            done.len() == 1
        };
        if was_empty {
            // The pipe holds 64 KiB and a byte is written only when the loop has taken every
            // answer: it cannot fill. An error means the loop's side is gone: nobody waits.
            let _ = std::io::Write::write(&mut &self.writer, &[1]);
        }
    }
}

#[pymethods]
impl Completions {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, writer) = std::io::pipe()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot make a pipe: {e}")))?;
        Ok(Self {
            shared: Arc::new(CompletionQueue {
                done: Mutex::new(Vec::new()),
                writer,
            }),
            reader,
        })
    }

    /// The pipe's reading end, for `loop.add_reader` (set it non-blocking).
    fn fileno(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.reader)
    }

    /// Every answer queued since the last call: `(token, True, answer: bytes, degraded)` or
    /// `(token, False, code, details, never_sent)`.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let done = std::mem::take(
            &mut *self
                .shared
                .done
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        done.into_iter()
            .map(|(token, result)| match result {
                Ok((body, degraded)) => {
                    (token, true, PyBytes::new(py, &body), degraded).into_pyobject(py)
                }
                Err(status) => {
                    let never_sent = never_sent(&status);
                    (
                        token,
                        false,
                        status.code() as i32,
                        status.message().to_owned(),
                        never_sent,
                    )
                        .into_pyobject(py)
                }
            })
            .collect()
    }
}

/// Stops a call started with `Channel.start` (its answer is then never queued).
#[pyclass(frozen, module = "mintcache._native")]
struct Aborter {
    handle: tokio::task::AbortHandle,
}

#[pymethods]
impl Aborter {
    fn abort(&self) {
        self.handle.abort();
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
    async fn run(self) -> Outcome {
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

fn answer(py: Python<'_>, result: Outcome) -> PyResult<Bound<'_, PyTuple>> {
    match result {
        Ok((body, degraded)) => (PyBytes::new(py, &body), degraded).into_pyobject(py),
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
    m.add_class::<Completions>()?;
    m.add_class::<Aborter>()?;
    m.add("RpcError", m.py().get_type::<RpcError>())?;
    Ok(())
}
