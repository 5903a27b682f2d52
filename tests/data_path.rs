//! The memcached data path under faults, end to end: a host that goes silent while its name
//! moves elsewhere, batches whose answers are larger than a message or name one large value
//! thousands of times, handshakes that fail, a server that keeps no instance marker, a hung
//! server next to a healthy one, a huge batch next to small calls. Real memcached processes
//! (stopped with SIGSTOP to go silent), real servers, real gRPC clients.

mod harness;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::calls::{Calls, assert_hit};
use harness::{
    Memcached, ServerProcess, TestServer, closed_port, config, key_on, sample, wait_for,
};
use mintcache::resolve::Resolver;
use mintcache_client::proto::{GetManyRequest, KeyError, Outcome, SetRequest};
use tonic::Code;

/// `mintcache_backend_ejections_total` of one memcached server.
fn ejections(metrics: &str, node: &str) -> f64 {
    sample(
        metrics,
        &format!("mintcache_backend_ejections_total{{node=\"{node}\"}}"),
    )
}

/// The gRPC code a batched key failed with.
fn key_code(error: &KeyError) -> Code {
    Code::from_i32(error.code)
}

/// A memcached on 127.0.0.2 is replaced by one on 127.0.0.3 under the same name, the old one
/// silent (SIGSTOP: its connections get no RST, new connections are accepted and never
/// answered), as when Kubernetes reschedules a memcached pod. Writes come back once the name
/// points elsewhere: calls on the silent connections time out, those connections are closed,
/// and new ones resolve the name again.
#[tokio::test]
async fn writes_come_back_after_a_silent_host_is_replaced_under_its_name() {
    let port = closed_port();
    let old = Memcached::start_at("127.0.0.2", port);
    let name = format!("cache-0.memcached.test:{port}");
    let resolver = Resolver::table();
    resolver.point(&name, &[SocketAddr::from(([127, 0, 0, 2], port))]);
    let mut cfg = config(&[]);
    cfg.memcached.servers = vec![name.parse().expect("server spec")];
    cfg.memcached.timeout_ms = 300;
    let server = TestServer::start_with(
        cfg,
        mintcache::Hooks {
            resolver: resolver.clone(),
            ..mintcache::Hooks::default()
        },
    )
    .await;
    let c = Calls::new(server.client().await);
    c.set(b"before", b"1").await;
    assert_hit(&c.get(b"before").await, b"1");

    old.signal("STOP");
    let new = Memcached::start_at("127.0.0.3", port);
    resolver.point(&name, &[SocketAddr::from(([127, 0, 0, 3], port))]);
    let moved = Instant::now();
    let mut failed = 0;
    let back = loop {
        let set = SetRequest {
            key: b"after".to_vec(),
            value: b"2".to_vec(),
            ..Default::default()
        };
        let mut request = tonic::Request::new(set);
        request.set_timeout(Duration::from_secs(1));
        match server.client().await.set(request).await {
            Ok(r) if r.get_ref().stored => break moved.elapsed(),
            _ => failed += 1,
        }
        assert!(
            moved.elapsed() < Duration::from_secs(20),
            "writes never came back ({failed} failed)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("writes back {back:?} after the name moved ({failed} failed before)");
    // The value went to the new server, and reads follow it.
    assert!(new.curr_items() >= 1);
    assert_hit(&c.get(b"after").await, b"2");
    old.signal("CONT");
}

/// One `GetMany` naming one 100 KB value 5,000 times (a request of a few KB): every copy that
/// fits in one answer is a hit, the rest fail alone with `RESOURCE_EXHAUSTED` (never a miss:
/// the key is there), and the server holds little for it, even with several such calls at
/// once.
#[tokio::test]
async fn a_batch_naming_one_large_value_thousands_of_times_holds_little() {
    let mc = Memcached::start();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let c = Calls::new(server.client().await);
    let value = vec![b'v'; 100_000];
    c.set(b"big", &value).await;
    let rss_before = server.rss_bytes();
    let keys = vec![b"big".to_vec(); 5000];
    let calls = (0..8).map(|_| {
        let client = c.client.clone();
        let keys = keys.clone();
        async move {
            let request = GetManyRequest {
                keys,
                ..Default::default()
            };
            client
                .clone()
                .get_many(request)
                .await
                .map(|r| r.into_inner().results)
        }
    });
    for results in futures_util::future::join_all(calls).await {
        let results = results.expect("an answer, not a transport error");
        assert_eq!(results.len(), 5000);
        let hits = results
            .iter()
            .filter(|r| r.error.is_none() && r.outcome == Outcome::Hit as i32)
            .count();
        assert!(
            (30..=41).contains(&hits),
            "{hits} copies fit in a 4 MiB answer"
        );
        for r in &results[..hits] {
            assert_eq!(r.value.len(), value.len());
        }
        for r in &results[hits..] {
            let error = r.error.as_ref().expect("the rest fail alone");
            assert_eq!(key_code(error), Code::ResourceExhausted, "{error:?}");
            assert!(error.message.contains("max_message_bytes"), "{error:?}");
        }
    }
    let grown = server.rss_bytes().saturating_sub(rss_before);
    eprintln!("resident memory grew {} KiB", grown / 1024);
    assert!(
        grown < 96 * 1024 * 1024,
        "8 calls at once grew the server by {} MiB",
        grown / (1024 * 1024)
    );
    // The value was read from memcached once per call, not once per copy.
    let gets: u64 = mc.stats()["get_hits"].parse().expect("get_hits");
    assert!(gets < 100, "{gets} reads of the value");
}

/// A `GetMany` of 100 values of 100 KB (10 MB, over the 4 MiB message limit): every value that
/// fits is answered, the others get a per-key `RESOURCE_EXHAUSTED` saying why; never a
/// transport error, never a miss.
#[tokio::test]
async fn a_batch_whose_answer_is_over_the_message_limit_answers_what_fits() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await);
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
    for key in &keys {
        c.set(key, &vec![b'x'; 100_000]).await;
    }
    let (results, degraded) = c.get_many(&keys).await;
    assert!(!degraded);
    let answered: Vec<bool> = results.iter().map(|r| r.error.is_none()).collect();
    let hits = answered.iter().filter(|a| **a).count();
    assert!((35..=41).contains(&hits), "{hits} values answered");
    for r in &results {
        match &r.error {
            None => {
                assert_eq!(r.outcome, Outcome::Hit as i32);
                assert_eq!(r.value.len(), 100_000);
            }
            Some(error) => {
                assert_eq!(key_code(error), Code::ResourceExhausted, "{error:?}");
                assert!(error.message.contains("smaller batch"), "{error:?}");
            }
        }
    }
    // Each key alone is a hit.
    for key in &keys {
        assert_eq!(c.get(key).await.outcome, Outcome::Hit as i32);
    }
}

