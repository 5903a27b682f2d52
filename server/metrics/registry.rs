//! A server's meter provider ([`MetricsRegistry`]): it always feeds a Prometheus registry
//! (served at `/metrics` on the admin port) and, when `telemetry.otlp_endpoint` is set, an OTLP
//! exporter. Beside the service's instruments it holds the gauges read at each collection: the
//! build's and the process's, the memcached pools', the embedded store's, the hot-key cache's.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableCounter, ObservableGauge};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use super::process::ProcessGauges;
use super::{MetricsError, names};
use crate::config::TelemetrySettings;
use crate::telemetry::otlp;

/// The connection pool gauges; unregistered when dropped.
pub(crate) struct PoolGauges {
    _connections: ObservableGauge<u64>,
    _waiting: ObservableGauge<u64>,
    _reply_buffered: ObservableGauge<u64>,
}

/// The hot-key cache's gauges; unregistered when dropped.
pub(crate) struct HotCacheGauges {
    _entries: ObservableGauge<u64>,
    _size: ObservableGauge<u64>,
}

/// The embedded store's gauges; unregistered when dropped.
pub(crate) struct EmbeddedGauges {
    _entries: ObservableGauge<u64>,
    _size: ObservableGauge<u64>,
    _capacity: ObservableGauge<u64>,
}

/// Connection pool usage of one memcached server, as the pool gauges show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// The server.
    pub(crate) node: String,
    /// Connections lent out.
    pub(crate) in_use: usize,
    /// Connections in the pool.
    pub(crate) idle: usize,
    /// Callers waiting for a connection.
    pub(crate) waiting: usize,
}

/// How full the embedded store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EmbeddedUsage {
    /// Entries held.
    pub(crate) entries: u64,
    /// Bytes counted against the budget.
    pub(crate) bytes: u64,
}

