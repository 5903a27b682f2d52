//! Serving validated settings over one store: the parts [`crate::run`] puts together, after
//! mini-redis's `server.rs` (listeners, a handler per service, a drain):
//!
//! - [`Server::serve`]: the gRPC port (the Cache service behind its request path, health,
//!   reflection, HTTP/2 limits per connection), until the drain is over; its connections come
//!   through [`incoming`] (TLS, and [`guard`]: a call with a header field HTTP/2 forbids fails
//!   alone, without closing its connection; [`hpack`] judges the header blocks);
//! - [`Listeners`]: the sockets, bound before serving; [`RunError`]: why serving stopped;
//! - [`spawn_prober`]: probes the backend and updates the [`Readiness`] that gRPC health and
//!   `/readyz` report;
//! - [`spawn_admin`]: the admin HTTP port, which outlives the drain so that orchestrators see
//!   `/readyz` fail meanwhile;
//! - [`Shutdown`] and [`shutdown_after`]: when the drain starts, and when it gives up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::admin::{self, AdminState};
use crate::cache::MintCache;
use crate::clock::Clock;
use crate::config::{ServerSettings, Settings};
use crate::grpc::proto::{self, cache_server::SERVICE_NAME};
use crate::layers::{self, CacheStack};
use crate::metrics::{Metrics, MetricsError, MetricsRegistry};
use crate::readiness::Readiness;
use crate::store::{Store, StoreError};

mod guard;
mod hpack;
mod incoming;
mod listeners;

use incoming::Incoming;
pub use listeners::{BindError, Listeners};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS settings could not be used.
    #[error("{0}")]
    Tls(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// How often the backend is probed for health.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long startup waits for the first health verdict.
const FIRST_PROBE_LIMIT: Duration = Duration::from_secs(1);

/// Whether shutdown has been asked for. Every part of the server follows one.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Shutdown once `signal` resolves.
    pub(crate) fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (requested, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            let _ = requested.send(true);
        });
        Self(shutdown)
    }

    /// Whether shutdown has been asked for.
    fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been asked for.
    pub(crate) async fn requested(mut self) {
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}

/// Resolves `grace` after shutdown was asked for: when the drain stops waiting for the calls
/// still in flight.
pub(crate) async fn shutdown_after(shutdown: Shutdown, grace: Duration) {
    shutdown.requested().await;
    tokio::time::sleep(grace).await;
}

/// The first health verdict, before serving; never more than a moment, so that a hung
/// memcached cannot hold up startup (the prober keeps at it in the background).
async fn first_verdict<S: Store>(store: &S) -> bool {
    tokio::time::timeout(FIRST_PROBE_LIMIT, store.probe())
        .await
        .unwrap_or(false)
}

/// Probes the backend every [`PROBE_INTERVAL`], logs changes, and reports each verdict to
/// `readiness`, until shutdown.
pub(crate) fn spawn_prober<S: Store>(
    store: Arc<S>,
    readiness: Readiness,
    mut serving: bool,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            if shutdown.is_requested() {
                return;
            }
            let now = store.probe().await;
            if now != serving {
                if now {
                    tracing::info!("backend reachable again: SERVING");
                } else {
                    tracing::error!("no memcached server answers: NOT_SERVING");
                }
                serving = now;
            }
            readiness.set(serving).await;
        }
    })
}