/// memcached out of memory with `-M` refuses the instance marker: every connection of the
/// server must still agree on which memcached process it talks to (its pid and start time),
/// or a lease handed out through one connection is refused through the other.
#[tokio::test]
async fn leases_hold_across_connections_when_memcached_keeps_no_instance_marker() {
    let mc = Memcached::start_with(&["-M", "-m", "2"]);
    // Fill every slab class so that memcached cannot take the marker.
    for size in [50_000usize, 5_000, 500, 50, 1] {
        let value = "x".repeat(size);
        for n in 0.. {
            let reply = mc.raw(
                &format!("ms fill{size}-{n} {size} T0\r\n{value}\r\n"),
                "\r\n",
            );
            if !reply.starts_with("HD") {
                assert!(reply.contains("out of memory"), "{reply}");
                break;
            }
        }
    }
    let refused = mc.raw("ma mintcache@instance N0 J5 D0 v\r\n", "\r\n");
    assert!(refused.starts_with("SERVER_ERROR"), "{refused}");
    let mut cfg = config(&[&mc]);
    cfg.memcached.pool_size = 2;
    cfg.memcached.failure_limit = 0;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    // Both connections are made now, while the marker cannot be kept.
    for _ in 0..4 {
        let _ = c.try_get(b"warm").await;
    }
    mc.raw("flush_all\r\n", "\r\n");
    let mut stored = 0;
    for round in 0..6 {
        let key = format!("k{round}").into_bytes();
        assert!(c.try_set(&key, b"old", 60).await.expect("set"));
        assert!(c.invalidate(&key).await);
        let refresh = c.get(&key).await;
        assert_eq!(refresh.outcome, Outcome::Refresh as i32, "round {round}");
        let set = SetRequest {
            key: key.clone(),
            value: b"new".to_vec(),
            ttl_seconds: 60,
            lease_token: refresh.lease_token.clone(),
            ..Default::default()
        };
        if c.try_set_with(set).await.expect("set with lease") {
            stored += 1;
        }
        assert_hit(&c.get(&key).await, b"new");
    }
    assert_eq!(stored, 6, "every lease stored");
}

