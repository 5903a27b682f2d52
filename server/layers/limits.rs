//! Overload protection for `mintcache.v1.Cache` calls:
//! - [`ConcurrencyLayer`]: at most `server.max_concurrent_calls` calls are served at once; a
//!   call beyond that is refused at once with `RESOURCE_EXHAUSTED` (load shedding), never
//!   queued, so latency stays bounded and the caller can back off or go elsewhere;
//! - [`DeadlineLayer`]: a call carrying `grpc-timeout` is abandoned when its budget runs out
//!   (`DEADLINE_EXCEEDED`); dropping it cancels its memcached operation, whose connection is
//!   then discarded by the pool.
//!
//! Health and reflection calls are exempt: an overloaded server must still answer its probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::is_cache_call;
use crate::core::deadline::{budget, parse_grpc_timeout};
use crate::metrics::Metrics;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct ConcurrencyLayer {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl ConcurrencyLayer {
    /// Serves at most `max` calls at once.
    pub fn new(max: usize, metrics: Metrics) -> Self {
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
pub struct ConcurrencyService<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for ConcurrencyService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !is_cache_call(&request) {
            return Box::pin(inner.call(request));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.shed();
            let status = tonic::Status::resource_exhausted(
                "server is at its concurrency limit (server.max_concurrent_calls); retry with backoff",
            );
            let response = status.into_http::<R>();
            return Box::pin(async move { Ok(response) });
        };
        let future = inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(permit);
            response
        })
    }
}

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

/// See [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for DeadlineService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let future = inner.call(request);
        match timeout {
            None => Box::pin(future),
            Some(timeout) => Box::pin(async move {
                match tokio::time::timeout(budget(timeout), future).await {
                    Ok(response) => response,
                    Err(_) => {
                        Ok(tonic::Status::deadline_exceeded("deadline exceeded").into_http::<R>())
                    }
                }
            }),
        }
    }
}