/// The admin HTTP port, served in the background until [`AdminTask::stop`].
pub(crate) struct AdminTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener`.
pub(crate) fn spawn_admin(
    listener: TcpListener,
    metrics: Arc<MetricsRegistry>,
    readiness: Readiness,
) -> AdminTask {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let state = AdminState { metrics, readiness };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(admin::serve(listener, state, Shutdown(stopped).requested()));
    AdminTask { stop, task }
}

impl AdminTask {
    /// Stops the admin port and waits until it has.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "admin server");
        }
    }
}

/// Everything serving needs besides the store.
pub(crate) struct Server {
    pub(crate) settings: Settings,
    pub(crate) listeners: Listeners,
    pub(crate) registry: Arc<MetricsRegistry>,
    pub(crate) metrics: Metrics,
    /// Where the mint cache reads the time.
    pub(crate) clock: Clock,
}

impl Server {
    /// Serves over `store` until `shutdown` and the drain are over.
    pub(crate) async fn serve<S: Store>(
        self,
        store: S,
        shutdown: Shutdown,
    ) -> Result<(), RunError> {
        let Self {
            settings,
            listeners,
            registry,
            metrics,
            clock,
        } = self;
        let store = Arc::new(store);
        // Each memcached server's error and ejection series exist from the start, at zero.
        metrics.nodes_known(
            store.pool_stats().into_iter().map(|stats| stats.node),
            &StoreError::KINDS,
        );
        let _pool_gauges = {
            let store = store.clone();
            let buffered = store.clone();
            registry.pool_gauges(
                move || store.pool_stats(),
                move || buffered.reply_bytes_buffered(),
            )
        };
        let (readiness, health) = Readiness::new();
        let serving = first_verdict(&*store).await;
        readiness.set(serving).await;
        let prober = spawn_prober(store.clone(), readiness.clone(), serving, shutdown.clone());
        let admin = spawn_admin(listeners.admin, registry.clone(), readiness.clone());
        let cache = Arc::new(MintCache::new(
            store,
            settings.cache.clone(),
            metrics.clone(),
            clock,
        ));
        let _hot_cache_gauges = settings.cache.hot_cache.is_some().then(|| {
            let cache = cache.clone();
            registry.hot_cache_gauges(move || cache.hot_usage())
        });
        let cache = layers::cache_service(cache, &settings, metrics);
        // Not serving first, so that load balancers stop sending calls; then stop accepting
        // and let the calls in flight finish.
        let drained = readiness.drain_on(shutdown.clone().requested());
        let grpc = serve_grpc(&settings, listeners.grpc, cache, health, drained)?;
        let grace = settings.server.shutdown_grace;
        let result = tokio::select! {
            result = grpc => result.map_err(RunError::from),
            () = shutdown_after(shutdown, grace) => {
                tracing::warn!(grace_seconds = grace.as_secs(), "shutdown grace period over: abandoning calls still in flight");
                Ok(())
            }
        };
        prober.abort();
        admin.stop().await;
        result
    }
}

/// The gRPC port: the Cache service, health, and reflection (v1, and v1alpha, the only one
/// many deployed tools such as grpcurl 1.8 speak), with TLS when configured; it stops
/// accepting once `drained` resolves and ends when the calls in flight have.
fn serve_grpc<S: Store>(
    settings: &Settings,
    listener: TcpListener,
    cache: CacheStack<S>,
    health: HealthServer<HealthService>,
    drained: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = Result<(), tonic::transport::Error>>, RunError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let builder = http2_limits(tonic::transport::Server::builder(), &settings.server);
    let tls = match &settings.tls {
        Some(tls) => Some(incoming::tls_acceptor(tls).map_err(|e| RunError::Tls(e.to_string()))?),
        None => None,
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = settings.tls.is_some(), "serving {SERVICE_NAME}");
    }
    Ok(builder
        // When each call arrived, for the Cache service's deadlines.
        .layer(layers::limits::ReceivedAtLayer)
        .add_service(cache)
        .add_service(health.max_decoding_message_size(PROBE_MESSAGE_BYTES))
        .add_service(
            reflection()
                .build_v1()?
                .max_decoding_message_size(PROBE_MESSAGE_BYTES),
        )
        .add_service(
            reflection()
                .build_v1alpha()?
                .max_decoding_message_size(PROBE_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(Incoming::new(listener, tls), drained))
}

/// Largest request message of health and reflection calls. Theirs are a service or file name;
/// tonic's default (4 MiB) would let any client make the server hold that much per open stream
/// outside the Cache service's request budget (`server.max_buffered_request_bytes`), which
/// these services stay out of (probes are never shed, and reflection streams both ways).
const PROBE_MESSAGE_BYTES: usize = 16 * 1024;

/// Headers a call may send, in bytes (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`). Far above what
/// the API needs, so that oversize metadata (a 20 KB `authorization`) reaches the layers and is
/// answered with a status that says what is wrong (`UNAUTHENTICATED`), rather than being
/// refused by HTTP/2 (hyper's default of 16 KiB answers HTTP 431 and, further over it, closes
/// the connection with GOAWAY). Per connection, the headers held are at most this times
/// `server.max_concurrent_streams`.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Streams the server may reset itself because the client broke the protocol, per connection,
/// before it closes the connection (h2's and hyper's default; tonic leaves the limit off). It
/// bounds what a client can make the server do with invalid frames; ordinary clients, and
/// clients that cancel calls, never count against it.
const LOCAL_ERROR_RESETS: usize = 1024;

/// Calls a client may cancel before the server has taken them (reset streams waiting in the
/// connection's accept queue), per connection, before the server closes the connection with
/// GOAWAY `too_many_resets`. h2's default is 20, which ordinary cancellations reach under load
/// (a fifth of the calls cancelled, sent in bursts), and the GOAWAY then fails every call on the
/// connection. A client that keeps to `server.max_concurrent_streams` has at most about that
/// many streams waiting; the limit leaves four times as many, and still bounds what a client
/// opening and resetting streams without end (the "rapid reset" attack) makes the server hold.
fn pending_accept_resets(max_concurrent_streams: u32) -> usize {
    usize::try_from(max_concurrent_streams)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .max(1024)
}

/// The HTTP/2 limits of the gRPC port: what one connection may hold and do.
fn http2_limits(
    builder: tonic::transport::Server,
    server: &ServerSettings,
) -> tonic::transport::Server {
    builder
        // Calls open at once per connection: one client cannot take every call slot (tonic's
        // default is unlimited; further calls wait in the client).
        .max_concurrent_streams(server.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(pending_accept_resets(
            server.max_concurrent_streams,
        )))
        .http2_max_local_error_reset_streams(Some(LOCAL_ERROR_RESETS))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}
