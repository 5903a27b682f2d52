//! OTLP export an operator can follow: a collector that cannot be reached is reported once, when
//! exports start failing, and once more when they work again; not once per export interval.
//!
//! Each exporter (spans, metrics) is wrapped in [`Reported`], which notes the outcome of every
//! export in the state of its collector endpoint. The signals sent to one endpoint share that
//! state, so an unreachable collector makes one line, however many signals fail. The SDK's own
//! line per failed export is filtered out of the logs ([`is_reported_here`]). Failed exports
//! are still counted, per signal ([`export_failures`]), for a metric to alert on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// What an exporter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Signal {
    /// Trace spans.
    Spans,
    /// Metrics.
    Metrics,
}

impl Signal {
    /// Every signal.
    pub(crate) const ALL: [Self; 2] = [Self::Spans, Self::Metrics];

    /// The signal's name in logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Metrics => "metrics",
        }
    }
}

/// Which signals fail to reach one collector endpoint.
#[derive(Debug)]
struct Endpoint {
    url: String,
    failing: Mutex<HashSet<Signal>>,
    /// Failed exports so far, by signal (in the order of [`Signal::ALL`]).
    failures: [AtomicU64; 2],
}

/// The endpoints of the process, by URL: spans are set up once per process and metrics once
/// per server, and both report to the same state when they go to the same collector.
static ENDPOINTS: LazyLock<Mutex<HashMap<String, Arc<Endpoint>>>> = LazyLock::new(Mutex::default);

fn endpoint(url: &str) -> Arc<Endpoint> {
    let mut endpoints = ENDPOINTS.lock().unwrap_or_else(PoisonError::into_inner);
    endpoints
        .entry(url.to_owned())
        .or_insert_with(|| {
            Arc::new(Endpoint {
                url: url.to_owned(),
                failing: Mutex::default(),
                failures: Default::default(),
            })
        })
        .clone()
}

/// Failed exports to the collector at `url` so far, by signal.
pub(crate) fn export_failures(url: &str) -> [(Signal, u64); 2] {
    let endpoint = endpoint(url);
    Signal::ALL.map(|signal| {
        (
            signal,
            endpoint.failures[signal as usize].load(Ordering::Relaxed),
        )
    })
}

/// What a change of an endpoint's state is worth saying.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// The first signal failed: the collector became unreachable.
    Failing,
    /// The last failing signal went through: the collector is back.
    Recovered,
    /// Nothing new.
    Same,
}

/// Notes the outcome of one export of `signal` in `failing`.
fn note(failing: &mut HashSet<Signal>, signal: Signal, ok: bool) -> Change {
    if ok {
        if failing.remove(&signal) && failing.is_empty() {
            return Change::Recovered;
        }
    } else if failing.insert(signal) && failing.len() == 1 {
        return Change::Failing;
    }
    Change::Same
}

impl Endpoint {
    fn report(&self, signal: Signal, result: &OTelSdkResult) {
        if result.is_err() {
            self.failures[signal as usize].fetch_add(1, Ordering::Relaxed);
        }
        let change = {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            note(&mut failing, signal, result.is_ok())
        };
        match (change, result) {
            (Change::Failing, Err(e)) => tracing::warn!(
                endpoint = %self.url,
                signal = %signal.as_str(),
                error = %e,
                "OTLP export failing: telemetry is dropped until the collector answers (said again when it does)"
            ),
            (Change::Recovered, _) => {
                tracing::info!(endpoint = %self.url, "OTLP export works again");
            }
            _ => {}
        }
    }
}

/// Whether a log event is the SDK's own report of one failed export, which [`Reported`]
/// replaces with a line per change.
pub(crate) fn is_reported_here(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == "opentelemetry_sdk" && meta.name().ends_with(".ExportError")
}

/// An exporter whose failures are reported per change of its endpoint's state.
#[derive(Debug)]
pub(crate) struct Reported<E> {
    inner: E,
    signal: Signal,
    endpoint: Arc<Endpoint>,
}

impl<E> Reported<E> {
    /// Wraps `inner`, which sends `signal` to the collector at `url`.
    pub(crate) fn new(inner: E, signal: Signal, url: &str) -> Self {
        Self {
            inner,
            signal,
            endpoint: endpoint(url),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.endpoint.report(self.signal, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Reported<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.endpoint.report(self.signal, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_change_per_outage_whatever_the_signals() {
        let mut failing = HashSet::new();
        let mut changes = Vec::new();
        for (signal, ok) in [
            (Signal::Metrics, true),
            (Signal::Metrics, false),
            (Signal::Spans, false),
            (Signal::Metrics, false),
            (Signal::Metrics, true),
            (Signal::Spans, false),
            (Signal::Spans, true),
            (Signal::Metrics, true),
            (Signal::Spans, false),
        ] {
            changes.push(note(&mut failing, signal, ok));
        }
        use Change::*;
        assert_eq!(
            changes,
            [
                Same, Failing, Same, Same, Same, Same, Recovered, Same, Failing
            ]
        );
    }

    #[test]
    fn endpoints_are_shared_by_url() {
        let a = endpoint("http://collector.test:4317");
        let b = endpoint("http://collector.test:4317");
        let c = endpoint("http://other.test:4317");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