/// The build's series: always 1, with the build's `version`, `profile` and `target` as labels.
fn build_info(meter: &Meter) -> ObservableGauge<u64> {
    let build = [
        KeyValue::new("version", env!("CARGO_PKG_VERSION")),
        // A debug build in production is worth seeing at a glance.
        KeyValue::new(
            "profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        ),
        KeyValue::new(
            "target",
            format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
        ),
    ];
    meter
        .u64_observable_gauge(names::BUILD_INFO)
        .with_description("Always 1; the labels say which build of mintcache runs")
        .with_callback(move |observer| observer.observe(1, &build))
        .build()
}

/// A server's meter provider and Prometheus registry.
pub(crate) struct MetricsRegistry {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    /// Every registry shows which build runs and the process's resource use, observed at each
    /// collection for as long as the registry lives.
    _build_info: ObservableGauge<u64>,
    _process: ProcessGauges,
    _otlp_failures: Option<ObservableCounter<u64>>,
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
            let exporter = otlp::Reported::new(exporter, otlp::Signal::Metrics, endpoint);
            let reader = PeriodicReader::builder(exporter)
                .with_interval(telemetry.export_interval)
                .build();
            builder = builder.with_reader(reader);
        }
        let provider = builder.build();
        let meter = provider.meter("mintcache");
        let build_info = build_info(&meter);
        let process = ProcessGauges::new(&meter);
        // Failed exports are logged once per outage: this counter is what to alert on.
        let otlp_failures = telemetry.otlp_endpoint.clone().map(|endpoint| {
            meter
                .u64_observable_counter(names::OTLP_EXPORT_FAILURES)
                .with_description("Failed exports to the OTLP collector, by signal")
                .with_callback(move |observer| {
                    for (signal, failures) in otlp::export_failures(&endpoint) {
                        observer.observe(failures, &[KeyValue::new("signal", signal.as_str())]);
                    }
                })
                .build()
        });
        Ok(Self {
            provider,
            registry,
            _build_info: build_info,
            _process: process,
            _otlp_failures: otlp_failures,
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
        reply_buffered: impl Fn() -> u64 + Send + Sync + 'static,
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
        let reply_buffered = meter
            .u64_observable_gauge(names::REPLY_BUFFERED)
            .with_unit("By")
            .with_description(
                "Bytes of values read back from memcached and held until their answers are encoded (server.max_buffered_reply_bytes)",
            )
            .with_callback(move |observer| observer.observe(reply_buffered(), &[]))
            .build();
        PoolGauges {
            _connections: connections,
            _waiting: waiting,
            _reply_buffered: reply_buffered,
        }
    }

    /// Registers the embedded store's gauges: its budget, and its entries and weighted bytes
    /// read from `usage` at each collection. They live as long as the returned handle.
    pub(crate) fn embedded_gauges(
        &self,
        capacity: u64,
        usage: impl Fn() -> EmbeddedUsage + Send + Sync + 'static,
    ) -> EmbeddedGauges {
        let usage = std::sync::Arc::new(usage);
        let meter = self.meter();
        let for_entries = usage.clone();
        EmbeddedGauges {
            _entries: meter
                .u64_observable_gauge(names::EMBEDDED_ENTRIES)
                .with_description("Entries in the embedded store")
                .with_callback(move |observer| observer.observe(for_entries().entries, &[]))
                .build(),
            _size: meter
                .u64_observable_gauge(names::EMBEDDED_SIZE)
                .with_unit("By")
                .with_description(
                    "Bytes the embedded store counts against its budget (entries at their estimated memory cost)",
                )
                .with_callback(move |observer| observer.observe(usage().bytes, &[]))
                .build(),
            _capacity: meter
                .u64_observable_gauge(names::EMBEDDED_CAPACITY)
                .with_unit("By")
                .with_description("The embedded store's budget (embedded.max_bytes)")
                .with_callback(move |observer| observer.observe(capacity, &[]))
                .build(),
        }
    }

    /// Registers the hot-key cache's gauges, read from `usage` (entries, bytes) at each
    /// collection. They live as long as the returned handle.
    pub(crate) fn hot_cache_gauges(
        &self,
        usage: impl Fn() -> (u64, u64) + Send + Sync + 'static,
    ) -> HotCacheGauges {
        let usage = std::sync::Arc::new(usage);
        let meter = self.meter();
        let for_entries = usage.clone();
        HotCacheGauges {
            _entries: meter
                .u64_observable_gauge(names::HOT_CACHE_ENTRIES)
                .with_description("Entries in the hot-key cache")
                .with_callback(move |observer| observer.observe(for_entries().0, &[]))
                .build(),
            _size: meter
                .u64_observable_gauge(names::HOT_CACHE_SIZE)
                .with_unit("By")
                .with_description("Bytes the hot-key cache counts its entries at")
                .with_callback(move |observer| observer.observe(usage().1, &[]))
                .build(),
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
pub(super) mod tests {
    use super::*;

    /// The lines of `text` that are samples of `metric` (any labels).
    pub(in crate::metrics) fn samples<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn every_registry_shows_its_build_and_the_process() {
        let registry = MetricsRegistry::new(&TelemetrySettings::default()).expect("registry");
        let text = registry.render();
        let build = samples(&text, "mintcache_build_info");
        assert_eq!(build.len(), 1, "{text}");
        assert!(
            build[0].contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && build[0].contains(if cfg!(debug_assertions) {
                    "profile=\"debug\""
                } else {
                    "profile=\"release\""
                })
                && build[0].ends_with(" 1"),
            "{}",
            build[0]
        );
        for metric in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_threads",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let lines = samples(&text, metric);
            assert_eq!(lines.len(), 1, "{metric} in\n{text}");
            let value: f64 = lines[0]
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a number: {}", lines[0]));
            if metric != "process_cpu_seconds_total" {
                assert!(value > 0.0, "{}", lines[0]);
            }
        }
        assert!(
            samples(&text, "mintcache_embedded_size_bytes").is_empty(),
            "no embedded store here"
        );
    }

    #[test]
    fn embedded_store_gauges_read_the_store_at_each_collection() {
        let registry = MetricsRegistry::new(&TelemetrySettings::default()).expect("registry");
        let usage = std::sync::Arc::new(std::sync::Mutex::new(EmbeddedUsage {
            entries: 0,
            bytes: 0,
        }));
        let _gauges = {
            let usage = usage.clone();
            registry.embedded_gauges(64 << 20, move || *usage.lock().expect("lock"))
        };
        let text = registry.render();
        assert!(text.contains("mintcache_embedded_entries 0"), "{text}");
        assert!(
            text.contains("mintcache_embedded_capacity_bytes 67108864"),
            "{text}"
        );
        *usage.lock().expect("lock") = EmbeddedUsage {
            entries: 3,
            bytes: 1200,
        };
        let text = registry.render();
        assert!(text.contains("mintcache_embedded_entries 3"), "{text}");
        assert!(
            text.contains("mintcache_embedded_size_bytes 1200"),
            "{text}"
        );
    }
}
