//! The instruments the service records into ([`Metrics`]): calls, read outcomes, sheds,
//! degraded reads, memcached operations and ejections, hot-key cache hits. The series an alert
//! would watch exist from the start, at zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableCounter, UpDownCounter};

use super::labels::{
    PEEK_OUTCOMES, READ_ELECT, READ_PEEK, RPCS, WATCHED_CODES, call_labels, code_name,
    outcome_labels,
};
use super::names;
use crate::core::mint::MintOutcome;

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
    /// Read outcomes, counted per key (a `GetMany` of 100 keys counts 100): plain atomic
    /// counters, read by `mint_outcomes` when metrics are collected. Recording one through the
    /// SDK (a hash of its labels, a map lookup) cost more than the rest of a key's answer.
    outcome_counts: Arc<OutcomeCounts>,
    _mint_outcomes: ObservableCounter<u64>,
    degraded_reads: Counter<u64>,
    backend_duration: Histogram<f64>,
    backend_errors: Counter<u64>,
    backend_ejections: Counter<u64>,
    hot_cache_hits: Counter<u64>,
}

/// One count per outcome, by its position in [`MintOutcome::ALL`].
type PerOutcome = [AtomicU64; MintOutcome::ALL.len()];

/// Read outcomes counted by read (the `read` label) and outcome (see
/// [`Instruments::outcome_counts`]).
#[derive(Debug, Default)]
struct OutcomeCounts {
    /// Reads that take part in the refresh election.
    elect: PerOutcome,
    /// Peeks: they only look.
    peek: PerOutcome,
}

impl OutcomeCounts {
    fn add(counts: &PerOutcome, outcome: MintOutcome) {
        counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every series an outcome can have, zeros included (a peek never refreshes).
    fn report(&self, observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>) {
        for (read, counts, outcomes) in [
            (READ_ELECT, &self.elect, &MintOutcome::ALL[..]),
            (READ_PEEK, &self.peek, &PEEK_OUTCOMES[..]),
        ] {
            for &outcome in outcomes {
                let count = counts[outcome as usize].load(Ordering::Relaxed);
                observer.observe(count, &outcome_labels(outcome, read));
            }
        }
    }
}

impl Metrics {
    /// Creates the instruments on `meter`, with the series alerts watch at zero.
    pub(crate) fn new(meter: &Meter) -> Self {
        let metrics = Self(Arc::new(Self::instruments(meter)));
        metrics.start_at_zero();
        metrics
    }

    fn instruments(meter: &Meter) -> Instruments {
        let outcome_counts = Arc::new(OutcomeCounts::default());
        let counts = outcome_counts.clone();
        Instruments {
            outcome_counts,
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
            _mint_outcomes: meter
                .u64_observable_counter(names::MINT_OUTCOMES)
                .with_description(
                    "Read outcomes per key, by outcome and read (elect: takes part in the \
                     refresh election; peek: only looks)",
                )
                .with_callback(move |observer| counts.report(observer))
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
    /// calls by RPC and watched code (`Get` answered `OK` by outcome), degraded reads, sheds,
    /// and the calls in flight. (Read outcomes are reported from their counters, zeros
    /// included.)
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
        self.degraded_reads.add(0, &[]);
        self.hot_cache_hits.add(0, &[]);
        self.rpc_shed.add(0, &[]);
        self.rpc_in_flight.add(0, &[]);
    }

    /// A read answered from the hot-key cache.
    pub(crate) fn hot_hit(&self) {
        self.hot_cache_hits.add(1, &[]);
    }

    /// The memcached servers in use: their ejection series, and their error series of each of
    /// `error_kinds` (every kind a store error can be), start at zero.
    pub(crate) fn nodes_known(
        &self,
        nodes: impl IntoIterator<Item = String>,
        error_kinds: &[&'static str],
    ) {
        for node in nodes {
            let node = KeyValue::new("node", node);
            self.backend_ejections.add(0, std::slice::from_ref(&node));
            for &kind in error_kinds {
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
        OutcomeCounts::add(&self.outcome_counts.elect, outcome);
    }

    /// One read outcome of a peek (a look that never takes part in the election).
    pub(crate) fn peek_outcome(&self, outcome: MintOutcome) {
        OutcomeCounts::add(&self.outcome_counts.peek, outcome);
    }

    /// One read answered as a miss because the backend failed.
    pub(crate) fn degraded_read(&self) {
        self.degraded_reads.add(1, &[]);
    }

    /// The `node` label of a memcached server, made once per server: a clone shares the
    /// name instead of copying it for every operation.
    pub(crate) fn node_label(node: &str) -> KeyValue {
        KeyValue::new("node", Arc::<str>::from(node))
    }

    /// One memcached operation on the server labelled `node` ([`Self::node_label`]).
    pub(crate) fn backend(&self, node: &KeyValue, elapsed: Duration, error: Option<&'static str>) {
        self.backend_duration
            .record(elapsed.as_secs_f64(), std::slice::from_ref(node));
        if let Some(kind) = error {
            self.backend_errors
                .add(1, &[node.clone(), KeyValue::new("kind", kind)]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TelemetrySettings;
    use crate::metrics::MetricsRegistry;
    use crate::metrics::registry::tests::samples;

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
        metrics.backend(
            &Metrics::node_label("10.0.0.1:11211"),
            Duration::from_micros(80),
            Some("timeout"),
        );
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

    #[test]
    fn the_watched_series_start_at_zero_with_bounded_labels() {
        let registry = MetricsRegistry::new(&TelemetrySettings::default()).expect("registry");
        let metrics = Metrics::new(&registry.meter());
        let kinds = ["connect", "timeout", "refused"];
        metrics.nodes_known(
            ["10.0.0.1:11211".to_owned(), "10.0.0.2:11211".to_owned()],
            &kinds,
        );
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
        // Counted by position in `MintOutcome::ALL`.
        for (i, outcome) in MintOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
        assert_eq!(outcomes.len(), MintOutcome::ALL.len() + PEEK_OUTCOMES.len());
        assert!(
            !text.contains("outcome=\"refresh\",read=\"peek\""),
            "a peek never refreshes"
        );
        assert_eq!(
            samples(&text, "mintcache_backend_errors_total").len(),
            2 * kinds.len()
        );
        assert!(
            samples(&text, "mintcache_rpc_duration_seconds_count").is_empty(),
            "latency has no zero to show"
        );
    }
}
