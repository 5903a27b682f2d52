//! Metrics, through the OpenTelemetry SDK: every instrument of the service is declared here,
//! with its name in [`names`] (a test checks names are unique). Each server owns its
//! [`MetricsRegistry`]: a meter provider that always feeds a Prometheus registry (served at
//! `/metrics` on the admin port) and, when `telemetry.otlp_endpoint` is set, an OTLP exporter.
//!
//! Labels never carry keys, values or tokens: only RPC names, status codes, outcomes and
//! memcached node addresses, all from bounded sets.
//!
//! The series an alert would watch exist from the start, at zero ([`Metrics::new`],
//! [`Metrics::nodes_known`]): a rule like `rate(…{code="UNAVAILABLE"}[5m]) > 0` or a ratio
//! of errors to calls has something to compute on before the first failure. Beside the
//! service's own metrics, every registry shows a build-info series and the process's resource
//! use ([`process`]), and a server on the embedded store its size.

mod process;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, Meter, MeterProvider as _, ObservableCounter, ObservableGauge,
    UpDownCounter,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::config::TelemetrySettings;
use crate::core::mint::MintOutcome;
use crate::layers::telemetry::{RPCS, code_name};
use crate::store::{PoolStats, StoreError};
use crate::telemetry::otlp;

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
    /// Read outcomes per key (`Get` and `GetMany`), by `outcome` and `read` (`elect`: a read
    /// that takes part in the refresh election; `peek`: a look that never does).
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
    /// Bytes of values read back from memcached and held until their answers are encoded
    /// (unit `By`; bounded by `server.max_buffered_reply_bytes`).
    pub(crate) const REPLY_BUFFERED: &str = "mintcache.reply.buffered";
    /// Reads answered from the hot-key cache.
    pub(crate) const HOT_CACHE_HITS: &str = "mintcache.hot_cache.hits";
    /// Entries in the hot-key cache.
    pub(crate) const HOT_CACHE_ENTRIES: &str = "mintcache.hot_cache.entries";
    /// Bytes the hot-key cache counts its entries at (unit `By`).
    pub(crate) const HOT_CACHE_SIZE: &str = "mintcache.hot_cache.size";
    /// Entries in the embedded store.
    pub(crate) const EMBEDDED_ENTRIES: &str = "mintcache.embedded.entries";
    /// Bytes the embedded store counts against its budget (unit `By`).
    pub(crate) const EMBEDDED_SIZE: &str = "mintcache.embedded.size";
    /// The embedded store's budget, `embedded.max_bytes` (unit `By`).
    pub(crate) const EMBEDDED_CAPACITY: &str = "mintcache.embedded.capacity";
    /// Always 1, with the build's `version`, `profile` and `target` as labels.
    pub(crate) const BUILD_INFO: &str = "mintcache.build.info";
    /// User and system CPU time of the process (unit `s`).
    pub(crate) const PROCESS_CPU: &str = "process.cpu";
    /// Resident memory of the process (unit `By`).
    pub(crate) const PROCESS_RESIDENT_MEMORY: &str = "process.resident_memory";
    /// Virtual memory of the process (unit `By`).
    pub(crate) const PROCESS_VIRTUAL_MEMORY: &str = "process.virtual_memory";
    /// OS threads of the process.
    pub(crate) const PROCESS_THREADS: &str = "process.threads";
    /// Open file descriptors.
    pub(crate) const PROCESS_OPEN_FDS: &str = "process.open_fds";
    /// The limit on open file descriptors.
    pub(crate) const PROCESS_MAX_FDS: &str = "process.max_fds";
    /// When the process started, seconds since the Unix epoch (unit `s`).
    pub(crate) const PROCESS_START_TIME: &str = "process.start_time";
    /// Failed exports to the OTLP collector, by `signal` (spans, metrics).
    pub(crate) const OTLP_EXPORT_FAILURES: &str = "mintcache.otlp.export_failures";

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
        EMBEDDED_ENTRIES,
        EMBEDDED_SIZE,
        EMBEDDED_CAPACITY,
        BUILD_INFO,
        PROCESS_CPU,
        PROCESS_RESIDENT_MEMORY,
        PROCESS_VIRTUAL_MEMORY,
        PROCESS_THREADS,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_START_TIME,
        OTLP_EXPORT_FAILURES,
    ];
}

