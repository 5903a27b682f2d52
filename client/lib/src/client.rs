//! [`Client`]: one typed method per RPC, per-call overrides, deadlines and `UNAVAILABLE`
//! retries (only while a repeat cannot change the answer). The mint helper (`get_or_compute`)
//! is in `mint.rs`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::headers::{
    AUTHORIZATION_HEADER, CONSISTENCY_HEADER, DEBUG_HEADER, DEGRADED_HEADER, NAMESPACE_HEADER,
    VERSION_HEADER,
};
use crate::proto::cache_client::CacheClient;
use crate::proto::{self};
use crate::types::{DebugMode, LeaseToken, Lookup, SetOptions, wire_seconds};

/// What every call sends unless overridden: version, namespace, token, debug mode, cold-miss
/// protection.
#[derive(Clone, Default)]
pub(crate) struct CallDefaults {
    pub(crate) version: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) debug: Option<DebugMode>,
    pub(crate) lease_on_miss: Option<bool>,
    /// β of early refresh for reads (`None`: the server's).
    pub(crate) early_refresh_beta: Option<f64>,
    /// Reads skip the server's hot-key cache (`x-cache-consistency: strong`).
    pub(crate) strong: bool,
}

impl CallDefaults {
    /// The request metadata, in a fixed order.
    pub(crate) fn headers(&self) -> Result<Vec<(&'static str, AsciiMetadataValue)>, Error> {
        // gRPC allows printable ASCII in text metadata; http would also pass bytes >= 0x80.
        let value = |header: &'static str, text: &str| {
            text.bytes()
                .all(|b| b == b' ' || b.is_ascii_graphic())
                .then(|| AsciiMetadataValue::try_from(text).ok())
                .flatten()
                .ok_or(Error::InvalidMetadata { header })
        };
        let mut headers = Vec::with_capacity(4);
        if let Some(v) = &self.version {
            headers.push((VERSION_HEADER, value(VERSION_HEADER, v)?));
        }
        if let Some(ns) = &self.namespace {
            headers.push((NAMESPACE_HEADER, value(NAMESPACE_HEADER, ns)?));
        }
        if let Some(mode) = self.debug {
            headers.push((DEBUG_HEADER, AsciiMetadataValue::from_static(mode.as_str())));
        }
        if self.strong {
            headers.push((
                CONSISTENCY_HEADER,
                AsciiMetadataValue::from_static("strong"),
            ));
        }
        if let Some(token) = &self.token {
            let mut bearer = value(AUTHORIZATION_HEADER, &format!("Bearer {token}"))?;
            bearer.set_sensitive(true);
            headers.push((AUTHORIZATION_HEADER, bearer));
        }
        Ok(headers)
    }
}

impl fmt::Debug for CallDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallDefaults")
            .field("version", &self.version)
            .field("namespace", &self.namespace)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("debug", &self.debug)
            .field("lease_on_miss", &self.lease_on_miss)
            .field("early_refresh_beta", &self.early_refresh_beta)
            .field("strong", &self.strong)
            .finish()
    }
}

/// Whether a failed call may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retried on `UNAVAILABLE`: repeating it leaves the cache as one call would (a repeated
    /// `Delete` may say `deleted = false`, but the key is gone either way).
    OnUnavailable,
    /// Retried only when the request cannot have reached the server: the connection to it
    /// could not be set up. Once sent, an `UNAVAILABLE` (a connection lost, the server going
    /// away) may come after the server did the call, and a repeat would change the answer:
    /// `Increment` would count twice, an `Add` (or a `Set` with a lease token) that stored
    /// would be repeated and answer `stored = false`, telling a caller that uses it as a lock
    /// that it lost when it won.
    UnlessSent,
}

impl Retry {
    /// Whether a call that failed with `status` may be sent again.
    fn allows(self, status: &Status) -> bool {
        status.code() == Code::Unavailable
            && match self {
                Self::OnUnavailable => true,
                Self::UnlessSent => never_sent(status),
            }
    }
}

/// Whether a failed call's request cannot have left this client: tonic reports a connection
/// that could not be set up (TCP connect, TLS handshake) as a `ConnectError` among the
/// status's sources. Any other failure may have come after the request was sent.
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

