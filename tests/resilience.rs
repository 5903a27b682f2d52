//! Failures and hostile conditions end to end: memcached restarts, per-item refusals, leases
//! across restarts, servers that are not memcached or are down at startup, long outages. Real
//! memcached processes, killed and restarted on their ports; the server's logs are read from
//! the real binary where they matter.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::calls::{Calls, assert_hit, assert_miss};
use harness::{
    Memcached, NotMemcached, ServerProcess, TestServer, closed_port, config, health, key_on,
    sample, wait_for, wait_for_or,
};
use mintcache_client::proto::{Outcome, SetRequest};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const PATIENCE: Duration = Duration::from_secs(10);

/// `mintcache_backend_ejections_total` of one memcached server.
fn ejections(metrics: &str, node: &str) -> f64 {
    sample(
        metrics,
        &format!("mintcache_backend_ejections_total{{node=\"{node}\"}}"),
    )
}

/// The log lines at WARN or ERROR.
fn warnings(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// The CAS value a lease token carries: bytes 9 to 17, after its format byte and the store
/// instance (formats 3 and 4; format 4 then says when it was issued).
fn lease_cas(token: &[u8]) -> u64 {
    let cas: [u8; 8] = token[9..17].try_into().expect("8 bytes");
    u64::from_be_bytes(cas)
}

/// The CAS value memcached holds for an item (`mg <key> c`).
fn item_cas(mc: &Memcached, stored_key: &str) -> Option<u64> {
    let reply = mc.raw(&format!("mg {stored_key} c\r\n"), "\r\n");
    reply
        .split_whitespace()
        .find_map(|t| t.strip_prefix('c'))
        .and_then(|c| c.parse().ok())
}

/// A lease handed out before memcached restarted never stores, even once the restarted
/// memcached has counted its CAS values up to the lease's again.
#[tokio::test]
async fn a_lease_never_outlives_a_memcached_restart() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let mut cfg = config(&[&mc]);
    cfg.memcached.failure_limit = 0;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let set = |value: &[u8], lease: Vec<u8>, ttl: i64| SetRequest {
        key: b"k".to_vec(),
        value: value.to_vec(),
        ttl_seconds: ttl,
        grace_seconds: 60,
        lease_token: lease,
        ..Default::default()
    };
    // Let memcached's CAS counter run ahead first, so that the restarted process (whose
    // counter starts again at 1, and which mintcache's own first commands move on a little)
    // can be brought exactly to the lease's value.
    for i in 0..30 {
        c.set(format!("warm-up-{i}").as_bytes(), b"v").await;
    }
    assert!(c.try_set_with(set(b"old", vec![], 1)).await.expect("set"));
    let deadline = Instant::now() + PATIENCE;
    let refresh = loop {
        let r = c.get(b"k").await;
        if r.outcome() == Outcome::Refresh {
            break r;
        }
        assert!(Instant::now() < deadline, "never stale: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lease = refresh.lease_token.clone();
    let target = lease_cas(&lease);

    mc.stop();
    let mc = Memcached::start_on(port);
    // Writes work again once memcached is back; acknowledged writes until the new process's
    // item carries the very CAS value of the old lease.
    let deadline = Instant::now() + PATIENCE;
    let mut last = Vec::new();
    for n in 0.. {
        let value = format!("new-{n}").into_bytes();
        match c.try_set_with(set(&value, vec![], 60)).await {
            Ok(true) => last = value,
            Ok(false) => panic!("a plain set is always stored"),
            Err(e) => {
                assert!(Instant::now() < deadline, "writes never came back: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let cas = item_cas(&mc, ":1:k").expect("the item is in memcached");
        assert!(cas <= target, "went past the lease's CAS value");
        if cas == target {
            break;
        }
        assert!(n < 10_000, "CAS values never reached the lease's");
    }
    // The stale lease names the memcached process that is gone: refused.
    assert!(
        !c.try_set_with(set(b"pre-restart", lease, 60))
            .await
            .expect("set answers"),
        "a lease from before the restart stored over a newer value"
    );
    let r = c.get(b"k").await;
    assert_hit(&r, &last);
}

/// A `kill -9` of the only memcached, restarted on its port at once, while a client keeps
/// writing: writes work again as soon as memcached is back, and the restart costs at most one
/// ejection. Prints how long writes failed after memcached was back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_come_back_at_once_after_memcached_restarts() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let node = mc.addr();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await);
    for i in 0..20 {
        c.set(format!("before-{i}").as_bytes(), b"v").await;
    }

    // Traffic through the restart: one write after another, each recorded with its time.
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
    let writer = {
        let (c, stop, results) = (c.clone(), stop.clone(), results.clone());
        tokio::spawn(async move {
            for i in 0..200_000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let ok = c
                    .try_set(format!("w-{}", i % 100).as_bytes(), b"v", 0)
                    .await
                    .is_ok();
                results.lock().expect("lock").push((Instant::now(), ok));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    wait_for("writes before the restart", || {
        let results = results.clone();
        async move { results.lock().expect("lock").len() >= 20 }
    })
    .await;

    let killed = Instant::now();
    mc.stop();
    let mc = tokio::task::spawn_blocking(move || Memcached::start_on(port))
        .await
        .expect("restart memcached");
    let back = Instant::now();
    // Liveness, not timing: a write succeeds again within a generous bound.
    let deadline = back + PATIENCE;
    let first_ok = loop {
        let ok = results
            .lock()
            .expect("lock")
            .iter()
            .find(|&&(at, ok)| ok && at > back)
            .map(|&(at, _)| at);
        if let Some(at) = ok {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not come back within {PATIENCE:?} of memcached's restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    let results = results.lock().expect("lock").clone();
    let failed_while_down = results
        .iter()
        .filter(|&&(at, ok)| !ok && at > killed && at <= back)
        .count();
    let failed_after_back = results.iter().filter(|&&(at, ok)| !ok && at > back).count();
    eprintln!(
        "memcached down for {:?}; {failed_while_down} writes failed meanwhile; writes failed for \
         {:?} after it was back ({failed_after_back} writes)",
        back - killed,
        first_ok - back
    );

    let metrics = server.admin_get("/metrics").await.1;
    assert!(
        ejections(&metrics, &node) <= 1.0,
        "one restart, at most one ejection:\n{metrics}"
    );
    // Everything works as before.
    c.set(b"after", b"v2").await;
    assert_hit(&c.get(b"after").await, b"v2");
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    drop(mc);
}

/// memcached with `-I 512k` under a server whose `limits.max_value_bytes` is the default: the
/// server warns at startup; each value too large for memcached fails alone with
/// RESOURCE_EXHAUSTED, and the server stays in service.
#[tokio::test]
async fn a_value_too_large_for_memcached_fails_alone() {
    let mc = Memcached::start_with(&["-I", "512k"]);
    let node = mc.addr();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", node.clone())]);
    let c = Calls::new(server.client().await);
    let warned = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("item size limit"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    harness::wait_until(
        "the startup warning about memcached's item size",
        || !warned(&server.logs()).is_empty(),
        || server.logs(),
    );
    c.set(b"small-before", b"v").await;
    let large = vec![b'x'; 600 * 1024];
    for i in 0..3 {
        let e = c
            .try_set(format!("large-{i}").as_bytes(), &large, 0)
            .await
            .expect_err("memcached refuses the item");
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert_eq!(
            e.message(),
            "value too large for memcached's item size limit (memcached -I)"
        );
        // The other keys of the same server are served meanwhile.
        let key = format!("small-{i}");
        c.set(key.as_bytes(), b"v").await;
        assert_hit(&c.get(key.as_bytes()).await, b"v");
        assert_hit(&c.get(b"small-before").await, b"v");
    }
    assert_miss(&c.get(b"large-0").await);
    assert_eq!(health(server.addr, "").await, ServingStatus::Serving as i32);
    assert_eq!(server.admin_get("/readyz").await.0, 200);
    let metrics = server.admin_get("/metrics").await.1;
    assert_eq!(ejections(&metrics, &node), 0.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            &format!("mintcache_backend_errors_total{{kind=\"refused\",node=\"{node}\"}}")
        ),
        3.0,
        "{metrics}"
    );

    let logs = server.logs();
    let lines = warned(&logs);
    assert_eq!(lines.len(), 1, "one warning for the server:\n{logs}");
    let line = &lines[0];
    eprintln!("{line}");
    for needle in [
        node.as_str(),
        "524288",
        "-I",
        "limits.max_value_bytes",
        "1047552",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line}");
    }
    assert!(
        !logs.contains("ejected") && !logs.contains("backend unavailable"),
        "refusals are not failures of the server:\n{logs}"
    );
}

/// `memcached.servers` names a server that answers, but not as memcached: calls fail with
/// UNAVAILABLE, the log says it is not memcached, and health says NOT_SERVING on every poll.
#[tokio::test]
async fn a_server_that_is_not_memcached_is_reported_and_stays_not_serving() {
    let peer = NotMemcached::start();
    let node = peer.addr();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", node.clone())]);
    let c = Calls::new(server.client().await);
    let e = c.try_set(b"k", b"v", 0).await.expect_err("not memcached");
    assert_eq!(e.code(), Code::Unavailable);
    // Callers get no backend internals...
    assert_eq!(e.message(), "cache backend unavailable");
    // ... the log says what is wrong, and where.
    harness::wait_until(
        "a log line saying the server is not memcached",
        || {
            server.logs().lines().any(|l| {
                l.contains(" ERROR ") && l.contains(&node) && l.contains("not a memcached server")
            })
        },
        || server.logs(),
    );
    // Stable: NOT_SERVING on every poll for 5 s (the prober looks every second).
    let until = Instant::now() + Duration::from_secs(5);
    let mut polls = 0;
    while Instant::now() < until {
        assert_eq!(
            health(server.addr, "").await,
            ServingStatus::NotServing as i32,
            "poll {polls}:\n{}",
            server.logs()
        );
        assert_eq!(server.admin_get("/readyz").await.0, 503);
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls >= 10);
    let logs = server.logs();
    assert!(!logs.contains("SERVING again"), "{logs}");
}

/// memcached servers down at startup: one ERROR line each, naming the server and why, and no
/// other ERROR about them while the service keeps retrying (through their ejection).
#[tokio::test]
async fn memcached_down_at_startup_is_one_error_line_per_server() {
    let down = [
        format!("127.0.0.1:{}", closed_port()),
        format!("127.0.0.1:{}", closed_port()),
    ];
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", down.join(","))]);
    // The prober tries each server every second; three failures in a row eject it.
    wait_for_or(
        "both servers ejected",
        || async {
            let metrics = server.admin_get("/metrics").await.1;
            down.iter().all(|n| ejections(&metrics, n) >= 1.0)
        },
        || async { server.admin_get("/metrics").await.1 },
    )
    .await;
    harness::wait_until(
        "the ejection lines",
        || {
            let logs = server.logs();
            down.iter().all(|n| {
                logs.lines()
                    .any(|l| l.contains("ejected") && l.contains(n.as_str()))
            })
        },
        || server.logs(),
    );
    let logs = server.logs();
    for node in &down {
        let errors: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(" ERROR ") && l.contains(node.as_str()))
            .collect();
        assert_eq!(errors.len(), 1, "one ERROR line for {node}:\n{logs}");
        eprintln!("{}", errors[0]);
        for needle in ["startup", "Connection refused", "keeps retrying"] {
            assert!(
                errors[0].contains(needle),
                "{needle:?} missing: {}",
                errors[0]
            );
        }
    }
    assert_eq!(
        health(server.addr, "").await,
        ServingStatus::NotServing as i32
    );
}

/// One of two memcached servers down for a while, under steady traffic on keys of both: the
/// outage is one ejection (however often the server is retried), a handful of log lines, and
/// the keys of the other server are served all along.
#[tokio::test]
async fn a_long_outage_is_one_ejection_and_a_few_log_lines() {
    let mut nodes = [Memcached::start(), Memcached::start()];
    let addrs: Vec<String> = nodes.iter().map(Memcached::addr).collect();
    let mut server = ServerProcess::start(&[
        ("MINTCACHE_MEMCACHED__SERVERS", addrs.join(",")),
        // Retried (and failing again) several times during the outage.
        ("MINTCACHE_MEMCACHED__RETRY_TIMEOUT_MS", "300".into()),
    ]);
    let c = Calls::new(server.client().await);
    let keys: [Vec<Vec<u8>>; 2] = [0, 1].map(|n| (0..10).map(|i| key_on(&addrs, n, i)).collect());
    for key in keys.iter().flatten() {
        c.set(key, b"v").await;
    }
    nodes[0].stop();

    let (mut failed, mut degraded) = (0, 0);
    for i in 0..2000 {
        let key = &keys[i % 2][(i / 2) % 10];
        if i % 4 < 2 {
            let (r, was_degraded) = c.try_get_full(key).await.expect("reads fail open");
            if i % 2 == 1 {
                assert_hit(&r, b"v");
                assert!(!was_degraded);
            } else {
                assert_miss(&r);
                degraded += usize::from(was_degraded);
            }
        } else {
            match c.try_set(key, b"v", 0).await {
                Ok(_) => assert_eq!(i % 2, 1, "a write to the server that is down"),
                Err(e) => {
                    assert_eq!((i % 2, e.code()), (0, Code::Unavailable), "{e:?}");
                    failed += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!((failed, degraded), (500, 500));
    let metrics = server.admin_get("/metrics").await.1;
    assert_eq!(ejections(&metrics, &addrs[0]), 1.0, "{metrics}");
    assert_eq!(ejections(&metrics, &addrs[1]), 0.0, "{metrics}");
    for key in &keys[1] {
        assert_hit(&c.get(key).await, b"v");
    }

    server.sigterm();
    let (_, logs) = server.wait_exit().await;
    let lines = warnings(&logs);
    eprintln!("{}", lines.join("\n"));
    assert!(
        lines.len() <= 5,
        "{} WARN/ERROR lines for 1,000 failed calls:\n{logs}",
        lines.len()
    );
}