/// The status codes whose request series exist from the start for every RPC: success, and the
/// failures an alert watches (client errors, refusals, overload, deadlines, backend and server
/// faults). Rarer codes appear with their first call.
const WATCHED_CODES: [tonic::Code; 9] = [
    tonic::Code::Ok,
    tonic::Code::Cancelled,
    tonic::Code::InvalidArgument,
    tonic::Code::DeadlineExceeded,
    tonic::Code::Unauthenticated,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::Unavailable,
    tonic::Code::Internal,
];

/// Latency buckets in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The instruments the service records into. One allocation shared by every clone: the
/// request path's services are cloned for every call, and a clone is then one reference count
/// instead of one per instrument.
#[derive(Clone, Debug)]
pub(crate) struct Metrics(Arc<Instruments>);

impl std::ops::Deref for Metrics {
    type Target = Instruments;

    fn deref(&self) -> &Instruments {
        &self.0
    }
}

/// See [`Metrics`].
#[derive(Debug)]
pub(crate) struct Instruments {
    rpc_requests: Counter<u64>,
    rpc_duration: Histogram<f64>,
    rpc_in_flight: UpDownCounter<i64>,
    rpc_shed: Counter<u64>,
    mint_outcomes: Counter<u64>,
    degraded_reads: Counter<u64>,
    backend_duration: Histogram<f64>,
    backend_errors: Counter<u64>,
    backend_ejections: Counter<u64>,
    hot_cache_hits: Counter<u64>,
}

impl Metrics {
    /// Creates the instruments on `meter`, with the series alerts watch at zero.
    pub(crate) fn new(meter: &Meter) -> Self {
        let metrics = Self(Arc::new(Self::instruments(meter)));
        metrics.start_at_zero();
        metrics
    }

    fn instruments(meter: &Meter) -> Instruments {
        Instruments {
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
                .with_description(
                    "Read outcomes per key, by outcome and read (elect: takes part in the \
                     refresh election; peek: only looks)",
                )
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
            hot_cache_hits: meter
                .u64_counter(names::HOT_CACHE_HITS)
                .with_description("Reads answered from the hot-key cache, without memcached")
                .build(),
        }
    }

    /// Adds 0 to each series an alert watches, so that it exists before its first event:
    /// calls by RPC and watched code (`Get` answered `OK` by outcome), read outcomes, degraded
    /// reads, sheds, and the calls in flight.
    fn start_at_zero(&self) {
        for rpc in RPCS {
            for code in WATCHED_CODES {
                let name = code_name(code);
                if *rpc == "Get" && code == tonic::Code::Ok {
                    for outcome in MintOutcome::ALL {
                        self.rpc_requests
                            .add(0, &call_labels(rpc, name, outcome.as_str()));
                    }
                } else {
                    self.rpc_requests.add(0, &call_labels(rpc, name, "none"));
                }
            }
        }
        for (read, outcomes) in [
            (READ_ELECT, &MintOutcome::ALL[..]),
            (READ_PEEK, &PEEK_OUTCOMES[..]),
        ] {
            for outcome in outcomes {
                self.mint_outcomes.add(0, &outcome_labels(*outcome, read));
            }
        }
        self.degraded_reads.add(0, &[]);
        self.hot_cache_hits.add(0, &[]);
        self.rpc_shed.add(0, &[]);
        self.rpc_in_flight.add(0, &[]);
    }

    /// A read answered from the hot-key cache.
    pub(crate) fn hot_hit(&self) {
        self.hot_cache_hits.add(1, &[]);
    }