/// A mintcache client: typed calls, per-call overrides, deadlines, `UNAVAILABLE` retries and
/// the mint protocol helper ([`get_or_compute`](Self::get_or_compute)).
///
/// Cheap to clone (clones share connections). The `with_*` methods return a copy that differs
/// in one setting, for a single call or a scope:
///
/// ```no_run
/// # // no_run: needs a mintcache server on 127.0.0.1:50051 (the e2e tests in tests/ run one).
/// use std::time::Duration;
/// use mintcache_client::{Client, DebugMode, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mintcache_client::Error> {
/// let cache = Client::builder().endpoint("http://127.0.0.1:50051").version("r42").connect().await?;
/// cache.set("user:42", r#"{"name":"Ada"}"#, Duration::from_secs(60)).await?;
/// let lookup = cache.get("user:42").await?;
/// assert_eq!(lookup.outcome, Outcome::Hit);
///
/// // The same key in another version's key space is a miss.
/// assert_eq!(cache.with_version("r43").get("user:42").await?.outcome, Outcome::Miss);
/// // An admin overwrites a value without reading the cache (needs an admin token).
/// cache.with_debug(DebugMode::WriteOnly).set("user:42", "fixed", Duration::from_secs(60)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    pub(crate) defaults: CallDefaults,
    timeout: Option<Duration>,
    retry: Backoff,
    pub(crate) pending: Backoff,
    pub(crate) fill_wait: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("defaults", &self.defaults)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("pending", &self.pending)
            .field("fill_wait", &self.fill_wait)
            .finish_non_exhaustive()
    }
}

/// The recomputation time a store reports, in milliseconds (0: not said).
fn recompute_ms(options: &SetOptions) -> u32 {
    options.recompute.map_or(0, |d| {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
    })
}