/// A stand-in for a memcached that froze: it accepts connections and never answers, and counts
/// the connections still open from the other side.
struct Frozen {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl Frozen {
    fn start() -> Self {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        {
            let (open, accepted) = (open.clone(), accepted.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let open = open.clone();
                    std::thread::spawn(move || {
                        let mut sink = [0u8; 1024];
                        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
        }
        Self {
            addr,
            open,
            accepted,
        }
    }
}

/// Against a memcached that froze, the health prober connects again every second and each
/// handshake times out: every one of those connections is closed, none is left open.
#[tokio::test]
async fn handshakes_that_fail_leave_no_connection_open() {
    let frozen = Frozen::start();
    let mut cfg = config(&[]);
    cfg.memcached.servers = vec![frozen.addr.to_string().parse().expect("spec")];
    cfg.memcached.connect_timeout_ms = 200;
    cfg.memcached.timeout_ms = 200;
    let server = TestServer::start(cfg).await;
    wait_for("several handshakes", || async {
        frozen.accepted.load(Ordering::SeqCst) >= 6
    })
    .await;
    // Every handshake but the one under way (and the startup check's) has been closed.
    let open = frozen.open.load(Ordering::SeqCst);
    let accepted = frozen.accepted.load(Ordering::SeqCst);
    assert!(open <= 3, "{open} of {accepted} connections still open");
    server.stop().await;
}

/// Two memcached servers, one hung (SIGSTOP), `memcached.timeout_ms = 3000`: calls whose keys
/// live on the healthy one never wait for the hung one, not even for a key space's generation
/// (whose copies live on both).
#[tokio::test]
async fn a_hung_server_does_not_stall_calls_on_a_healthy_one() {
    let healthy = Memcached::start();
    let hung = Memcached::start();
    let mut cfg = config(&[&healthy, &hung]);
    cfg.memcached.timeout_ms = 3000;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let addrs = [healthy.addr(), hung.addr()];
    let key = key_on(&addrs, 0, 0);
    c.set(&key, b"v").await;
    hung.signal("STOP");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let at = Instant::now();
        assert_hit(&c.get(&key).await, b"v");
        slowest = slowest.max(at.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hung.signal("CONT");
    eprintln!("{calls} calls, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_millis(1500),
        "a call on the healthy server waited {slowest:?} for the hung one"
    );
}

/// A huge batch on one connection does not hold up the small calls behind it (they take the
/// other connection), and calls that time out behind a connection busy reading do not count
/// against the server.
#[tokio::test]
async fn a_huge_batch_does_not_eject_its_server_or_hold_up_small_calls() {
    let mc = Memcached::start_with(&["-I", "2m"]);
    let mut cfg = config(&[&mc]);
    cfg.memcached.timeout_ms = 1000;
    cfg.memcached.failure_limit = 2;
    cfg.limits.max_value_bytes = 1_500_000;
    cfg.server.max_message_bytes = 64 * 1024 * 1024;
    cfg.server.max_buffered_request_bytes = 64 * 1024 * 1024;
    cfg.server.max_buffered_reply_bytes = 256 * 1024 * 1024;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let keys: Vec<Vec<u8>> = (0..30).map(|i| format!("huge{i}").into_bytes()).collect();
    for key in &keys {
        c.set(key, &vec![b'h'; 1_400_000]).await;
    }
    c.set(b"small", b"s").await;
    let mut big = Vec::new();
    for _ in 0..3 {
        let client = c.client.clone().max_decoding_message_size(usize::MAX);
        let keys = keys.clone();
        big.push(tokio::spawn(async move {
            let request = GetManyRequest {
                keys,
                ..Default::default()
            };
            client
                .clone()
                .get_many(request)
                .await
                .map(|r| r.into_inner())
        }));
    }
    for _ in 0..40 {
        assert_hit(&c.get(b"small").await, b"s");
    }
    for task in big {
        let answer = task.await.expect("task").expect("answered");
        assert_eq!(answer.results.len(), 30);
    }
    let (_, metrics) = server.admin_get("/metrics").await;
    assert_eq!(ejections(&metrics, &mc.addr()), 0.0, "{metrics}");
}

/// A cold-miss lease won for a caller that gave up (its deadline ran out while memcached was
/// slow) is given back as its reply arrives: the next caller wins the fill at once instead of
/// being told `PENDING` until `cache.fill_timeout_seconds` runs out.
#[tokio::test]
async fn a_cold_fill_won_for_a_caller_that_left_is_given_back() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.memcached.pool_size = 1;
    cfg.cache.lease_on_miss = true;
    cfg.cache.fill_timeout_seconds = 60;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    // The key space's generation is known before memcached stops.
    assert_eq!(c.get(b"warm").await.outcome, Outcome::Miss as i32);
    mc.signal("STOP");
    let mut request = tonic::Request::new(mintcache_client::proto::GetRequest {
        key: b"cold".to_vec(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(200));
    let gave_up = server.client().await.get(request).await;
    assert_eq!(
        gave_up.expect_err("deadline").code(),
        Code::DeadlineExceeded
    );
    mc.signal("CONT");
    // memcached now creates the placeholder and elects the caller that left. The next read on
    // the connection finds the fill taken (its command left before the lease was given back),
    let second = c.get(b"cold").await;
    assert_eq!(second.outcome, Outcome::Pending as i32);
    // and the one after wins it.
    let third = c.get(b"cold").await;
    assert_eq!(third.outcome, Outcome::Miss as i32);
    assert!(!third.lease_token.is_empty(), "the fill's lease");
}