    /// The memcached servers in use: their error and ejection series start at zero.
    pub(crate) fn nodes_known(&self, nodes: impl IntoIterator<Item = String>) {
        for node in nodes {
            let node = KeyValue::new("node", node);
            self.backend_ejections.add(0, std::slice::from_ref(&node));
            for kind in StoreError::KINDS {
                self.backend_errors
                    .add(0, &[node.clone(), KeyValue::new("kind", kind)]);
            }
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
        self.rpc_requests.add(1, &call_labels(rpc, code, outcome));
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

    /// One read outcome of a read that took part in the refresh election.
    pub(crate) fn mint_outcome(&self, outcome: MintOutcome) {
        self.mint_outcomes
            .add(1, &outcome_labels(outcome, READ_ELECT));
    }

    /// One read outcome of a peek (a look that never takes part in the election).
    pub(crate) fn peek_outcome(&self, outcome: MintOutcome) {
        self.mint_outcomes
            .add(1, &outcome_labels(outcome, READ_PEEK));
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

    /// A failure found in a reply of an operation already counted (a refusal of one command).
    pub(crate) fn backend_error(&self, node: &str, kind: &'static str) {
        self.backend_errors.add(
            1,
            &[
                KeyValue::new("node", node.to_owned()),
                KeyValue::new("kind", kind),
            ],
        );
    }

    /// A memcached server was ejected.
    pub(crate) fn ejection(&self, node: &str) {
        self.backend_ejections
            .add(1, &[KeyValue::new("node", node.to_owned())]);
    }
}

/// The `read` label of `mintcache.mint.outcomes`: a read that takes part in the refresh
/// election (what applications do), or a peek (inspection tools, existence checks such as
/// Django's `has_key`), so that each has its own hit ratio.
const READ_ELECT: &str = "elect";
/// See [`READ_ELECT`].
const READ_PEEK: &str = "peek";

/// The outcomes a peek can have: it never wins an election, so never `refresh`.
const PEEK_OUTCOMES: [MintOutcome; 4] = [
    MintOutcome::Hit,
    MintOutcome::Stale,
    MintOutcome::Miss,
    MintOutcome::Pending,
];

/// The labels of a read in `mintcache.mint.outcomes`.
fn outcome_labels(outcome: MintOutcome, read: &'static str) -> [KeyValue; 2] {
    [
        KeyValue::new("outcome", outcome.as_str()),
        KeyValue::new("read", read),
    ]
}

/// The labels of a call in `mintcache.rpc.requests`.
fn call_labels(rpc: &'static str, code: &'static str, outcome: &'static str) -> [KeyValue; 3] {
    [
        KeyValue::new("rpc", rpc),
        KeyValue::new("code", code),
        KeyValue::new("outcome", outcome),
    ]
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

/// How full the embedded store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EmbeddedUsage {
    /// Entries held.
    pub(crate) entries: u64,
    /// Bytes counted against the budget.
    pub(crate) bytes: u64,
}

/// The gauges every registry has: build info and the process's resource use. They are
/// observed at each collection, for as long as the registry lives.
struct StandardGauges {
    _build_info: ObservableGauge<u64>,
    _cpu: ObservableCounter<f64>,
    _resident: ObservableGauge<u64>,
    _virtual: ObservableGauge<u64>,
    _threads: ObservableGauge<u64>,
    _open_fds: ObservableGauge<u64>,
    _max_fds: ObservableGauge<u64>,
    _start_time: ObservableGauge<f64>,
}

impl StandardGauges {
    fn new(meter: &Meter) -> Self {
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
        let started = process::start_time();
        Self {
            _build_info: meter
                .u64_observable_gauge(names::BUILD_INFO)
                .with_description("Always 1; the labels say which build of mintcache runs")
                .with_callback(move |observer| observer.observe(1, &build))
                .build(),
            _cpu: meter
                .f64_observable_counter(names::PROCESS_CPU)
                .with_unit("s")
                .with_description("User and system CPU time spent")
                .with_callback(|observer| {
                    if let Some(stat) = process::read() {
                        observer.observe(stat.cpu_seconds, &[]);
                    }
                })
                .build(),
            _resident: meter
                .u64_observable_gauge(names::PROCESS_RESIDENT_MEMORY)
                .with_unit("By")
                .with_description("Resident memory size")
                .with_callback(|observer| {
                    if let Some(stat) = process::read() {
                        observer.observe(stat.resident_bytes, &[]);
                    }
                })
                .build(),
            _virtual: meter
                .u64_observable_gauge(names::PROCESS_VIRTUAL_MEMORY)
                .with_unit("By")
                .with_description("Virtual memory size")
                .with_callback(|observer| {
                    if let Some(stat) = process::read() {
                        observer.observe(stat.virtual_bytes, &[]);
                    }
                })
                .build(),
            _threads: meter
                .u64_observable_gauge(names::PROCESS_THREADS)
                .with_description("OS threads")
                .with_callback(|observer| {
                    if let Some(stat) = process::read() {
                        observer.observe(stat.threads, &[]);
                    }
                })
                .build(),
            _open_fds: meter
                .u64_observable_gauge(names::PROCESS_OPEN_FDS)
                .with_description("Open file descriptors")
                .with_callback(|observer| {
                    if let Some(n) = process::open_fds() {
                        observer.observe(n, &[]);
                    }
                })
                .build(),
            _max_fds: meter
                .u64_observable_gauge(names::PROCESS_MAX_FDS)
                .with_description("Limit on open file descriptors")
                .with_callback(|observer| {
                    if let Some(n) = process::max_fds() {
                        observer.observe(n, &[]);
                    }
                })
                .build(),
            _start_time: meter
                .f64_observable_gauge(names::PROCESS_START_TIME)
                .with_unit("s")
                .with_description("Start time of the process since the Unix epoch")
                .with_callback(move |observer| observer.observe(started, &[]))
                .build(),
        }
    }
}

/// A server's meter provider and Prometheus registry.
pub(crate) struct MetricsRegistry {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    _standard: StandardGauges,
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
        let standard = StandardGauges::new(&meter);
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
            _standard: standard,
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
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for name in names::ALL {
            assert!(seen.insert(*name), "{name} declared twice");
            assert!(
                name.starts_with("mintcache.") || name.starts_with("process."),
                "{name}"
            );
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
        metrics.peek_outcome(MintOutcome::Hit);
        metrics.peek_outcome(MintOutcome::Hit);
        metrics.backend("10.0.0.1:11211", Duration::from_micros(80), Some("timeout"));
        metrics.shed();
        let text = registry.render();
        for expected in [
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"hit\",rpc=\"Get\"} 1",
            "mintcache_mint_outcomes_total{outcome=\"stale\",read=\"elect\"} 1",
            "mintcache_mint_outcomes_total{outcome=\"hit\",read=\"peek\"} 2",
            "mintcache_backend_errors_total{kind=\"timeout\",node=\"10.0.0.1:11211\"} 1",
            "mintcache_rpc_shed_total 1",
            "mintcache_rpc_duration_seconds_bucket{code=\"OK\",rpc=\"Get\",le=\"0.0005\"} 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    /// The lines of `text` that are samples of `metric` (any labels).
    fn samples<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(metric)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
    }

    #[test]
    fn the_watched_series_start_at_zero_with_bounded_labels() {
        let registry = MetricsRegistry::new(&TelemetrySettings::default()).expect("registry");
        let metrics = Metrics::new(&registry.meter());
        metrics.nodes_known(["10.0.0.1:11211".to_owned(), "10.0.0.2:11211".to_owned()]);
        let text = registry.render();
        for expected in [
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"hit\",rpc=\"Get\"} 0",
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"pending\",rpc=\"Get\"} 0",
            "mintcache_rpc_requests_total{code=\"UNAVAILABLE\",outcome=\"none\",rpc=\"Get\"} 0",
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"none\",rpc=\"SetMany\"} 0",
            "mintcache_rpc_requests_total{code=\"INTERNAL\",outcome=\"none\",rpc=\"Flush\"} 0",
            "mintcache_rpc_requests_total{code=\"RESOURCE_EXHAUSTED\",outcome=\"none\",rpc=\"Set\"} 0",
            "mintcache_mint_outcomes_total{outcome=\"refresh\",read=\"elect\"} 0",
            "mintcache_mint_outcomes_total{outcome=\"pending\",read=\"peek\"} 0",
            "mintcache_reads_degraded_total 0",
            "mintcache_rpc_shed_total 0",
            "mintcache_rpc_in_flight 0",
            "mintcache_backend_ejections_total{node=\"10.0.0.2:11211\"} 0",
            "mintcache_backend_errors_total{kind=\"connect\",node=\"10.0.0.1:11211\"} 0",
            "mintcache_backend_errors_total{kind=\"refused\",node=\"10.0.0.2:11211\"} 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Bounded: every RPC by every watched code, with Get's successes by outcome.
        let calls = samples(&text, "mintcache_rpc_requests_total");
        assert_eq!(
            calls.len(),
            RPCS.len() * WATCHED_CODES.len() + MintOutcome::ALL.len() - 1
        );
        // Every outcome of an elected read, every outcome a peek can have.
        let outcomes = samples(&text, "mintcache_mint_outcomes_total");
        assert_eq!(outcomes.len(), MintOutcome::ALL.len() + PEEK_OUTCOMES.len());
        assert!(
            !text.contains("outcome=\"refresh\",read=\"peek\""),
            "a peek never refreshes"
        );
        assert_eq!(
            samples(&text, "mintcache_backend_errors_total").len(),
            2 * StoreError::KINDS.len()
        );
        assert!(
            samples(&text, "mintcache_rpc_duration_seconds_count").is_empty(),
            "latency has no zero to show"
        );
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
