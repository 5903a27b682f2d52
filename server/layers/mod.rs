//! The Cache service's request path, put around the service in one place
//! ([`cache_service`]), outermost first:
//!
//! - [`telemetry`]: a span and request metrics per call;
//! - [`limits`]: `grpc-timeout` deadlines;
//! - [`auth`]: bearer tokens, TLS client certificates, admin-only debug modes;
//! - [`request`]: the request read whole, within a time limit, a size limit and a memory
//!   budget shared by all calls;
//! - [`limits`] again: the global concurrency limit with load shedding;
//! - [`call_meta`]: the per-call key space (`x-cache-version`, `x-cache-namespace`).
//!
//! The order is what keeps one client from locking out the others: a caller is authenticated
//! before anything is held for it, and a call takes a call slot only once its request has
//! arrived, so calls whose requests trickle in (or never finish) cannot take the slots of calls
//! being served; what they hold meanwhile is bounded by [`request`].
//!
//! Each layer calls the service it wraps from its own `call`, the service it polled ready.
//! Only the request layer calls it later, once the request has arrived, and so calls a clone
//! (the services under it are a few reference counts each).
//!
//! The layers wrap the Cache service, not the server: health and reflection are added beside
//! it, so no layer ever sees them. An overloaded server still answers its probes, and they
//! need no token. The one exception is a timestamp: [`limits::ReceivedAtLayer`] notes when
//! each call arrived, before routing, for the deadlines.

pub(crate) mod auth;
pub(crate) mod call_meta;
pub(crate) mod limits;
pub(crate) mod request;
pub(crate) mod telemetry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::service::{LayerExt as _, Layered};
use tower::ServiceBuilder;

use crate::cache::MintCache;
use crate::config::Settings;
use crate::grpc::CacheService;
use crate::grpc::proto::cache_server::CacheServer;
use crate::metrics::Metrics;
use crate::store::Store;

/// The future of the layers' services.
pub(crate) type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// A layer's answer that does not reach the service: `status`, at once.
pub(crate) fn answer_now<R, E>(status: tonic::Status) -> BoxFuture<http::Response<R>, E>
where
    R: Default + Send + 'static,
    E: Send + 'static,
{
    Box::pin(std::future::ready(Ok(status.into_http::<R>())))
}

/// The generated Cache service over the handlers.
type Handlers<S> = CacheServer<CacheService<S>>;

/// The Cache service with its whole request path.
pub(crate) type CacheStack<S> = Layered<
    telemetry::TelemetryService<
        limits::DeadlineService<
            auth::AuthService<
                request::RequestService<
                    limits::ConcurrencyService<call_meta::CallMetaService<Handlers<S>>>,
                >,
            >,
        >,
    >,
    Handlers<S>,
>;

/// The Cache service over `cache`, with its request path.
pub(crate) fn cache_service<S: Store>(
    cache: Arc<MintCache<S>>,
    settings: &Settings,
    metrics: Metrics,
) -> CacheStack<S> {
    let max_message = settings.server.max_message_bytes;
    let handlers = CacheServer::new(CacheService::new(cache))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let server = &settings.server;
    ServiceBuilder::new()
        // A span and request metrics for every call, shed, refused or cancelled ones included.
        .layer(telemetry::TelemetryLayer::new(metrics.clone()))
        // Abandon calls whose grpc-timeout ran out (DEADLINE_EXCEEDED), cancelling their
        // memcached operations.
        .layer(limits::DeadlineLayer)
        // Who the caller is; admin-only debug modes (UNAUTHENTICATED, PERMISSION_DENIED). First,
        // so that unauthenticated callers hold nothing.
        .layer(auth::AuthLayer::new(settings.auth.clone()))
        // The request, read whole within server.request_read_timeout_ms (DEADLINE_EXCEEDED),
        // server.max_message_bytes and server.max_buffered_request_bytes (RESOURCE_EXHAUSTED).
        .layer(request::RequestLayer::new(
            server.max_buffered_request_bytes,
            max_message,
            server.request_read_timeout,
        ))
        // Refuse at once (RESOURCE_EXHAUSTED) beyond the concurrency limit: no unbounded queue.
        // Only calls whose request has arrived take a slot.
        .layer(limits::ConcurrencyLayer::new(
            server.max_concurrent_calls,
            metrics,
        ))
        // The call's key space, for the handlers (INVALID_ARGUMENT for bad metadata).
        .layer(call_meta::CallMetaLayer::new(
            settings.cache.default_space.clone(),
        ))
        .named_layer(handlers)
}
