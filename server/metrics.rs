//! Metrics, through the OpenTelemetry SDK: every instrument of the service is declared here,
//! with its name in [`names`] (a test checks names are unique). Each server owns its
//! [`MetricsRegistry`]: a meter provider that always feeds a Prometheus registry (served at
//! `/metrics` on the admin port) and, when `telemetry.otlp_endpoint` is set, an OTLP exporter.
//!
//! Labels never carry keys, values or tokens: only RPC names, status codes, outcomes and
//! memcached node addresses.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, Meter, MeterProvider as _, ObservableGauge, UpDownCounter,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::config::TelemetrySettings;
use crate::core::mint::MintOutcome;
use crate::store::PoolStats;

/// Metric names (OpenTelemetry form; Prometheus replaces dots with underscores and adds
/// `_total` to counters and the unit to histograms).
pub(crate) mod names {
    /// Calls, by `rpc`, `code` and (for `Get`) `outcome`.
    pub(crate) const RPC_REQUESTS: &str = "mintcache.rpc.requests";
    /// Call latency in seconds, by `rpc` and `code`.
    pub(crate) const RPC_DURATION: &str = "mintcache.rpc.duration";
    /// Calls being served.
    pub(crate) const RPC_IN_FLIGHT: &str = "mintcache.rpc.in_flight";
    /// Calls refused at once because `server.max_concurrent_calls` were being served.
    pub(crate) const RPC_SHED: &str = "mintcache.rpc.shed";
    /// Read outcomes per key (`Get` and `GetMany`), by `outcome`.
    pub(crate) const MINT_OUTCOMES: &str = "mintcache.mint.outcomes";
    /// Reads answered as a miss because the backend failed (fail open).
    pub(crate) const DEGRADED_READS: &str = "mintcache.reads.degraded";
    /// memcached operation latency in seconds, by `node`.
    pub(crate) const BACKEND_DURATION: &str = "mintcache.backend.duration";
    /// memcached operation failures, by `node` and `kind` (connect, timeout, protocol, ejected).
    pub(crate) const BACKEND_ERRORS: &str = "mintcache.backend.errors";
    /// memcached servers ejected after consecutive failures, by `node`.
    pub(crate) const BACKEND_EJECTIONS: &str = "mintcache.backend.ejections";
    /// Pooled memcached connections, by `node` and `state` (in_use, idle).
    pub(crate) const POOL_CONNECTIONS: &str = "mintcache.pool.connections";
    /// Callers waiting for a pooled memcached connection, by `node`.
    pub(crate) const POOL_WAITING: &str = "mintcache.pool.waiting";

    /// Every name above.
    #[cfg(test)]
    pub(crate) const ALL: &[&str] = &[
        RPC_REQUESTS,
        RPC_DURATION,
        RPC_IN_FLIGHT,
        RPC_SHED,
        MINT_OUTCOMES,
        DEGRADED_READS,
        BACKEND_DURATION,
        BACKEND_ERRORS,
        BACKEND_EJECTIONS,
        POOL_CONNECTIONS,
        POOL_WAITING,
    ];
}

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The instruments the service records into.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    rpc_requests: Counter<u64>,
    rpc_duration: Histogram<f64>,
    rpc_in_flight: UpDownCounter<i64>,
    rpc_shed: Counter<u64>,
    mint_outcomes: Counter<u64>,
    degraded_reads: Counter<u64>,
    backend_duration: Histogram<f64>,
    backend_errors: Counter<u64>,
    backend_ejections: Counter<u64>,
}

