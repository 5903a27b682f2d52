//! mintcache: a versioned mint cache over memcached, served over gRPC.
//!
//! Module map, from the top down; each module uses only modules below it:
//! - `serve`: the parts of a running server: the listeners ([`Listeners`]), the gRPC port and
//!   its connections (TLS, the header guard), the backend prober, the drain; `admin`: the
//!   admin HTTP port (`/metrics`, `/healthz`, `/readyz`); `readiness`: the one readiness
//!   verdict that gRPC health and `/readyz` report;
//! - `layers`: the Cache service's request path (telemetry, deadlines, auth, the request read
//!   whole, load shedding, call metadata), built in one place;
//! - [`grpc`]: the generated `mintcache.v1` code ([`grpc::proto`]), the tonic service,
//!   proto <-> domain conversion, and the one mapping of errors to statuses;
//! - `cache`: the mint cache, which validates requests and runs the mint protocol over a
//!   store, a file per part (the read path, the write path, key-space generations, waits for
//!   a fill); `hot`: the hot-key cache it reads first;
//! - `store`: the `Store` trait and its backends, the memcached pool (ketama ring,
//!   per-node connection pools, health) and the embedded in-process store;
//! - `metrics`, [`telemetry`]: metrics (the service's, the build's and the process's; as
//!   Prometheus text and over OTLP), logs, trace propagation and span export;
//! - [`config`]: the configuration as written ([`config::Config`], a file per section) and as
//!   the server runs with it ([`config::Settings`]), validated before anything starts;
//! - `core`: pure logic (key encoding, ttl arithmetic, value envelope, memcached item rules,
//!   mint decisions, lease tokens, key-space generations, batched answers, metadata and auth
//!   parsing). No I/O, no clock reads;
//! - [`clock`]: where the server reads the time (the mint cache and the embedded store), so
//!   that tests move it; [`resolve`]: how memcached server names become addresses;
//!   [`testing`]: what the end-to-end tests need to know of the server's decisions (which
//!   memcached server holds a key).
//!
//! A Get travels: `serve::incoming` (the connection) → `layers` (`cache_service`'s stack,
//! outermost first) → `grpc::service` (`CacheService::get`: the call's key space, its wait) →
//! `cache::read` (`MintCache::get`: the key checked, its store key at the key space's
//! generation from `cache::generations`, the hot-key cache, the first look at the store) →
//! `store` (`Store::get`: `store::memcached` or `store::embedded`) → `cache::read`
//! (`finish_read`: `core::mint::decide_with`, the refresh election and its timeout when
//! needed; `cache::wait` for a read that waits for a fill) → `grpc::convert` (the answer) or
//! `grpc::status` (an error).
//!
//! [`run`] serves validated settings on their listeners until a shutdown future resolves; the
//! `mintcache-server` binary is a thin wrapper around it.
#![forbid(unsafe_code)]

mod admin;
mod cache;
pub mod clock;
pub mod config;
mod core;
pub mod grpc;
mod hot;
mod layers;
mod metrics;
mod readiness;
pub mod resolve;
mod serve;
mod store;
pub mod telemetry;
pub mod testing;

use std::future::Future;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{Backend, Settings};
pub use crate::metrics::MetricsError;
use crate::metrics::{Metrics, MetricsRegistry};
use crate::resolve::Resolver;
pub use crate::serve::{BindError, Listeners, RunError};
use crate::serve::{Server, Shutdown};
use crate::store::{EmbeddedStore, MemcachedStore};

/// Serves `settings` on `listeners` until `shutdown` resolves, then drains: health goes
/// NOT_SERVING, no new connection is accepted, and in-flight calls get
/// `server.shutdown_grace_seconds` to finish.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_clock(settings, listeners, shutdown, Clock::System).await
}

/// As [`run`], with the server reading the time from `clock` (tests move a
/// [`clock::ManualClock`] instead of sleeping through ttls and refresh timeouts).
pub async fn run_with_clock(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Clock,
) -> Result<(), RunError> {
    let hooks = Hooks {
        clock,
        ..Hooks::default()
    };
    run_with(settings, listeners, shutdown, hooks).await
}

/// Where a server reads the time and resolves names: the system's by default; tests put their
/// own in (a [`clock::ManualClock`], a [`Resolver::table`] that moves a name).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// Where the mint cache and the embedded store read the time (memcached keeps its own).
    pub clock: Clock,
    /// How memcached server names are resolved, at every connection.
    pub resolver: Resolver,
}

/// As [`run`], with the given [`Hooks`].
pub async fn run_with(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hooks: Hooks,
) -> Result<(), RunError> {
    let Hooks { clock, resolver } = hooks;
    let registry = Arc::new(MetricsRegistry::new(&settings.telemetry)?);
    let metrics = Metrics::new(&registry.meter());
    let shutdown = Shutdown::on(shutdown);
    let backend = settings.backend.clone();
    let max_value_bytes = settings.cache.max_value_bytes;
    let reply_budget = settings.server.max_buffered_reply_bytes;
    let server = Server {
        settings,
        listeners,
        registry: registry.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
    };
    let result = match backend {
        Backend::Embedded { max_bytes } => {
            tracing::warn!(
                "no memcached servers configured (memcached.servers): using the EMBEDDED \
                 in-process store. It is NOT shared between replicas, so versions, refresh \
                 elections and invalidations only hold within this process. Configure \
                 memcached.servers for production."
            );
            let store = EmbeddedStore::new(max_bytes, clock);
            let _gauges = {
                let store = store.clone();
                registry.embedded_gauges(max_bytes, move || store.usage())
            };
            server.serve(store, shutdown).await
        }
        Backend::Memcached(config) => {
            let servers: Vec<String> = config.servers.iter().map(ToString::to_string).collect();
            tracing::info!(servers = ?servers, "using memcached pool");
            let store =
                MemcachedStore::new(&config, max_value_bytes, reply_budget, metrics, resolver);
            store.check_servers_at_startup();
            server.serve(store, shutdown).await
        }
    };
    registry.shutdown();
    result
}
