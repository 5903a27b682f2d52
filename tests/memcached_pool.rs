//! The memcached pool end to end: distribution over nodes, sharing between server processes,
//! what reaches memcached, and behaviour when memcached fails.

mod harness;

use std::time::Duration;

use harness::calls::{Calls, assert_hit, assert_miss, assert_status};
use harness::{Memcached, ServerProcess, TestServer, config};
use tonic::Code;

#[tokio::test]
async fn keys_spread_over_three_nodes() {
    let nodes = [Memcached::start(), Memcached::start(), Memcached::start()];
    let server = TestServer::start(config(&[&nodes[0], &nodes[1], &nodes[2]])).await;
    let c = Calls::new(server.client().await);
    let n = 600;
    for i in 0..n {
        c.set(format!("item:{i}").as_bytes(), b"v").await;
    }
    let counts: Vec<u64> = nodes.iter().map(Memcached::curr_items).collect();
    assert_eq!(
        counts.iter().sum::<u64>(),
        n,
        "every key stored exactly once: {counts:?}"
    );
    for count in &counts {
        assert!(*count >= n / 6, "uneven spread over 3 nodes: {counts:?}");
    }
    for i in 0..n {
        assert_hit(&c.get(format!("item:{i}").as_bytes()).await, b"v");
    }
}

#[tokio::test]
async fn two_server_processes_share_a_version_and_not_across_versions() {
    let nodes = [Memcached::start(), Memcached::start()];
    let servers = format!("{},{}", nodes[0].addr(), nodes[1].addr());
    let a = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", servers.clone())]);
    let b = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", servers)]);
    let a_v1 = Calls::new(a.client().await).version("release-41");
    let b_v1 = Calls::new(b.client().await).version("release-41");
    let b_v2 = Calls::new(b.client().await).version("release-42");
    for i in 0..50 {
        a_v1.set(
            format!("page:{i}").as_bytes(),
            format!("html {i}").as_bytes(),
        )
        .await;
    }
    for i in 0..50 {
        assert_hit(
            &b_v1.get(format!("page:{i}").as_bytes()).await,
            format!("html {i}").as_bytes(),
        );
        assert_miss(&b_v2.get(format!("page:{i}").as_bytes()).await);
    }
    assert!(b_v1.delete(b"page:7").await);
    assert_miss(&a_v1.get(b"page:7").await);
}

#[tokio::test]
async fn what_reaches_memcached() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = Calls::new(server.client().await)
        .version("v9")
        .namespace("shop");
    c.set(b"cart:1", b"abc").await;
    // Plain keys are readable in memcached as <namespace>:<version>:<key>, in the format-1 envelope
    // (client flags 0x6d00001e: format 1, grace 30; a 4-byte header with the caller's flags, 0).
    let raw = mc.raw("mg shop:v9:cart:1 v f\r\n", "abc\r\n");
    assert_eq!(raw, "VA 7 f1828716574\r\n\0\0\0\0abc\r\n");
    // A key with protocol syntax in it is stored under its binary form, and nothing it
    // contains was executed: the other item survives a key that spells flush_all.
    c.set(b"x\r\nflush_all\r\n", b"evil").await;
    assert_hit(&c.get(b"cart:1").await, b"abc");
    assert_hit(&c.get(b"x\r\nflush_all\r\n").await, b"evil");
    assert_eq!(mc.curr_items(), 2);
    // The binary key is reachable with the meta protocol's base64 form.
    let b64 = "c2hvcDp2OTp4DQpmbHVzaF9hbGwNCg=="; // base64("shop:v9:x\r\nflush_all\r\n")
    let raw = mc.raw(&format!("mg {b64} b s\r\n"), "\r\n");
    assert!(raw.starts_with("HD"), "binary key present: {raw:?}");
    // Keys longer than memcached allows are hashed under the same namespace and version.
    c.set(&[b'z'; 1000], b"long").await;
    let dump = mc.raw("lru_crawler metadump all\r\n", "END\r\n");
    assert!(
        dump.contains("key=shop%3Av9%23"),
        "hashed key present: {dump}"
    );
}

