//! The typed client (`mintcache_client::Client`) end to end: every RPC with typed results,
//! version and namespace overrides, batch key errors, degraded reads, deadlines, health, and
//! one client balanced over two server processes.

mod harness;

use std::time::{Duration, Instant};

use harness::{Memcached, ServerProcess, TestServer, config};
use mintcache_client::{Backoff, Client, Error, Outcome, ServingStatus, SetOptions};
use tonic::Code;

const MINUTE: Duration = Duration::from_secs(60);

fn builder(addr: std::net::SocketAddr) -> mintcache_client::ClientBuilder {
    Client::builder()
        .endpoint(format!("http://{addr}"))
        .version("client-api")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_has_typed_results() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = builder(server.addr).connect().await.expect("connect");

    // Set / Get with flags, ttl and a fresh hit.
    let options = SetOptions {
        flags: 7,
        ..SetOptions::ttl(MINUTE)
    };
    assert!(c.set_with("k", "v1", &options).await.expect("set"));
    let hit = c.get("k").await.expect("get");
    assert_eq!(hit.outcome, Outcome::Hit);
    assert_eq!(hit.value, b"v1");
    assert_eq!(hit.flags, 7);
    assert!(
        hit.ttl > Duration::from_secs(55) && hit.ttl <= MINUTE,
        "{:?}",
        hit.ttl
    );
    assert_eq!(hit.lease, None);
    assert!(!hit.degraded);
    assert_eq!(hit.usable_value(), Some(&b"v1"[..]));

    // Miss carries a lease token and no value.
    let miss = c.get("absent").await.expect("get");
    assert_eq!(miss.outcome, Outcome::Miss);
    assert!(miss.lease.is_some());
    assert_eq!(miss.into_usable_value(), None);

    // Add only when absent.
    assert!(
        !c.add("k", "v2", &SetOptions::ttl(MINUTE))
            .await
            .expect("add")
    );
    assert!(
        c.add("added", "a", &SetOptions::ttl(MINUTE))
            .await
            .expect("add")
    );

    // Touch: a new fresh ttl for an existing key only.
    assert!(c.touch("k", Duration::from_secs(600)).await.expect("touch"));
    assert!(c.get("k").await.expect("get").ttl > MINUTE);
    assert!(!c.touch("absent", MINUTE).await.expect("touch"));

    // Invalidate: the next reader refreshes (with the stale value and a lease), others STALE.
    assert!(c.invalidate("k").await.expect("invalidate"));
    let refresh = c.get("k").await.expect("get");
    assert_eq!(
        (refresh.outcome, refresh.value.as_slice()),
        (Outcome::Refresh, &b"v1"[..])
    );
    let stale = c.get("k").await.expect("get");
    assert_eq!(
        (stale.outcome, stale.value.as_slice()),
        (Outcome::Stale, &b"v1"[..])
    );
    let lease = refresh.lease.expect("REFRESH carries a lease");
    let refreshed = SetOptions {
        lease: Some(lease.clone()),
        ..SetOptions::ttl(MINUTE)
    };
    assert!(c.set_with("k", "v3", &refreshed).await.expect("set"));
    // The same lease is outdated now: the key was set since that read.
    assert!(!c.set_with("k", "v4", &refreshed).await.expect("set"));
    assert_eq!(c.get("k").await.expect("get").value, b"v3");
    assert!(!c.invalidate("absent").await.expect("invalidate"));

    // Delete.
    assert!(c.delete("k").await.expect("delete"));
    assert!(!c.delete("k").await.expect("delete"));
    assert_eq!(c.get("k").await.expect("get").outcome, Outcome::Miss);

    // Increment: missing counter is None, not an error; creation; clamping at 0.
    assert_eq!(c.increment("hits", 1).await.expect("incr"), None);
    assert_eq!(
        c.increment_or_create("hits", 1, 10, MINUTE)
            .await
            .expect("incr"),
        10
    );
    assert_eq!(c.increment("hits", 5).await.expect("incr"), Some(15));
    assert_eq!(c.increment("hits", -100).await.expect("incr"), Some(0));
    // A value that is not a counter is an error with its gRPC code.
    let e = c.increment("added", 1).await.expect_err("not a counter");
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");

    // Errors keep their code: an empty key is INVALID_ARGUMENT.
    let e = c.get("").await.expect_err("empty key");
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().starts_with("INVALID_ARGUMENT: "), "{e}");

    // Health: the server as a whole and the Cache service are SERVING.
    assert_eq!(c.health("").await.expect("health"), ServingStatus::Serving);
    assert_eq!(
        c.health("mintcache.v1.Cache").await.expect("health"),
        ServingStatus::Serving
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_return_one_typed_result_per_key_in_order() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = builder(server.addr).connect().await.expect("connect");

    let items = vec![
        ("a", "1", SetOptions::ttl(MINUTE)),
        ("", "bad", SetOptions::ttl(MINUTE)),
        ("b", "2", SetOptions::ttl(MINUTE)),
    ];
    let stored = c.set_many(items).await.expect("set_many");
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0], Ok(true));
    assert_eq!(
        stored[1].as_ref().map_err(|e| e.code),
        Err(Code::InvalidArgument)
    );
    assert_eq!(stored[2], Ok(true));

    let got = c
        .get_many(["b", "", "missing", "a"])
        .await
        .expect("get_many");
    let summary: Vec<_> = got
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|l| (l.outcome, l.value.clone()))
                .map_err(|e| e.code)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            Ok((Outcome::Hit, b"2".to_vec())),
            Err(Code::InvalidArgument),
            Ok((Outcome::Miss, Vec::new())),
            Ok((Outcome::Hit, b"1".to_vec())),
        ]
    );

    let deleted = c
        .delete_many(["a", "missing", ""])
        .await
        .expect("delete_many");
    assert_eq!(deleted[0], Ok(true));
    assert_eq!(deleted[1], Ok(false));
    assert_eq!(
        deleted[2].as_ref().map_err(|e| e.code),
        Err(Code::InvalidArgument)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_namespaces_isolate_keys_per_call() {
    let server = TestServer::start(config(&[])).await;
    let c = Client::builder()
        .endpoint(server.addr.to_string()) // scheme-less: plain http
        .version("v1")
        .namespace("shop")
        .build()
        .expect("build");

    assert!(c.set("user", "in v1", MINUTE).await.expect("set"));
    assert!(
        c.with_version("v2")
            .set("user", "in v2", MINUTE)
            .await
            .expect("set")
    );
    assert!(
        c.with_namespace("blog")
            .set("user", "in blog", MINUTE)
            .await
            .expect("set")
    );
    assert_eq!(c.get("user").await.expect("get").value, b"in v1");
    assert_eq!(
        c.with_version("v2").get("user").await.expect("get").value,
        b"in v2"
    );
    assert_eq!(
        c.with_namespace("blog")
            .get("user")
            .await
            .expect("get")
            .value,
        b"in blog"
    );
    assert_eq!(
        c.with_version("v3").get("user").await.expect("get").outcome,
        Outcome::Miss
    );
    // An invalid version is the server's INVALID_ARGUMENT, not retried, not a panic.
    let e = c
        .with_version("no spaces")
        .get("user")
        .await
        .expect_err("bad version");
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_flagged_degraded_when_memcached_is_down() {
    let mut mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = builder(server.addr)
        .retry(Backoff::NONE)
        .connect()
        .await
        .expect("connect");
    assert!(c.set("k", "v", MINUTE).await.expect("set"));
    mc.stop();
    let read = c.get("k").await.expect("reads fail open");
    assert_eq!(read.outcome, Outcome::Miss);
    assert!(read.degraded);
    let e = c
        .set("k", "v", MINUTE)
        .await
        .expect_err("writes fail closed");
    assert_eq!(e.code(), Some(Code::Unavailable), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_end_with_deadline_exceeded_when_the_server_does_not_answer() {
    // Accepts TCP connections and never speaks HTTP/2.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let c = builder(addr)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("build");
    let started = Instant::now();
    let e = c.get("k").await.expect_err("no answer");
    assert_eq!(e.code(), Some(Code::DeadlineExceeded), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_fast_and_clearly_without_a_server() {
    let port = harness::closed_port();
    let e = Client::builder()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .connect()
        .await
        .expect_err("nothing listens");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
    assert!(matches!(
        Client::builder().build().expect_err("no endpoint"),
        Error::NoEndpoint
    ));
    assert!(matches!(
        Client::builder()
            .endpoint("http://[::1")
            .build()
            .expect_err("bad uri"),
        Error::InvalidEndpoint { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balanced_client_keeps_answering_when_one_replica_goes_down() {
    let mc = Memcached::start();
    let env = [("MINTCACHE_MEMCACHED__SERVERS", mc.addr())];
    let mut a = ServerProcess::start(&env);
    let b = ServerProcess::start(&env);
    let c = Client::builder()
        .endpoints([format!("http://{}", a.addr), format!("http://{}", b.addr)])
        .version("balanced")
        .connect()
        .await
        .expect("connect");
    for i in 0..20 {
        assert!(c.set(format!("k{i}"), "v", MINUTE).await.expect("set"));
    }
    // Both replicas share memcached: every key reads back whichever replica answers.
    for i in 0..20 {
        assert_eq!(
            c.get(format!("k{i}")).await.expect("get").outcome,
            Outcome::Hit
        );
    }
    a.stop();
    for i in 0..20 {
        let read = c.get(format!("k{i}")).await.expect("b still answers");
        assert_eq!(read.outcome, Outcome::Hit);
    }
}
