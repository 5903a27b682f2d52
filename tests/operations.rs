//! Operations end to end: metrics on the admin port, trace export to an OTLP collector with the
//! caller's trace id, health that follows memcached, graceful shutdown on SIGTERM, load
//! shedding, deadlines, and log lines. Slow calls are held by a hung memcached stand-in and end
//! when the test releases it; every wait is on state the server shows (metrics, health).

mod harness;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::calls::{Calls, assert_hit};
use harness::{
    HungNode, Memcached, ServerProcess, TestServer, config, http_get, sample, wait_for, wait_for_or,
};
use mintcache::config::Config;
use mintcache_client::proto::{GetRequest, Outcome};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A memcached timeout no test waits for: slow calls end when the test releases them.
const NEVER_MS: u64 = 120_000;

async fn health(addr: SocketAddr, service: &str) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// A key of the default key space that the server puts on server `index` of `addrs`.
fn key_on(addrs: &[String], index: usize) -> Vec<u8> {
    let servers: Vec<_> = addrs.iter().map(|a| a.parse().expect("spec")).collect();
    (0..)
        .map(|i| format!("key-{i}").into_bytes())
        .find(|k| mintcache::testing::memcached_server_for(&servers, "", "1", k) == Some(index))
        .expect("some key lands on every server")
}

/// The server's metrics, as Prometheus text.
async fn metrics(admin: SocketAddr) -> String {
    http_get(admin, "/metrics").await.1
}

/// Waits until `n` Cache calls are in flight on the server with this admin port.
async fn wait_in_flight(admin: SocketAddr, n: f64) {
    wait_for_or(
        &format!("{n} calls in flight"),
        || async move { sample(&metrics(admin).await, "mintcache_rpc_in_flight") == n },
        || metrics(admin),
    )
    .await;
}

#[tokio::test]
async fn metrics_follow_the_calls() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    // The key space's generation is read once, and trusted for the whole test.
    cfg.cache.flush_sync_ms = 60_000;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let (status, before) = server.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let hit = "mintcache_rpc_requests_total{code=\"OK\",outcome=\"hit\",rpc=\"Get\"}";
    let miss = "mintcache_rpc_requests_total{code=\"OK\",outcome=\"miss\",rpc=\"Get\"}";
    let bad =
        "mintcache_rpc_requests_total{code=\"INVALID_ARGUMENT\",outcome=\"none\",rpc=\"Get\"}";
    let sets = "mintcache_rpc_requests_total{code=\"OK\",outcome=\"none\",rpc=\"Set\"}";
    let node = format!("node=\"{}\"", mc.addr());
    let backend_count = format!("mintcache_backend_duration_seconds_count{{{node}}}");
    assert_eq!(sample(&before, hit), 0.0);

    c.set(b"k", b"v").await;
    for _ in 0..3 {
        assert_hit(&c.get(b"k").await, b"v");
    }
    assert_eq!(c.get(b"absent").await.outcome(), Outcome::Miss);
    assert!(c.try_get(b"").await.is_err());

    let (_, after) = server.admin_get("/metrics").await;
    assert_eq!(sample(&after, hit), 3.0, "{after}");
    assert_eq!(sample(&after, miss), 1.0);
    assert_eq!(sample(&after, bad), 1.0);
    assert_eq!(sample(&after, sets), 1.0);
    assert_eq!(
        sample(
            &after,
            "mintcache_mint_outcomes_total{outcome=\"hit\",read=\"elect\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(&after, &backend_count),
        sample(&before, &backend_count) + 6.0,
        "5 memcached operations, and one read of the key space's generation"
    );
    assert!(
        sample(
            &after,
            "mintcache_rpc_duration_seconds_count{code=\"OK\",rpc=\"Get\"}"
        ) >= 4.0
    );
    assert_eq!(sample(&after, "mintcache_rpc_in_flight"), 0.0);
    assert!(
        after.contains(&format!(
            "mintcache_pool_connections{{{node},state=\"idle\"}}"
        )),
        "{after}"
    );
    // Values read back are held only until their answers are encoded.
    assert!(
        after.contains("\nmintcache_reply_buffered_bytes "),
        "{after}"
    );
    assert_eq!(sample(&after, "mintcache_reply_buffered_bytes "), 0.0);
    // Labels never carry keys or values.
    assert!(!after.contains("absent"));
    let (status, body) = server.admin_get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(server.admin_get("/readyz").await.0, 200);
}

