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
//!
//! A file per job: `names` (every metric's name), `labels` (the bounded label values),
//! `instruments` (what the service records into), `registry` (the meter provider, its
//! exporters and gauges), `process` (the process's resource use, read from `/proc`).

mod instruments;
mod labels;
mod names;
mod process;
mod registry;

pub(crate) use self::instruments::Metrics;
pub(crate) use self::labels::{RPCS, code_name};
pub(crate) use self::registry::{EmbeddedUsage, MetricsRegistry, PoolStats};

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