#[tokio::test]
async fn reads_fail_open_writes_fail_and_the_pool_recovers() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let mut cfg = config(&[&mc]);
    // This test is about connections, not ejection (tested below): never eject.
    cfg.memcached.failure_limit = 0;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    c.set(b"k", b"v").await;
    mc.stop();

    let (r, degraded) = c.try_get_full(b"k").await.expect("reads fail open");
    assert_miss(&r);
    assert!(degraded, "a failed read is flagged x-cache-degraded");
    assert_status(
        c.try_set(b"k", b"v", 0).await,
        Code::Unavailable,
        "cache backend unavailable",
    );
    assert_status(
        c.try_delete(b"k").await,
        Code::Unavailable,
        "cache backend unavailable",
    );

    // memcached comes back on the same port: broken connections were discarded, new ones work.
    let _back = Memcached::start_on(port);
    c.set(b"k", b"back").await;
    assert_hit(&c.get(b"k").await, b"back");
}

#[tokio::test]
async fn reads_can_fail_closed() {
    let mut mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.fail_open = false;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    mc.stop();
    assert_status(
        c.try_get(b"k").await,
        Code::Unavailable,
        "cache backend unavailable",
    );
}

#[tokio::test]
async fn a_silent_node_times_out() {
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let mut cfg = mintcache::config::Config::default();
    cfg.memcached.servers = vec![addr.to_string().parse().expect("spec")];
    cfg.memcached.timeout_ms = 200;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let (r, degraded) = c.try_get_full(b"k").await.expect("read fails open");
        assert_miss(&r);
        assert!(degraded);
        assert_status(
            c.try_set(b"k", b"v", 0).await,
            Code::Unavailable,
            "unavailable",
        );
    })
    .await;
    assert!(
        answered.is_ok(),
        "calls to a silent node must end with the operation timeout"
    );
    drop(silent);
}

#[tokio::test]
async fn batches_over_three_nodes_with_one_down() {
    use harness::calls::item;
    use mintcache_client::proto::Outcome;

    let mut nodes = [Memcached::start(), Memcached::start(), Memcached::start()];
    let addrs: Vec<String> = nodes.iter().map(Memcached::addr).collect();
    let server = TestServer::start(config(&[&nodes[0], &nodes[1], &nodes[2]])).await;
    let c = Calls::new(server.client().await).version("b1");

    // Where each key lives, computed the way the server does.
    let servers: Vec<_> = addrs.iter().map(|a| a.parse().expect("spec")).collect();
    let keys: Vec<Vec<u8>> = (0..90).map(|i| format!("k{i}").into_bytes()).collect();
    let owner =
        |k: &[u8]| mintcache::testing::memcached_server_for(&servers, "", "b1", k).expect("node");
    let on_down: Vec<bool> = keys.iter().map(|k| owner(k) == 2).collect();
    assert!(on_down.iter().any(|d| *d) && on_down.iter().any(|d| !*d));

    let results = c.set_many(keys.iter().map(|k| item(k, k)).collect()).await;
    assert!(results.iter().all(|r| r.stored && r.error.is_none()));
    let per_node: Vec<u64> = nodes.iter().map(Memcached::curr_items).collect();
    for (i, count) in per_node.iter().enumerate() {
        let expected = keys.iter().filter(|k| owner(k) == i).count() as u64;
        assert_eq!(*count, expected, "node {i} holds exactly its keys");
    }

    nodes[2].stop();

    // Reads: keys on the stopped node fail open (MISS, degraded), the others are hits.
    let (results, degraded) = c.get_many(&keys).await;
    assert!(degraded, "the response says some reads failed open");
    for ((key, r), down) in keys.iter().zip(&results).zip(&on_down) {
        assert_eq!(&r.key, key);
        if *down {
            assert_eq!(r.outcome(), Outcome::Miss);
        } else {
            assert_eq!((r.outcome(), &r.value), (Outcome::Hit, key));
        }
    }
    // Writes and deletes: only the keys on the stopped node fail, with UNAVAILABLE.
    let mut items: Vec<_> = keys.iter().map(|k| item(k, b"v2")).collect();
    items.push(item(b"", b"bad key"));
    let results = c.set_many(items).await;
    for (r, down) in results.iter().zip(on_down.iter().chain([&false])) {
        match (&r.error, r.key.is_empty(), *down) {
            (Some(e), true, _) => assert_eq!(e.code, Code::InvalidArgument as i32),
            (Some(e), false, true) => {
                assert_eq!(e.code, Code::Unavailable as i32);
                assert_eq!(e.message, "cache backend unavailable");
            }
            (None, false, false) => assert!(r.stored),
            other => panic!("unexpected result {other:?} for {r:?}"),
        }
    }
    let results = c.delete_many(&keys).await;
    for (r, down) in results.iter().zip(&on_down) {
        if *down {
            assert_eq!(
                r.error.as_ref().map(|e| e.code),
                Some(Code::Unavailable as i32)
            );
        } else {
            assert!(r.deleted && r.error.is_none());
        }
    }
}