#[tokio::test]
async fn health_follows_memcached() {
    let mut nodes = [Memcached::start(), Memcached::start()];
    let port = nodes[1].port;
    let server = TestServer::start(config(&[&nodes[0], &nodes[1]])).await;
    let addr = server.addr;
    assert_eq!(health(addr, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        health(addr, "mintcache.v1.Cache").await,
        ServingStatus::Serving as i32
    );

    nodes[0].stop();
    // The prober has found the first server down (three probes in a row eject it)...
    let ejected = format!(
        "mintcache_backend_ejections_total{{node=\"{}\"}}",
        nodes[0].addr()
    );
    wait_for_or(
        "the prober to eject the stopped server",
        || async { sample(&server.admin_get("/metrics").await.1, &ejected) >= 1.0 },
        || async { server.admin_get("/metrics").await.1 },
    )
    .await;
    // ... and still serves.
    assert_eq!(
        health(addr, "").await,
        ServingStatus::Serving as i32,
        "one server is enough"
    );

    nodes[1].stop();
    wait_for("NOT_SERVING", || async {
        health(addr, "mintcache.v1.Cache").await == ServingStatus::NotServing as i32
    })
    .await;
    assert_eq!(server.admin_get("/readyz").await.0, 503);
    assert_eq!(
        server.admin_get("/healthz").await.0,
        200,
        "alive, just not ready"
    );

    let _back = Memcached::start_on(port);
    wait_for("SERVING again", || async {
        health(addr, "").await == ServingStatus::Serving as i32
    })
    .await;
    assert_eq!(server.admin_get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_at_once_and_the_server_stays_healthy() {
    let mc = Memcached::start();
    let hung = HungNode::start();
    let addrs = vec![mc.addr(), hung.addr()];
    let mut cfg = Config::default();
    cfg.memcached.servers = addrs.iter().map(|a| a.parse().expect("spec")).collect();
    cfg.memcached.timeout_ms = NEVER_MS;
    cfg.memcached.failure_limit = 0;
    cfg.server.max_concurrent_calls = 4;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let slow_key = key_on(&addrs, 1);
    let fast_key = key_on(&addrs, 0);
    c.set(&fast_key, b"v").await;

    let slow: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            let k = slow_key.clone();
            tokio::spawn(async move { c.try_get_full(&k).await })
        })
        .collect();
    wait_in_flight(server.admin, 4.0).await;
    for _ in 0..20 {
        let e = c.try_get(&fast_key).await.expect_err("shed");
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert!(e.message().contains("max_concurrent_calls"));
    }
    assert!(
        slow.iter().all(|h| !h.is_finished()),
        "the shed calls did not wait for the slow ones"
    );
    // Probes are never shed.
    assert_eq!(health(server.addr, "").await, ServingStatus::Serving as i32);
    let (_, metrics) = server.admin_get("/metrics").await;
    assert_eq!(sample(&metrics, "mintcache_rpc_shed_total"), 20.0);
    // The hung server lets go: the slow reads fail open.
    hung.release();
    for h in slow {
        let (r, degraded) = h.await.expect("task").expect("slow reads fail open");
        assert!(degraded && r.outcome() == Outcome::Miss);
    }
    assert_hit(&c.get(&fast_key).await, b"v");
}

/// A client that sends `grpc-timeout` and leaves the deadline to the server: tonic's own
/// channel would run the timer too and cancel the call itself, sometimes first, and then the
/// server never gets to answer. A plain HTTP/2 connection does not.
fn client_without_deadline_timer(
    addr: SocketAddr,
) -> mintcache_client::proto::cache_client::CacheClient<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
> {
    let http2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let origin: http::Uri = format!("http://{addr}").parse().expect("uri");
    mintcache_client::proto::cache_client::CacheClient::with_origin(http2, origin)
}

#[tokio::test]
async fn deadlines_reach_the_memcached_call() {
    let mc = Memcached::start();
    let hung = HungNode::start();
    let addrs = vec![mc.addr(), hung.addr()];
    let mut cfg = Config::default();
    cfg.memcached.servers = addrs.iter().map(|a| a.parse().expect("spec")).collect();
    cfg.memcached.timeout_ms = NEVER_MS;
    let server = TestServer::start(cfg).await;
    let mut client = client_without_deadline_timer(server.addr);
    let mut request = tonic::Request::new(GetRequest {
        peek: false,
        key: key_on(&addrs, 1),
        lease_on_miss: None,
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(300));
    let e = client.get(request).await.expect_err("deadline");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    // The server gave up on its own, with the hung memcached call still pending (its
    // timeout is minutes away): the call is no longer in flight, and was answered
    // DEADLINE_EXCEEDED.
    wait_for_or(
        "the call to end on the server",
        || async {
            let m = server.admin_get("/metrics").await.1;
            sample(&m, "mintcache_rpc_in_flight") == 0.0
                && sample(&m, "mintcache_rpc_requests_total{code=\"DEADLINE_EXCEEDED\",outcome=\"none\",rpc=\"Get\"}") == 1.0
        },
        || async { server.admin_get("/metrics").await.1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_slow_call_finish_then_exits_0() {
    let mc = Memcached::start();
    let hung = HungNode::start();
    let addrs = vec![mc.addr(), hung.addr()];
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_MEMCACHED__SERVERS", addrs.join(",")),
        ("MINTCACHE_MEMCACHED__TIMEOUT_MS", NEVER_MS.to_string()),
        ("MINTCACHE_MEMCACHED__FAILURE_LIMIT", "0".into()),
    ]);
    let (addr, admin) = (server.addr, server.admin);
    let c = Calls::new(server.client().await);
    let slow_key = key_on(&addrs, 1);
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { c.try_get_full(&slow_key).await })
    };
    wait_in_flight(admin, 1.0).await;
    server.sigterm();
    wait_for("not ready while draining", || async {
        http_get(admin, "/readyz").await.0 == 503
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow call is still in flight during the drain"
    );
    // The hung server lets go: the call in flight finishes, then the server exits.
    hung.release();
    let (r, degraded) = slow
        .await
        .expect("task")
        .expect("the in-flight call finished normally");
    assert!(degraded && r.outcome() == Outcome::Miss);
    let (status, logs) = server.wait_exit().await;
    assert_eq!(status.code(), Some(0), "logs:\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn default_logs_have_no_line_per_call_and_one_per_error() {
    let mut mc = Memcached::start();
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_MEMCACHED__SERVERS", mc.addr()),
        ("MINTCACHE_MEMCACHED__TIMEOUT_MS", "500".into()),
        ("MINTCACHE_LOG__FORMAT", "json".into()),
    ]);
    let c = Calls::new(server.client().await);
    for i in 0..50 {
        c.set(format!("k{i}").as_bytes(), b"v").await;
        assert_hit(&c.get(format!("k{i}").as_bytes()).await, b"v");
    }
    mc.stop();
    assert!(c.try_set(b"k", b"v", 0).await.is_err());
    server.sigterm();
    let (status, logs) = server.wait_exit().await;
    assert_eq!(status.code(), Some(0));
    let lines: Vec<&str> = logs.lines().collect();
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("backend unavailable"))
        .collect();
    assert_eq!(errors.len(), 1, "one line for the failed call:\n{logs}");
    assert!(
        errors[0].contains(&mc.addr()),
        "the line names the node: {}",
        errors[0]
    );
    assert!(lines.len() < 12, "no line per successful call:\n{logs}");
}

