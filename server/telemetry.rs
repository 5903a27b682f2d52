//! Process-wide telemetry set up by `mintcache-server`: the `tracing` subscriber (text or JSON
//! log lines on stderr), W3C trace-context propagation, and, when `telemetry.otlp_endpoint` is
//! set, export of the spans to an OpenTelemetry collector over OTLP/gRPC. Metrics are per
//! server (`crate::metrics`); both exporters report a collector that cannot be reached through
//! `otlp`, once per outage.

pub(crate) mod otlp;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::{LogFormat, Settings};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP span exporter could not be built.
    #[error("OTLP span exporter: {0}")]
    Otlp(String),
    /// A subscriber was already installed.
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber and propagator. Must run inside a tokio runtime when OTLP
/// export is on.
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // `log.level` was checked when the configuration was loaded.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Log lines are events only: spans are for traces. Were spans enabled for the formatter,
    // it would format every span's fields on every call, written or not, and repeat them on
    // each line.
    let fmt = match settings.log.format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
    .with_filter(filter.and(filter_fn(|meta| {
        meta.is_event() && !otlp::is_reported_here(meta)
    })));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![fmt.boxed()];

    let telemetry = &settings.telemetry;
    // Without an exporter no layer takes spans, so a span costs nothing at all: `info_span!`
    // answers a disabled span without touching the registry. (An absent layer must not be
    // added as `None`: an `Option` layer that is `None` declares interest in everything.)
    let tracer_provider = if let Some(endpoint) = &telemetry.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        let exporter = otlp::Reported::new(exporter, otlp::Signal::Spans, endpoint);
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(telemetry.service_name.clone())
                    .build(),
            )
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                telemetry.sample_ratio,
            ))))
            .with_batch_exporter(exporter)
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mintcache"))
            // Spans are exported whatever the log level: the service's own spans only.
            .with_filter(Targets::new().with_target("mintcache", LevelFilter::INFO));
        layers.push(layer.boxed());
        Some(provider)
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        tracing::info!(
            metrics_every_seconds = telemetry.export_interval.as_secs(),
            trace_sample_ratio = telemetry.sample_ratio,
            "OTLP export on: spans and metrics go to {endpoint}"
        );
    }
    Ok(Telemetry { tracer_provider })
}

impl Telemetry {
    /// Exports the spans still buffered.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "span export did not finish");
        }
    }
}
