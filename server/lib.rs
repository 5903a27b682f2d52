//! mintcache: a versioned mint cache over memcached, served over gRPC.
//!
//! Module map:
//! - [`core`]: pure logic (key encoding, ttl arithmetic, value envelope, memcached item rules,
//!   mint decisions, lease tokens, metadata parsing). No I/O, no clock reads.
//! - [`store`]: the [`store::Store`] trait and its backends, the memcached pool
//!   ([`store::MemcachedStore`]: ketama ring, per-node connection pools) and the embedded
//!   in-process store ([`store::EmbeddedStore`]).
//! - [`cache`]: [`cache::MintCache`], which validates requests and runs the mint protocol over
//!   a store.
//! - [`grpc`]: the tonic service, proto <-> domain conversion, and the error-to-status mapping.
//! - [`layers`]: the request path's tower layers (telemetry, load shedding, deadlines, auth)
//!   and the call metadata interceptor, built in one place.
//! - [`metrics`]: every metric, through the OpenTelemetry SDK, exported as Prometheus text
//!   and over OTLP; [`telemetry`]: logs, trace propagation and span export.
//! - [`admin`]: the admin HTTP port (`/metrics`, `/healthz`, `/readyz`).
//! - [`config`]: figment configuration, validated before anything starts.
//!
//! [`run`] serves a configuration on its listeners until a shutdown future resolves; the
//! `mintcache-server` binary is a thin wrapper around it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod config;
pub mod core;
pub mod grpc;
pub mod layers;
pub mod metrics;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::AdminState;
use crate::cache::{MintCache, Settings};
use crate::config::Config;
use crate::grpc::CacheService;
use crate::grpc::proto::cache_server::CacheServer;
use crate::layers::call_meta::CallMetaInterceptor;
use crate::metrics::{Metrics, MetricsRegistry, names};
use crate::store::{EmbeddedStore, MemcachedStore, Store};

/// How often the backend is probed for health.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long startup waits for the first health verdict.
const FIRST_PROBE_LIMIT: Duration = Duration::from_secs(1);
/// The gRPC health service name of the Cache service.
const CACHE_SERVICE_NAME: &str = "mintcache.v1.Cache";

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC transport failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A TLS file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    TlsFile {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Metrics could not be set up.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// The sockets a server listens on.
pub struct Listeners {
    /// The gRPC port (`server.listen`).
    pub grpc: TcpListener,
    /// The admin HTTP port (`admin.listen`).
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds both addresses of a configuration.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(config.server.listen).await?,
            admin: TcpListener::bind(config.admin.listen).await?,
        })
    }
}

/// Serves `config` on `listeners` until `shutdown` resolves, then drains: health goes
/// NOT_SERVING, no new connection is accepted, and in-flight calls get
/// `server.shutdown_grace_seconds` to finish. `config` must be validated ([`Config::load`]).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let registry = Arc::new(MetricsRegistry::new(&config.telemetry)?);
    let metrics = Metrics::new(&registry.meter());
    let result = if config.memcached.servers.is_empty() {
        tracing::warn!(
            "no memcached servers configured (memcached.servers): using the EMBEDDED in-process \
             store. It is NOT shared between replicas, so versions, refresh elections and \
             invalidations only hold within this process. Configure memcached.servers for production."
        );
        let store = EmbeddedStore::new(config.embedded.max_bytes);
        serve(
            config,
            store,
            listeners,
            shutdown,
            registry.clone(),
            metrics,
        )
        .await
    } else {
        let servers: Vec<String> = config
            .memcached
            .servers
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(servers = ?servers, "using memcached pool");
        let store = MemcachedStore::new(&config.memcached, metrics.clone());
        serve(
            config,
            store,
            listeners,
            shutdown,
            registry.clone(),
            metrics,
        )
        .await
    };
    registry.shutdown();
    result
}

