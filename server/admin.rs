//! The admin HTTP port (`admin.listen`): Prometheus metrics and probes for orchestrators.
//!
//! - `GET /metrics`: every metric in Prometheus text format;
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 when the backend can serve (at least one memcached server answers, or
//!   the embedded store) and the server is not shutting down; 503 otherwise (readiness).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::MetricsRegistry;
use crate::readiness::Readiness;

/// What the admin endpoints report.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// The server's metrics.
    pub(crate) metrics: Arc<MetricsRegistry>,
    /// Whether the server is ready to serve.
    pub(crate) readiness: Readiness,
}

/// Serves the admin endpoints until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<AdminState>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
