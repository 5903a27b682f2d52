//! Request-path layers around the gRPC services, built in one place ([`stack`]).
//!
//! - [`telemetry`]: a span and request metrics per call;
//! - [`limits`]: global concurrency limit with load shedding, and `grpc-timeout` deadlines;
//! - [`auth`]: bearer tokens, TLS client certificates, admin-only debug modes;
//! - [`call_meta`]: the per-call key space (`x-cache-version`, `x-cache-namespace`), as an
//!   interceptor on the Cache service.
//!
//! The tower layers only act on `mintcache.v1.Cache` calls; health and reflection pass through.

pub mod auth;
pub mod call_meta;
pub mod limits;
pub mod telemetry;

use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};

use crate::core::auth::AuthPolicy;
use crate::metrics::Metrics;

/// Path prefix of the Cache service's calls.
pub const CACHE_PATH_PREFIX: &str = "/mintcache.v1.Cache/";

/// Whether a request is a call of the Cache service.
pub fn is_cache_call<B>(request: &http::Request<B>) -> bool {
    request.uri().path().starts_with(CACHE_PATH_PREFIX)
}

/// The layers of the request path, outermost first.
pub type Layers = Stack<
    auth::AuthLayer,
    Stack<
        limits::DeadlineLayer,
        Stack<limits::ConcurrencyLayer, Stack<telemetry::TelemetryLayer, Identity>>,
    >,
>;

/// Builds the request path's layers.
pub fn stack(
    max_concurrent_calls: usize,
    policy: AuthPolicy,
    metrics: Metrics,
) -> ServiceBuilder<Layers> {
    ServiceBuilder::new()
        // A span and request metrics for every call, shed or refused ones included.
        .layer(telemetry::TelemetryLayer::new(metrics.clone()))
        // Refuse at once (RESOURCE_EXHAUSTED) beyond the concurrency limit: no unbounded queue.
        .layer(limits::ConcurrencyLayer::new(max_concurrent_calls, metrics))
        // Abandon calls whose grpc-timeout ran out (DEADLINE_EXCEEDED), cancelling their
        // memcached operations.
        .layer(limits::DeadlineLayer)
        // Who the caller is; admin-only debug modes (UNAUTHENTICATED, PERMISSION_DENIED).
        .layer(auth::AuthLayer::new(policy))
}