async fn serve<S: Store>(
    config: Config,
    store: S,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    registry: Arc<MetricsRegistry>,
    metrics: Metrics,
) -> Result<(), RunError> {
    let cache = Arc::new(MintCache::new(
        store,
        Settings::from_config(&config),
        metrics.clone(),
    ));
    let _pool_gauges = pool_gauges(&registry, cache.clone());

    let max_message = config.server.max_message_bytes;
    let cache_service = CacheServer::new(CacheService::new(cache.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let cache_service = InterceptedService::new(
        cache_service,
        CallMetaInterceptor::new(config.default_key_space()),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // v1alpha too: many deployed tools (grpcurl 1.8 among them) only speak that one.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Shutdown is a watch: the gRPC server, the admin server, the prober and the grace timer
    // all follow it.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
        let _ = stop_tx.send(true);
    });
    let ready = Arc::new(AtomicBool::new(false));
    // A first verdict before serving, but never more than a moment: a hung memcached must not
    // hold up startup (the prober keeps at it in the background).
    let serving = tokio::time::timeout(FIRST_PROBE_LIMIT, cache.store().probe())
        .await
        .unwrap_or(false);
    set_health(&health, &ready, serving).await;
    let prober = tokio::spawn(probe_backend(
        cache.clone(),
        health.clone(),
        ready.clone(),
        serving,
        stop_rx.clone(),
    ));
    let admin_state = AdminState {
        metrics: registry,
        ready: ready.clone(),
    };
    if let Ok(addr) = listeners.admin.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    // The admin port outlives the drain, so that orchestrators see /readyz fail meanwhile.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        admin_state,
        stopped(admin_stop_rx),
    ));

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    if let Ok(addr) = listeners.grpc.local_addr() {
        tracing::info!(%addr, tls = config.tls.enabled(), "serving mintcache.v1.Cache");
    }
    let drain = {
        let health = health.clone();
        let ready = ready.clone();
        let stop_rx = stop_rx.clone();
        async move {
            stopped(stop_rx).await;
            // Not serving first, so that load balancers stop sending calls; then stop
            // accepting and let the calls in flight finish.
            ready.store(false, Ordering::Relaxed);
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health
                .set_service_status(CACHE_SERVICE_NAME, ServingStatus::NotServing)
                .await;
        }
    };
    let server = builder
        .layer(layers::stack(
            config.server.max_concurrent_calls,
            config.auth_policy(),
            metrics,
        ))
        .add_service(cache_service)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), drain);
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let grace_over = async move {
        stopped(stop_rx).await;
        tokio::time::sleep(grace).await;
    };
    let result = tokio::select! {
        result = server => result.map_err(RunError::from),
        () = grace_over => {
            tracing::warn!(grace_seconds = grace.as_secs(), "shutdown grace period over: abandoning calls still in flight");
            Ok(())
        }
    };
    prober.abort();
    let _ = admin_stop_tx.send(true);
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %e, "admin server");
    }
    result
}

/// Resolves once shutdown has been requested.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn set_health(health: &HealthReporter, ready: &AtomicBool, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    ready.store(serving, Ordering::Relaxed);
    health.set_service_status("", status).await;
    health.set_service_status(CACHE_SERVICE_NAME, status).await;
}

/// Probes the backend every [`PROBE_INTERVAL`] and flips health when it changes, until
/// shutdown.
async fn probe_backend<S: Store>(
    cache: Arc<MintCache<S>>,
    health: HealthReporter,
    ready: Arc<AtomicBool>,
    mut serving: bool,
    stop: watch::Receiver<bool>,
) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if *stop.borrow() {
            return;
        }
        let now = cache.store().probe().await;
        if now != serving {
            if now {
                tracing::info!("backend reachable again: SERVING");
            } else {
                tracing::error!("no memcached server answers: NOT_SERVING");
            }
            serving = now;
        }
        if !*stop.borrow() {
            set_health(&health, &ready, serving).await;
        }
    }
}

/// Registers the connection pool gauges; they live as long as the returned handles.
fn pool_gauges<S: Store>(
    registry: &MetricsRegistry,
    cache: Arc<MintCache<S>>,
) -> (
    opentelemetry::metrics::ObservableGauge<u64>,
    opentelemetry::metrics::ObservableGauge<u64>,
) {
    let meter = registry.meter();
    let for_connections = cache.clone();
    let connections = meter
        .u64_observable_gauge(names::POOL_CONNECTIONS)
        .with_description("Pooled memcached connections, by state")
        .with_callback(move |observer| {
            for stats in for_connections.store().pool_stats() {
                let node = KeyValue::new("node", stats.node);
                observer.observe(
                    stats.in_use as u64,
                    &[node.clone(), KeyValue::new("state", "in_use")],
                );
                observer.observe(stats.idle as u64, &[node, KeyValue::new("state", "idle")]);
            }
        })
        .build();
    let waiting = meter
        .u64_observable_gauge(names::POOL_WAITING)
        .with_description("Callers waiting for a pooled memcached connection")
        .with_callback(move |observer| {
            for stats in cache.store().pool_stats() {
                observer.observe(stats.waiting as u64, &[KeyValue::new("node", stats.node)]);
            }
        })
        .build();
    (connections, waiting)
}

/// The TLS settings of the gRPC port, if TLS is on.
fn tls_config(config: &Config) -> Result<Option<ServerTlsConfig>, RunError> {
    let tls = &config.tls;
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| RunError::TlsFile {
            key,
            path: path.display().to_string(),
            source,
        })
    };
    let mut server = ServerTlsConfig::new().identity(Identity::from_pem(
        read("tls.cert", cert)?,
        read("tls.key", key)?,
    ));
    if let Some(ca) = &tls.client_ca {
        server = server
            .client_ca_root(Certificate::from_pem(read("tls.client_ca", ca)?))
            .client_auth_optional(tls.client_cert_optional);
    }
    Ok(Some(server))
}
