//! Whether the server can serve: one readiness verdict, reported to gRPC health (for `""` and
//! the Cache service) and to the admin port's `/readyz` alike. The backend prober sets it; the
//! drain ends it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::grpc::proto::cache_server::SERVICE_NAME;

/// Whether the server can serve: the backend answers and no drain has started. gRPC health
/// (for `""` and the Cache service) and `/readyz` report this one verdict.
#[derive(Clone)]
pub(crate) struct Readiness {
    inner: Arc<ReadinessInner>,
}

struct ReadinessInner {
    health: HealthReporter,
    ready: AtomicBool,
    /// Whether the drain has started. Held across each health update, so that a verdict of the
    /// prober can never land after the drain's NOT_SERVING.
    draining: Mutex<bool>,
}

impl Readiness {
    /// Not ready yet, and the health service that reports it.
    pub(crate) fn new() -> (Self, HealthServer<HealthService>) {
        let health = HealthReporter::new();
        let service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
        let readiness = Self {
            inner: Arc::new(ReadinessInner {
                health,
                ready: AtomicBool::new(false),
                draining: Mutex::new(false),
            }),
        };
        (readiness, service)
    }

    /// Whether the server is ready now.
    pub(crate) fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// The backend's verdict; ignored once the drain has started.
    pub(crate) async fn set(&self, serving: bool) {
        let draining = self.inner.draining.lock().await;
        if !*draining {
            self.publish(serving).await;
        }
    }

    /// Once `requested` (shutdown) resolves: not ready from then on. Resolves when NOT_SERVING
    /// has been reported, the moment to stop accepting calls: load balancers are told first.
    pub(crate) async fn drain_on(self, requested: impl Future<Output = ()>) {
        requested.await;
        let mut draining = self.inner.draining.lock().await;
        *draining = true;
        self.publish(false).await;
    }

    async fn publish(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.inner.ready.store(serving, Ordering::Relaxed);
        self.inner.health.set_service_status("", status).await;
        self.inner
            .health
            .set_service_status(SERVICE_NAME, status)
            .await;
    }
}
