//! What an operator relies on, end to end on the server binary: the series alerts watch exist at
//! zero from the first scrape, with the build info, the process's resource use and the
//! embedded store's size; a collector that cannot be reached is said once (and its return once),
//! not at every export; and the log line of a failing call is short and to the point, in text
//! and in JSON.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use harness::calls::Calls;
use harness::{Memcached, ServerProcess, closed_port, sample, wait_for_or};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// The RPCs of the Cache service.
const RPCS: [&str; 11] = [
    "Get",
    "Set",
    "Delete",
    "Add",
    "Touch",
    "Invalidate",
    "Increment",
    "GetMany",
    "SetMany",
    "DeleteMany",
    "Flush",
];

/// The failures whose series exist for every RPC from the start.
const WATCHED_FAILURES: [&str; 8] = [
    "CANCELLED",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
];

/// The sample lines of `metric` (with any labels).
fn samples<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .collect()
}

/// The value of the one sample line that is exactly `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {line}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test]
async fn a_fresh_server_shows_the_watched_series_at_zero() {
    let mc = Memcached::start();
    let before_start = unix_now();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let (status, text) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);

    for rpc in RPCS {
        for code in WATCHED_FAILURES {
            let series = format!(
                "mintcache_rpc_requests_total{{code=\"{code}\",outcome=\"none\",rpc=\"{rpc}\"}}"
            );
            assert_eq!(value(&text, &series), 0.0, "{series}");
        }
        let outcomes: &[&str] = if rpc == "Get" {
            &["hit", "stale", "refresh", "miss", "pending"]
        } else {
            &["none"]
        };
        for outcome in outcomes {
            let series = format!(
                "mintcache_rpc_requests_total{{code=\"OK\",outcome=\"{outcome}\",rpc=\"{rpc}\"}}"
            );
            assert_eq!(value(&text, &series), 0.0, "{series}");
        }
    }
    assert_eq!(
        samples(&text, "mintcache_rpc_requests_total").len(),
        RPCS.len() * (WATCHED_FAILURES.len() + 1) + 4,
        "a bounded set of series"
    );
    // Every read is counted, by outcome and by read: `elect` (takes part in the refresh
    // election) or `peek` (only looks, so never `refresh`).
    for outcome in ["hit", "stale", "refresh", "miss", "pending"] {
        let series =
            format!("mintcache_mint_outcomes_total{{outcome=\"{outcome}\",read=\"elect\"}}");
        assert_eq!(value(&text, &series), 0.0, "{series}");
    }
    for outcome in ["hit", "stale", "miss", "pending"] {
        let series =
            format!("mintcache_mint_outcomes_total{{outcome=\"{outcome}\",read=\"peek\"}}");
        assert_eq!(value(&text, &series), 0.0, "{series}");
    }
    assert_eq!(samples(&text, "mintcache_mint_outcomes_total").len(), 9);
    for series in [
        "mintcache_reads_degraded_total",
        "mintcache_rpc_shed_total",
        "mintcache_rpc_in_flight",
    ] {
        assert_eq!(value(&text, series), 0.0, "{series}");
    }
    let node = mc.addr();
    assert_eq!(
        value(
            &text,
            &format!("mintcache_backend_ejections_total{{node=\"{node}\"}}")
        ),
        0.0
    );
    for kind in [
        "connect", "timeout", "protocol", "ejected", "broken", "refused",
    ] {
        let series = format!("mintcache_backend_errors_total{{kind=\"{kind}\",node=\"{node}\"}}");
        assert_eq!(value(&text, &series), 0.0, "{series}");
    }

    // Which build runs.
    let build = samples(&text, "mintcache_build_info");
    assert_eq!(build.len(), 1, "{text}");
    assert!(
        build[0].contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build[0].contains("profile=\"")
            && build[0].contains("target=\"")
            && build[0].ends_with(" 1"),
        "{}",
        build[0]
    );

    // The process, as /proc shows it.
    let resident = value(&text, "process_resident_memory_bytes");
    let rss = server.rss_bytes() as f64;
    assert!(
        resident > 1e6 && resident < 2.0 * rss && rss < 2.0 * resident,
        "process_resident_memory_bytes {resident} vs VmRSS {rss}"
    );
    let cpu = value(&text, "process_cpu_seconds_total");
    assert!(cpu >= 0.0);
    let open = value(&text, "process_open_fds");
    assert!(
        open >= 3.0 && open <= value(&text, "process_max_fds"),
        "{open}"
    );
    assert!(value(&text, "process_threads") >= 2.0);
    assert!(value(&text, "process_virtual_memory_bytes") >= resident);
    // /proc counts in clock ticks after a boot time in whole seconds: a second of slack.
    let started = value(&text, "process_start_time_seconds");
    assert!(
        started >= before_start - 1.0 && started <= unix_now(),
        "started at {started}, spawned at {before_start}"
    );
    // No embedded store here, and no OTLP export.
    assert!(samples(&text, "mintcache_embedded_entries").is_empty());
    assert!(samples(&text, "mintcache_otlp_export_failures_total").is_empty());

    // Work shows: CPU time grows, and the calls are counted.
    let c = Calls::new(server.client().await);
    for n in 0..300 {
        c.set(format!("k{n}").as_bytes(), b"v").await;
    }
    let text = server.admin_get("/metrics").await.1;
    assert!(value(&text, "process_cpu_seconds_total") > cpu);
    assert_eq!(
        value(
            &text,
            "mintcache_rpc_requests_total{code=\"OK\",outcome=\"none\",rpc=\"Set\"}"
        ),
        300.0
    );
}