#[tokio::test]
async fn a_fresh_hit_costs_one_round_trip() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    // The key space's generation (read by the first call) stays trusted for the whole test.
    cfg.cache.flush_sync_ms = 60_000;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    c.set(b"hot", b"v").await;
    let gets = |s: &std::collections::HashMap<String, String>| -> u64 {
        s["cmd_get"].parse().expect("number")
    };
    let before = gets(&mc.stats());
    for _ in 0..100 {
        assert_hit(&c.get(b"hot").await, b"v");
    }
    assert_eq!(gets(&mc.stats()) - before, 100, "one mg per fresh hit");
}

#[tokio::test]
async fn failing_servers_are_ejected_and_retried() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let mut cfg = config(&[&mc]);
    cfg.memcached.failure_limit = 2;
    cfg.memcached.retry_timeout_ms = 700;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    c.set(b"k", b"v").await;
    mc.stop();
    for _ in 0..2 {
        assert_status(
            c.try_set(b"k", b"v", 0).await,
            Code::Unavailable,
            "unavailable",
        );
    }
    // Ejected: calls fail at once, without trying the server.
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "mintcache_backend_ejections_total{{node=\"127.0.0.1:{port}\"}} 1"
        )),
        "{metrics}"
    );
    assert_status(
        c.try_set(b"k", b"v", 0).await,
        Code::Unavailable,
        "unavailable",
    );
    let (_, metrics) = server.admin_get("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "mintcache_backend_errors_total{{kind=\"ejected\",node=\"127.0.0.1:{port}\"}} 1"
        )),
        "{metrics}"
    );
    // Back after the retry timeout.
    let _back = Memcached::start_on(port);
    harness::wait_for(
        "the server to be retried after its retry timeout",
        || async { c.try_set(b"k", b"again", 0).await.is_ok() },
    )
    .await;
    assert_hit(&c.get(b"k").await, b"again");
}

#[tokio::test]
async fn keys_of_an_ejected_server_can_be_remapped() {
    use mintcache::config::EjectedKeys;
    let mut nodes = [Memcached::start(), Memcached::start()];
    let mut cfg = config(&[&nodes[0], &nodes[1]]);
    cfg.memcached.failure_limit = 1;
    cfg.memcached.retry_timeout_ms = 60_000;
    cfg.memcached.ejected_keys = EjectedKeys::Remap;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("r{i}").into_bytes()).collect();
    for k in &keys {
        c.set(k, b"v1").await;
    }
    let on_first = nodes[0].curr_items();
    assert!(on_first > 0 && on_first < 40);
    nodes[0].stop();
    // The first call that fails ejects the server (failure_limit 1); from then on its keys live
    // on the other one.
    let mut failed = 0;
    for k in &keys {
        if c.try_set(k, b"v2", 0).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the call that found the server down fails");
    let mut stored = 0;
    for k in &keys {
        if c.try_set(k, b"v2", 0).await.is_ok() {
            stored += 1;
        }
    }
    assert_eq!(
        stored,
        keys.len(),
        "every key is writable once its server is ejected"
    );
    assert_eq!(nodes[1].curr_items(), 40);
    for k in &keys {
        assert_hit(&c.get(k).await, b"v2");
    }
}