/// An OTLP trace collector: keeps every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_an_otlp_collector_with_the_callers_trace_id() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mc = Memcached::start();
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_MEMCACHED__SERVERS", mc.addr()),
        (
            "MINTCACHE_TELEMETRY__OTLP_ENDPOINT",
            format!("http://{otlp}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]);
    let mut client = server.client().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(GetRequest {
        peek: false,
        key: b"traced-key".to_vec(),
        lease_on_miss: None,
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01")
            .parse()
            .expect("ascii"),
    );
    request
        .metadata_mut()
        .insert("x-cache-version", "v7".parse().expect("ascii"));
    assert_eq!(
        client
            .get(request)
            .await
            .expect("get")
            .into_inner()
            .outcome(),
        Outcome::Miss
    );
    server.sigterm();
    let (status, logs) = server.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{logs}");

    let spans = collector.spans.lock().expect("lock").clone();
    let rpc = spans
        .iter()
        .find(|s| s.name == "mintcache.v1.Cache/Get")
        .unwrap_or_else(|| {
            panic!(
                "no RPC span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        hex::encode(&rpc.trace_id),
        trace_id,
        "the caller's trace continues"
    );
    assert_eq!(
        hex::encode(&rpc.parent_span_id),
        parent_id,
        "child of the caller's span"
    );
    let attrs: Vec<String> = rpc
        .attributes
        .iter()
        .map(|a| format!("{}={:?}", a.key, a.value))
        .collect();
    let attrs = attrs.join(" ");
    for expected in [
        "rpc.method",
        "mintcache.outcome",
        "mintcache.version",
        "rpc.grpc.status_code",
    ] {
        assert!(attrs.contains(expected), "{expected} missing in {attrs}");
    }
    assert!(attrs.contains("v7") && attrs.contains("miss"), "{attrs}");
    assert!(
        !attrs.contains("traced-key"),
        "the key never reaches a span"
    );
    let backend = spans
        .iter()
        .find(|s| s.name == "memcached")
        .expect("a memcached span");
    assert_eq!(
        backend.trace_id, rpc.trace_id,
        "the only memcached spans are those of calls"
    );
    assert_eq!(
        backend.parent_span_id, rpc.span_id,
        "backend calls are children of the RPC span"
    );
}

#[tokio::test]
async fn messages_over_the_configured_size_are_refused() {
    let mut cfg = config(&[]);
    cfg.limits.max_value_bytes = 1000;
    cfg.limits.max_key_bytes = 100;
    // The smallest size these limits allow: 1000 + 100 + 1024.
    cfg.server.max_message_bytes = 2124;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    // Within the message size, over the value limit: the value limit answers.
    let e = c
        .try_set(b"k", &[0u8; 1500], 0)
        .await
        .expect_err("value too large");
    assert_eq!(e.code(), Code::InvalidArgument);
    // Over the message size: refused before decoding.
    let e = c
        .try_set(b"k", &[0u8; 4096], 0)
        .await
        .expect_err("message too large");
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    assert!(e.message().contains("too large"), "{e:?}");
    c.set(b"k", &[1u8; 1000]).await;
}