#[tokio::test]
async fn an_embedded_server_shows_its_size() {
    let budget = 8u64 << 20;
    let server = ServerProcess::start(&[("MINTCACHE_EMBEDDED__MAX_BYTES", budget.to_string())]);
    let text = server.admin_get("/metrics").await.1;
    assert_eq!(value(&text, "mintcache_embedded_entries"), 0.0);
    assert_eq!(value(&text, "mintcache_embedded_size_bytes"), 0.0);
    assert_eq!(
        value(&text, "mintcache_embedded_capacity_bytes"),
        budget as f64
    );
    // No memcached: no per-server series.
    assert!(samples(&text, "mintcache_backend_errors_total").is_empty());

    let c = Calls::new(server.client().await);
    let value_bytes = [b'x'; 100];
    for n in 0..100 {
        c.set(format!("key-{n}").as_bytes(), &value_bytes).await;
    }
    // The store counts its writes in batches: the gauges catch up.
    wait_for_or(
        "the store's gauges to count 100 entries",
        || async {
            sample(
                &server.admin_get("/metrics").await.1,
                "mintcache_embedded_entries",
            ) == 100.0
        },
        || async { server.admin_get("/metrics").await.1 },
    )
    .await;
    let text = server.admin_get("/metrics").await.1;
    let size = value(&text, "mintcache_embedded_size_bytes");
    assert!(
        size > 100.0 * value_bytes.len() as f64 && size < budget as f64,
        "each entry weighs more than its value, and 100 fit: {size}"
    );
}

/// An OTLP collector for traces and metrics that counts what it receives.
#[derive(Clone, Default)]
struct Collector {
    metric_exports: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metric_exports.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The log lines that contain `needle`.
fn lines_with<'a>(logs: &'a str, needle: &str) -> Vec<&'a str> {
    logs.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_is_said_once_and_its_return_once() {
    let port = closed_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_TELEMETRY__OTLP_ENDPOINT", endpoint.clone()),
        ("MINTCACHE_TELEMETRY__EXPORT_INTERVAL_SECONDS", "1".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]);
    let c = Calls::new(server.client().await);
    c.set(b"k", b"v").await;
    let failures = |text: &str, signal: &str| {
        sample(
            text,
            &format!("mintcache_otlp_export_failures_total{{signal=\"{signal}\"}}"),
        )
    };
    // Five failed metric exports (five export intervals) and a failed span export: each has
    // been a line at every export until now.
    wait_for_or(
        "five failed metric exports and a failed span export",
        || async {
            let text = server.admin_get("/metrics").await.1;
            failures(&text, "metrics") >= 5.0 && failures(&text, "spans") >= 1.0
        },
        || async { server.admin_get("/metrics").await.1 },
    )
    .await;
    let logs = server.logs();
    assert_eq!(
        lines_with(&logs, "OTLP export on").len(),
        1,
        "one startup line says where telemetry goes:\n{logs}"
    );
    assert!(lines_with(&logs, "OTLP export on")[0].contains(&endpoint));
    let failing = lines_with(&logs, "OTLP export failing");
    assert_eq!(failing.len(), 1, "one line for the outage:\n{logs}");
    assert!(failing[0].contains(&endpoint), "{}", failing[0]);
    assert!(
        lines_with(&logs, "ExportError").is_empty() && lines_with(&logs, "ERROR").is_empty(),
        "no line per failed export:\n{logs}"
    );

    // The collector comes up where it was expected.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the collector's port is free");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    wait_for_or(
        "the return to be said",
        || async {
            // Calls keep spans coming, so that span exports are tried again too.
            c.set(b"k", b"v2").await;
            !lines_with(&server.logs(), "OTLP export works again").is_empty()
        },
        || async { server.logs() },
    )
    .await;
    wait_for_or(
        "metrics to reach the collector",
        || async { collector.metric_exports.load(Ordering::SeqCst) >= 1 },
        || async { server.logs() },
    )
    .await;
    server.sigterm();
    let (status, logs) = server.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_eq!(lines_with(&logs, "OTLP export failing").len(), 1, "{logs}");
    assert_eq!(
        lines_with(&logs, "OTLP export works again").len(),
        1,
        "{logs}"
    );
}

#[tokio::test]
async fn a_failing_call_makes_one_short_line_in_text_and_in_json() {
    for format in ["text", "json"] {
        // A memcached server that is down.
        let down = format!("127.0.0.1:{}", closed_port());
        let mut server = ServerProcess::start(&[
            ("MINTCACHE_MEMCACHED__SERVERS", down.clone()),
            ("MINTCACHE_LOG__FORMAT", format.into()),
        ]);
        let c = Calls::new(server.client().await);
        let e = c
            .try_set(b"secret-key", b"secret-value", 0)
            .await
            .expect_err("memcached is down");
        assert_eq!(e.code(), tonic::Code::Unavailable);
        server.sigterm();
        let (_, logs) = server.wait_exit().await;
        let lines = lines_with(&logs, "backend unavailable");
        assert_eq!(lines.len(), 1, "{format}: one line for the call:\n{logs}");
        let line = lines[0];
        eprintln!("{format}: {line}");
        // To the point: the level, what failed, the server and why; no span fields (the
        // call's RPC, namespace and version are in its trace), no key, no value.
        assert!(
            line.len() < 300,
            "{format}: {} characters: {line}",
            line.len()
        );
        assert!(
            line.contains("WARN") && line.contains(&down),
            "{format}: {line}"
        );
        assert!(line.contains("refused"), "{format}: the cause: {line}");
        for noise in ["otel.", "rpc.system", "grpc.request", "\"spans\"", "secret"] {
            assert!(!line.contains(noise), "{format}: {noise:?} in {line}");
        }
        if format == "json" {
            let parsed: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(parsed["level"], "WARN");
            assert_eq!(parsed["fields"]["message"], "backend unavailable");
        }
    }
}