impl Metrics {
    /// Creates the instruments on `meter`.
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            rpc_requests: meter
                .u64_counter(names::RPC_REQUESTS)
                .with_description("Calls, by rpc, gRPC status code and read outcome")
                .build(),
            rpc_duration: meter
                .f64_histogram(names::RPC_DURATION)
                .with_unit("s")
                .with_description("Call latency")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            rpc_in_flight: meter
                .i64_up_down_counter(names::RPC_IN_FLIGHT)
                .with_description("Calls being served")
                .build(),
            rpc_shed: meter
                .u64_counter(names::RPC_SHED)
                .with_description("Calls refused with RESOURCE_EXHAUSTED because the server was at its concurrency limit")
                .build(),
            mint_outcomes: meter
                .u64_counter(names::MINT_OUTCOMES)
                .with_description("Read outcomes per key")
                .build(),
            degraded_reads: meter
                .u64_counter(names::DEGRADED_READS)
                .with_description("Reads answered as a miss because the backend failed")
                .build(),
            backend_duration: meter
                .f64_histogram(names::BACKEND_DURATION)
                .with_unit("s")
                .with_description("memcached operation latency")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            backend_errors: meter
                .u64_counter(names::BACKEND_ERRORS)
                .with_description("memcached operation failures")
                .build(),
            backend_ejections: meter
                .u64_counter(names::BACKEND_EJECTIONS)
                .with_description("memcached servers ejected after consecutive failures")
                .build(),
        }
    }

    /// One finished call.
    pub(crate) fn rpc(
        &self,
        rpc: &'static str,
        code: &'static str,
        outcome: Option<MintOutcome>,
        elapsed: Duration,
    ) {
        let outcome = outcome.map_or("none", MintOutcome::as_str);
        self.rpc_requests.add(
            1,
            &[
                KeyValue::new("rpc", rpc),
                KeyValue::new("code", code),
                KeyValue::new("outcome", outcome),
            ],
        );
        self.rpc_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("rpc", rpc), KeyValue::new("code", code)],
        );
    }

    /// A call started (`+1`) or ended (`-1`).
    pub(crate) fn in_flight(&self, delta: i64) {
        self.rpc_in_flight.add(delta, &[]);
    }

    /// A call was shed.
    pub(crate) fn shed(&self) {
        self.rpc_shed.add(1, &[]);
    }

    /// One read outcome.
    pub(crate) fn mint_outcome(&self, outcome: MintOutcome) {
        self.mint_outcomes
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }

    /// One read answered as a miss because the backend failed.
    pub(crate) fn degraded_read(&self) {
        self.degraded_reads.add(1, &[]);
    }

    /// One memcached operation.
    pub(crate) fn backend(&self, node: &str, elapsed: Duration, error: Option<&'static str>) {
        let node = KeyValue::new("node", node.to_owned());
        self.backend_duration
            .record(elapsed.as_secs_f64(), std::slice::from_ref(&node));
        if let Some(kind) = error {
            self.backend_errors
                .add(1, &[node, KeyValue::new("kind", kind)]);
        }
    }

    /// A memcached server was ejected.
    pub(crate) fn ejection(&self, node: &str) {
        self.backend_ejections
            .add(1, &[KeyValue::new("node", node.to_owned())]);
    }
}

/// Why metrics could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The Prometheus exporter could not be built.
    #[error("prometheus exporter: {0}")]
    Prometheus(String),
    /// The OTLP exporter could not be built.
    #[error("OTLP metric exporter: {0}")]
    Otlp(String),
}

/// The connection pool gauges; unregistered when dropped.
pub(crate) struct PoolGauges {
    _connections: ObservableGauge<u64>,
    _waiting: ObservableGauge<u64>,
}

/// A server's meter provider and Prometheus registry.
pub(crate) struct MetricsRegistry {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

impl MetricsRegistry {
    /// Builds the provider: Prometheus always, OTLP when an endpoint is configured. Must run
    /// inside a tokio runtime when OTLP is on.
    pub(crate) fn new(telemetry: &TelemetrySettings) -> Result<Self, MetricsError> {
        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .without_target_info()
            .build()
            .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(telemetry.service_name.clone())
            .build();
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus_reader);
        if let Some(endpoint) = &telemetry.otlp_endpoint {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| MetricsError::Otlp(e.to_string()))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(telemetry.export_interval)
                .build();
            builder = builder.with_reader(reader);
        }
        Ok(Self {
            provider: builder.build(),
            registry,
        })
    }

    /// The meter the service's instruments live on.
    pub(crate) fn meter(&self) -> Meter {
        self.provider.meter("mintcache")
    }

    /// Registers the connection pool gauges, read from `stats` at each collection. They live
    /// as long as the returned handle.
    pub(crate) fn pool_gauges(
        &self,
        stats: impl Fn() -> Vec<PoolStats> + Send + Sync + 'static,
    ) -> PoolGauges {
        let stats = std::sync::Arc::new(stats);
        let meter = self.meter();
        let for_connections = stats.clone();
        let connections = meter
            .u64_observable_gauge(names::POOL_CONNECTIONS)
            .with_description("Pooled memcached connections, by state")
            .with_callback(move |observer| {
                for stats in for_connections() {
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
                for stats in stats() {
                    observer.observe(stats.waiting as u64, &[KeyValue::new("node", stats.node)]);
                }
            })
            .build();
        PoolGauges {
            _connections: connections,
            _waiting: waiting,
        }
    }

    /// The current metrics in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Flushes and stops the exporters.
    pub(crate) fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "meter provider shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for name in names::ALL {
            assert!(seen.insert(*name), "{name} declared twice");
            assert!(name.starts_with("mintcache."), "{name}");
        }
    }

    #[test]
    fn recorded_values_reach_the_prometheus_text() {
        let registry = MetricsRegistry::new(&TelemetrySettings::default()).expect("registry");
        let metrics = Metrics::new(&registry.meter());
        metrics.rpc(
            "Get",
            "OK",
            Some(MintOutcome::Hit),
            Duration::from_micros(300),
        );
        metrics.mint_outcome(MintOutcome::Stale);
        metrics.backend("10.0.0.1:11211", Duration::from_micros(80), Some("timeout"));
        metrics.shed();
        let text = registry.render();
        for expected in [
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"hit\",rpc=\"Get\"} 1",
            "mintcache_mint_outcomes_total{outcome=\"stale\"} 1",
            "mintcache_backend_errors_total{kind=\"timeout\",node=\"10.0.0.1:11211\"} 1",
            "mintcache_rpc_shed_total 1",
            "mintcache_rpc_duration_seconds_bucket{code=\"OK\",rpc=\"Get\",le=\"0.0005\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