/// Takes the response metadata's degraded flag.
pub(crate) fn degraded(metadata: &MetadataMap) -> bool {
    metadata
        .get(DEGRADED_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
}

impl Client {
    pub(crate) fn new(
        channel: Channel,
        defaults: CallDefaults,
        timeout: Option<Duration>,
        retry: Backoff,
        pending: Backoff,
        fill_wait: Duration,
    ) -> Self {
        Self {
            channel,
            defaults,
            timeout,
            retry,
            pending,
            fill_wait,
        }
    }

    /// A copy of this client that sends calls in `version`'s key space.
    pub fn with_version(&self, version: impl Into<String>) -> Self {
        let mut c = self.clone();
        c.defaults.version = Some(version.into());
        c
    }

    /// A copy of this client that sends calls in `namespace`.
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Self {
        let mut c = self.clone();
        c.defaults.namespace = Some(namespace.into());
        c
    }

    /// A copy of this client whose calls run in a debug mode (`x-cache-debug`). The server
    /// honours it for admin callers only (see
    /// [`ClientBuilder::token`](crate::ClientBuilder::token)) and answers `PERMISSION_DENIED`
    /// to anyone else.
    pub fn with_debug(&self, mode: DebugMode) -> Self {
        let mut c = self.clone();
        c.defaults.debug = Some(mode);
        c
    }

    /// A copy of this client with another deadline per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut c = self.clone();
        c.timeout = Some(timeout);
        c
    }

    /// A copy of this client whose reads ask for (or decline) cold-miss protection.
    pub fn with_lease_on_miss(&self, on: bool) -> Self {
        let mut c = self.clone();
        c.defaults.lease_on_miss = Some(on);
        c
    }

    /// A copy of this client whose reads draw early refresh with this β (`0` turns it off for
    /// them; the server's `cache.early_refresh_beta` applies otherwise). See the README,
    /// "Early refresh".
    pub fn with_early_refresh_beta(&self, beta: f64) -> Self {
        let mut c = self.clone();
        c.defaults.early_refresh_beta = Some(beta);
        c
    }

    /// A copy of this client whose reads always ask memcached, never the server's hot-key
    /// cache (`x-cache-consistency: strong`).
    pub fn with_strong_consistency(&self) -> Self {
        let mut c = self.clone();
        c.defaults.strong = true;
        c
    }

    /// The raw generated client on this client's connections (no default metadata, no retries).
    pub fn raw(&self) -> CacheClient<Channel> {
        CacheClient::new(self.channel.clone())
    }

    /// This client's connections, for callers that frame gRPC calls themselves (the Python
    /// package's transport sends the messages Python serialized). Clones share connections.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Wraps a message with this client's metadata and the time left until `deadline`.
    pub(crate) fn request<M>(
        &self,
        message: M,
        deadline: Option<Instant>,
    ) -> Result<Request<M>, Error> {
        let mut request = Request::new(message);
        for (key, value) in self.defaults.headers()? {
            request.metadata_mut().insert(key, value);
        }
        if let Some(deadline) = deadline {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        Ok(request)
    }

    /// Runs one unary call with the deadline and, when allowed, the `UNAVAILABLE` retries.
    pub(crate) async fn unary<M, R, F, Fut>(
        &self,
        retry: Retry,
        message: M,
        mut rpc: F,
    ) -> Result<Response<R>, Error>
    where
        M: Clone,
        F: FnMut(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let attempts = self.retry.attempts();
        let mut failed = 0;
        loop {
            let call = rpc(
                self.channel.clone(),
                self.request(message.clone(), deadline)?,
            );
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, call)
                    .await
                    .unwrap_or_else(|_| Err(deadline_exceeded(self.timeout))),
                None => call.await,
            };
            let status = match result {
                Ok(response) => return Ok(response),
                // tonic's channel enforces the `grpc-timeout` header too, and reports it as
                // CANCELLED: past our deadline, that is our DEADLINE_EXCEEDED.
                Err(status)
                    if status.code() == Code::Cancelled
                        && deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    return Err(deadline_exceeded(self.timeout).into());
                }
                Err(status) => transport_failure_as_unavailable(status),
            };
            failed += 1;
            if !retry.allows(&status) || failed >= attempts {
                return Err(status.into());
            }
            let delay = self.retry.delay(failed);
            if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(status.into());
            }
            tracing::debug!(attempt = failed, ?delay, error = %status.message(), "mintcache call unavailable, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Reads a key. See [`Outcome`](crate::Outcome) for what to do with the answer, or use
    /// [`get_or_compute`](Self::get_or_compute), which does it.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Lookup, Error> {
        self.read(key.into(), false, Duration::ZERO).await
    }

    /// Looks at a key without taking part in the refresh election: a stale value comes back
    /// `STALE` (never `REFRESH`), a missing key `MISS` with no lease token, and no cold-miss
    /// placeholder is created. With [`Lookup::ttl`], [`Lookup::grace`],
    /// [`Lookup::no_expiry`] and [`Lookup::counter`] it tells everything about the key.
    ///
    /// For inspection tools: a caller that recomputes values must use [`get`](Self::get) (or
    /// [`get_or_compute`](Self::get_or_compute)), or a stale key is never refreshed.
    pub async fn peek(&self, key: impl Into<Vec<u8>>) -> Result<Lookup, Error> {
        self.read(key.into(), true, Duration::ZERO).await
    }

    /// Reads a key, and if another caller is filling it (`PENDING`), waits up to `wait` for
    /// the fill in the server instead of polling: the answer comes as soon as the value is
    /// stored (`HIT`), or `MISS` with a lease if the filler gave up and this caller was elected
    /// to fill instead, or `PENDING` when the wait (or the call's deadline) ran out first.
    /// Needs cold-miss protection ([`with_lease_on_miss`](Self::with_lease_on_miss), or the
    /// server's `cache.lease_on_miss`).
    pub async fn get_waiting(
        &self,
        key: impl Into<Vec<u8>>,
        wait: Duration,
    ) -> Result<Lookup, Error> {
        self.read(key.into(), false, wait).await
    }

    async fn read(&self, key: Vec<u8>, peek: bool, wait: Duration) -> Result<Lookup, Error> {
        let message = proto::GetRequest {
            key,
            // A peek never joins an election, cold-miss ones included.
            lease_on_miss: if peek {
                None
            } else {
                self.defaults.lease_on_miss
            },
            peek,
            early_refresh_beta: if peek {
                None
            } else {
                self.defaults.early_refresh_beta
            },
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).get(r).await
            })
            .await?;
        let degraded = degraded(response.metadata());
        Lookup::from_wire(response.into_inner().into(), degraded)
    }

    /// Stores a value, fresh for `ttl` (rounded up to whole seconds; zero: the server default)
    /// with the server's default grace. Returns whether it was stored.
    pub async fn set(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        ttl: Duration,
    ) -> Result<bool, Error> {
        self.set_with(key, value, &SetOptions::ttl(ttl)).await
    }

    /// Stores a value with explicit ttl, grace, flags and lease token. Returns whether it was
    /// stored: `false` when a lease token was given and the key changed since that read.
    ///
    /// With a lease token, retried only when the request cannot have reached the server (see
    /// [`add`](Self::add)): a repeat of a store that happened would answer `false`.
    pub async fn set_with(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: &SetOptions,
    ) -> Result<bool, Error> {
        let message = proto::SetRequest {
            counter: options.counter,
            key: key.into(),
            value: value.into(),
            ttl_seconds: wire_seconds(options.ttl),
            grace_seconds: wire_seconds(options.grace),
            flags: options.flags,
            lease_token: lease_bytes(options),
            no_expiry: options.no_expiry,
            no_grace: options.no_grace,
            recompute_ms: recompute_ms(options),
        };
        let retry = if options.lease.is_some() {
            Retry::UnlessSent
        } else {
            Retry::OnUnavailable
        };
        let response = self
            .unary(retry, message, |ch, r| async move {
                CacheClient::new(ch).set(r).await
            })
            .await?;
        Ok(response.into_inner().stored)
    }

    /// Stores a value only if the key holds none. Returns whether it was stored. (The lease
    /// token of `options` is not used.)
    ///
    /// Retried only when the request cannot have reached the server (the connection could not
    /// be set up). Once it may have been sent, a failure is returned as it is: had the first
    /// attempt stored, a repeat would answer `false`, and a caller using `add` as a lock would
    /// believe it lost. An `UNAVAILABLE` error from `add` means the outcome is unknown.
    pub async fn add(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: &SetOptions,
    ) -> Result<bool, Error> {
        self.add_leased(key, value, options)
            .await
            .map(|lease| lease.is_some())
    }

    /// [`add`](Self::add), returning a lease naming the item it stored (`None`: not stored).
    /// Pass it to [`delete_leased`](Self::delete_leased) to remove exactly that item: a lock
    /// taken with `add_leased` is released only by its holder, even after it expired and
    /// someone else took it.
    pub async fn add_leased(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        options: &SetOptions,
    ) -> Result<Option<LeaseToken>, Error> {
        let message = proto::AddRequest {
            counter: options.counter,
            key: key.into(),
            value: value.into(),
            ttl_seconds: wire_seconds(options.ttl),
            grace_seconds: wire_seconds(options.grace),
            flags: options.flags,
            no_expiry: options.no_expiry,
            no_grace: options.no_grace,
            recompute_ms: recompute_ms(options),
        };
        let response = self
            .unary(Retry::UnlessSent, message, |ch, r| async move {
                CacheClient::new(ch).add(r).await
            })
            .await?
            .into_inner();
        Ok((response.stored && !response.lease_token.is_empty())
            .then(|| LeaseToken::from(response.lease_token)))
    }

    /// Removes the item a lease names: the item an [`add_leased`](Self::add_leased) stored,
    /// or the placeholder of a cold fill this caller won (`MISS` with a lease) — giving the
    /// fill up hands it to one waiting reader at once. Returns whether it removed it (`false`:
    /// the key holds something else now).
    pub async fn delete_leased(
        &self,
        key: impl Into<Vec<u8>>,
        lease: &LeaseToken,
    ) -> Result<bool, Error> {
        let message = proto::DeleteRequest {
            key: key.into(),
            lease_token: lease.as_bytes().to_vec(),
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).delete(r).await
            })
            .await?;
        Ok(response.into_inner().deleted)
    }

    /// Removes a key. Returns whether it held a value.
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<bool, Error> {
        let message = proto::DeleteRequest {
            key: key.into(),
            lease_token: Vec::new(),
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).delete(r).await
            })
            .await?;
        Ok(response.into_inner().deleted)
    }

    /// Gives an existing key a new fresh ttl. Returns whether the key existed.
    pub async fn touch(&self, key: impl Into<Vec<u8>>, ttl: Duration) -> Result<bool, Error> {
        self.touch_call(key.into(), ttl, false).await
    }

    /// Makes an existing key never expire from now on (`Touch` with `no_expiry`). Returns
    /// whether the key existed.
    pub async fn persist(&self, key: impl Into<Vec<u8>>) -> Result<bool, Error> {
        self.touch_call(key.into(), Duration::ZERO, true).await
    }

    async fn touch_call(
        &self,
        key: Vec<u8>,
        ttl: Duration,
        no_expiry: bool,
    ) -> Result<bool, Error> {
        let message = proto::TouchRequest {
            key,
            ttl_seconds: wire_seconds(ttl),
            no_expiry,
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).touch(r).await
            })
            .await?;
        Ok(response.into_inner().touched)
    }

    /// Soft purge: marks a key stale, so the next reader gets `REFRESH` and the others keep
    /// the stale value meanwhile. Returns whether the key held a value.
    pub async fn invalidate(&self, key: impl Into<Vec<u8>>) -> Result<bool, Error> {
        let message = proto::InvalidateRequest { key: key.into() };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                CacheClient::new(ch).invalidate(r).await
            })
            .await?;
        Ok(response.into_inner().invalidated)
    }

    /// Adds `delta` (negative to subtract; counters stop at 0) to an existing counter and
    /// returns its new value, or `None` when there is no such counter.
    ///
    /// Retried only when the request cannot have reached the server (the connection could not
    /// be set up): if a failed attempt had reached it, a retry would count twice.
    pub async fn increment(
        &self,
        key: impl Into<Vec<u8>>,
        delta: i64,
    ) -> Result<Option<u64>, Error> {
        match self
            .increment_call(key.into(), delta, None, Duration::ZERO, false)
            .await
        {
            Ok(value) => Ok(Some(value)),
            Err(Error::Status(s)) if s.code() == Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` to a counter, creating it with `initial` (and lifetime `ttl`; zero: the
    /// server default) when it does not exist — then `delta` is not applied. Returns the new
    /// value. Retried only when the request cannot have reached the server (see
    /// [`increment`](Self::increment)).
    pub async fn increment_or_create(
        &self,
        key: impl Into<Vec<u8>>,
        delta: i64,
        initial: u64,
        ttl: Duration,
    ) -> Result<u64, Error> {
        self.increment_call(key.into(), delta, Some(initial), ttl, false)
            .await
    }

    /// Like [`increment_or_create`](Self::increment_or_create), but a counter created by this
    /// call never expires.
    pub async fn increment_or_create_no_expiry(
        &self,
        key: impl Into<Vec<u8>>,
        delta: i64,
        initial: u64,
    ) -> Result<u64, Error> {
        self.increment_call(key.into(), delta, Some(initial), Duration::ZERO, true)
            .await
    }

    async fn increment_call(
        &self,
        key: Vec<u8>,
        delta: i64,
        initial_value: Option<u64>,
        ttl: Duration,
        no_expiry: bool,
    ) -> Result<u64, Error> {
        let message = proto::IncrementRequest {
            key,
            delta,
            initial_value,
            ttl_seconds: wire_seconds(ttl),
            no_expiry,
        };
        let response = self
            .unary(Retry::UnlessSent, message, |ch, r| async move {
                CacheClient::new(ch).increment(r).await
            })
            .await?;
        Ok(response.into_inner().value)
    }

    /// Drops every key of this client's key space (its namespace and version), and nothing
    /// else: other versions and namespaces on the same memcached are untouched. Needs the same
    /// rights as a write. Returns `false` only under the debug mode `off`.
    ///
    /// The replica that answers never serves a flushed key again; other replicas stop within
    /// the server's `cache.flush_sync_ms`. Retried on `UNAVAILABLE` like any write: flushing
    /// twice is the same as flushing once.
    pub async fn flush(&self) -> Result<bool, Error> {
        let response = self
            .unary(
                Retry::OnUnavailable,
                proto::FlushRequest {},
                |ch, r| async move { CacheClient::new(ch).flush(r).await },
            )
            .await?;
        Ok(response.into_inner().flushed)
    }

    /// Asks the standard gRPC health service (`grpc.health.v1.Health/Check`) about `service`
    /// (`""`: the server as a whole). A server that does not serve it answers `UNIMPLEMENTED`.
    pub async fn health(&self, service: &str) -> Result<ServingStatus, Error> {
        let message = HealthCheckRequest {
            service: service.to_owned(),
        };
        let response = self
            .unary(Retry::OnUnavailable, message, |ch, r| async move {
                HealthClient::new(ch).check(r).await
            })
            .await?;
        let status = response.into_inner().status;
        ServingStatus::try_from(status)
            .map_err(|_| Error::Protocol(format!("unknown serving status {status}")))
    }
}

pub(crate) fn lease_bytes(options: &SetOptions) -> Vec<u8> {
    options
        .lease
        .as_ref()
        .map(|l| l.as_bytes().to_vec())
        .unwrap_or_default()
}

/// A call that died with its connection (e.g. a replica restarting) comes back from tonic as
/// CANCELLED or UNKNOWN (depending on when the connection broke) with the transport error as
/// its source; statuses sent by a server have no source.
/// It is a transport failure like a refused connection, so it is reported (and retried) as
/// UNAVAILABLE.
fn transport_failure_as_unavailable(status: Status) -> Status {
    let from_transport = std::error::Error::source(&status)
        .is_some_and(|source| source.is::<tonic::transport::Error>());
    if from_transport && matches!(status.code(), Code::Cancelled | Code::Unknown) {
        Status::unavailable(format!("connection lost: {}", status.message()))
    } else {
        status
    }
}

fn deadline_exceeded(timeout: Option<Duration>) -> Status {
    let after = timeout.unwrap_or_default();
    Status::deadline_exceeded(format!("no answer within {after:?}"))
}

#[cfg(test)]
mod tests;
