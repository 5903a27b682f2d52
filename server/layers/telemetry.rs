//! The telemetry layer: one span and one set of request metrics per `mintcache.v1.Cache` call.
//!
//! The span (`grpc.request`, server kind) carries the RPC name, the gRPC status code, the read
//! outcome, and the namespace and version (recorded by the handler); never the key or value.
//! A W3C `traceparent` in the request metadata makes it a child of the caller's span, and the
//! memcached calls made for the request are its children.
//!
//! A call that ends without an answer (its client reset the stream or its connection closed,
//! and the server dropped the call) is counted as `CANCELLED`: a client's doing, never a
//! server fault.

use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderName;
use opentelemetry::propagation::Extractor;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::BoxFuture;
use crate::core::mint::MintOutcome;
use crate::grpc::proto::cache_server::SERVICE_NAME;
use crate::metrics::{Metrics, RPCS, code_name};

/// The status of a trailers-only answer, parsed once (a lookup by string parses the name on
/// every call).
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The RPC of a Cache call's path (`/mintcache.v1.Cache/Get`), or `unknown`.
fn rpc_name(path: &str) -> &'static str {
    let method = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or_default();
    RPCS.iter()
        .find(|r| **r == method)
        .copied()
        .unwrap_or("unknown")
}

/// Reads trace context from HTTP/2 headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// One span and one set of request metrics per call.
#[derive(Clone, Debug)]
pub(crate) struct TelemetryLayer {
    metrics: Metrics,
}

impl TelemetryLayer {
    /// Records into `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`TelemetryLayer`].
#[derive(Clone, Debug)]
pub(crate) struct TelemetryService<S> {
    inner: S,
    metrics: Metrics,
}

/// One call being served: decrements the in-flight gauge however the call ends, and records
/// a call that ends without an answer (dropped because its client went away) as `CANCELLED`.
struct CallRecord {
    metrics: Metrics,
    rpc: &'static str,
    started: Instant,
    span: tracing::Span,
    answered: bool,
}

impl CallRecord {
    fn start(metrics: Metrics, rpc: &'static str, span: tracing::Span) -> Self {
        metrics.in_flight(1);
        Self {
            metrics,
            rpc,
            started: Instant::now(),
            span,
            answered: false,
        }
    }

    fn finish(&mut self, code: &'static str, outcome: Option<MintOutcome>) {
        self.answered = true;
        self.span.record("rpc.grpc.status_code", code);
        if let Some(outcome) = outcome {
            self.span.record("mintcache.outcome", outcome.as_str());
        }
        self.metrics
            .rpc(self.rpc, code, outcome, self.started.elapsed());
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.answered {
            self.finish(code_name(tonic::Code::Cancelled), None);
        }
        self.metrics.in_flight(-1);
    }
}

impl<S, B, R> Service<http::Request<B>> for TelemetryService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = rpc_name(request.uri().path());
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %format_args!("{SERVICE_NAME}/{rpc}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = SERVICE_NAME,
            rpc.method = rpc,
            rpc.grpc.status_code = tracing::field::Empty,
            mintcache.outcome = tracing::field::Empty,
            mintcache.namespace = tracing::field::Empty,
            mintcache.version = tracing::field::Empty,
        );
        // Without an OpenTelemetry layer (no OTLP endpoint) the span is disabled and there is
        // nothing to attach the caller's trace to.
        if !span.is_disabled() {
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(request.headers()))
            });
            let _ = span.set_parent(parent);
        }
        let mut record = CallRecord::start(self.metrics.clone(), rpc, span.clone());
        let future = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = future.await?;
            // A failed unary call is a trailers-only response: its status is in the headers.
            let code = response
                .headers()
                .get(&GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            let outcome = response.extensions().get::<MintOutcome>().copied();
            record.finish(code_name(code), outcome);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpc_list_is_the_apis() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(crate::grpc::proto::FILE_DESCRIPTOR_SET)
            .expect("the generated descriptor set decodes");
        let service = set
            .file
            .iter()
            .filter(|f| f.package() == "mintcache.v1")
            .flat_map(|f| f.service.iter())
            .find(|s| format!("mintcache.v1.{}", s.name()) == SERVICE_NAME)
            .expect("the Cache service is in the descriptor set");
        let mut api: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut listed = RPCS.to_vec();
        api.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, api);
    }

    #[test]
    fn rpc_names_are_a_closed_set() {
        assert_eq!(rpc_name("/mintcache.v1.Cache/Get"), "Get");
        assert_eq!(rpc_name("/mintcache.v1.Cache/DeleteMany"), "DeleteMany");
        assert_eq!(rpc_name("/mintcache.v1.Cache/../../etc"), "unknown");
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), "unknown");
    }
}
