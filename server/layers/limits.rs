//! Overload protection for `mintcache.v1.Cache` calls:
//! - [`ConcurrencyLayer`]: at most `server.max_concurrent_calls` calls are served at once; a
//!   call beyond that is refused at once with `RESOURCE_EXHAUSTED` (load shedding), never
//!   queued, so latency stays bounded and the caller can back off or go elsewhere. It is put
//!   after the request layer ([`super::request`]): a call takes a slot once its request has
//!   arrived, so a client that never finishes its requests holds no slots;
//! - [`DeadlineLayer`]: a call carrying `grpc-timeout` is abandoned when its budget runs out
//!   (`DEADLINE_EXCEEDED`); dropping it cancels its memcached operation, whose connection is
//!   then discarded by the pool.
//!
//! Both wrap the Cache service only: an overloaded server must still answer its probes.
//!
//! A deadline (and the request layer's read timeout) counts from the moment the call reached
//! the server, stamped by [`ReceivedAtLayer`] around the whole server. The layers of the Cache service only see the
//! call when its task first runs (the router hands it over then), which under load is
//! measurably later; tonic itself starts its own `grpc-timeout` timer on arrival, and the
//! service's own timer must run out first so that the answer is `DEADLINE_EXCEEDED`.
//!
//! Why not tonic's own: `Server::concurrency_limit_per_connection` limits each connection, not
//! the server, and queues calls (with `load_shed`, it answers "Too many active requests for the
//! connection", which names no setting); `Server::timeout` and tonic's built-in `grpc-timeout`
//! handling answer `CANCELLED` "Timeout expired" rather than `DEADLINE_EXCEEDED`, and apply to
//! health and reflection too. The statuses these layers answer are in [`crate::grpc::status`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderName;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{BoxFuture, answer_now};
use crate::core::deadline::{budget, parse_grpc_timeout};
use crate::grpc::status;
use crate::metrics::Metrics;

/// gRPC's deadline header, parsed once (a lookup by string parses the name on every call).
static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Load shedding: a call beyond `server.max_concurrent_calls` is refused at once.
#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyLayer {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl ConcurrencyLayer {
    /// Serves at most `max` calls at once.
    pub(crate) fn new(max: usize, metrics: Metrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            metrics,
        }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = ConcurrencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyService {
            inner,
            permits: self.permits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ConcurrencyLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyService<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for ConcurrencyService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.shed();
            return answer_now(status::shed());
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(permit);
            response
        })
    }
}

/// Abandons a call when its `grpc-timeout` runs out (`DEADLINE_EXCEEDED`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub(crate) struct DeadlineService<S> {
    inner: S,
}

/// When a call reached the server (a request extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceivedAt(Instant);

impl ReceivedAt {
    /// The moment the call arrived.
    pub(crate) fn instant(self) -> Instant {
        self.0
    }
}

/// Stamps every request with [`ReceivedAt`], the instant its call arrived, from which the
/// request layer's read timeout and the call's deadline are counted.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReceivedAtLayer;

impl<S> Layer<S> for ReceivedAtLayer {
    type Service = ReceivedAtService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReceivedAtService { inner }
    }
}

/// See [`ReceivedAtLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ReceivedAtService<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for ReceivedAtService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(ReceivedAt(Instant::now()));
        self.inner.call(request)
    }
}

impl<S, B, R> Service<http::Request<B>> for DeadlineService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get(&GRPC_TIMEOUT)
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let received = request
            .extensions()
            .get::<ReceivedAt>()
            .map_or_else(Instant::now, |r| r.instant());
        let future = self.inner.call(request);
        match timeout {
            None => Box::pin(future),
            Some(timeout) => Box::pin(async move {
                match tokio::time::timeout_at(received + budget(timeout), future).await {
                    Ok(response) => response,
                    Err(_) => Ok(status::deadline_exceeded().into_http::<R>()),
                }
            }),
        }
    }
}
