//! Values that never expire, values without a grace period, counters stored by `Set`, peeks
//! that never take part in a refresh election, the refresh timeout, and `Flush` of one key
//! space: end to end over gRPC, against the memcached pool and against the embedded store.

mod harness;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use harness::calls::{Calls, assert_hit, assert_miss, assert_status};
use harness::{Memcached, ServerProcess, TestServer, config};
use mintcache::clock::ManualClock;
use mintcache::config::Config;
use mintcache_client::proto::{
    FlushRequest, GetManyRequest, GetRequest, GetResponse, Outcome, SetManyItem, SetManyRequest,
    SetRequest, TouchRequest,
};
use tonic::Code;

/// How long a test waits for something that takes memcached's one-second clock to happen.
const PATIENCE: Duration = Duration::from_secs(10);

fn set(key: &[u8], value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

async fn read(c: &Calls, key: &[u8], peek: bool, lease_on_miss: Option<bool>) -> GetResponse {
    let request = harness::req(
        GetRequest {
            key: key.to_vec(),
            lease_on_miss,
            peek,
            ..Default::default()
        },
        c.version.as_deref(),
        c.namespace.as_deref(),
    );
    c.client
        .clone()
        .get(request)
        .await
        .expect("get succeeds")
        .into_inner()
}

async fn peek(c: &Calls, key: &[u8]) -> GetResponse {
    read(c, key, true, None).await
}

async fn flush(c: &Calls) -> Result<bool, tonic::Status> {
    let request = harness::req(
        FlushRequest {},
        c.version.as_deref(),
        c.namespace.as_deref(),
    );
    c.client
        .clone()
        .flush(request)
        .await
        .map(|r| r.into_inner().flushed)
}

/// Polls `read` until its outcome is `want` (memcached counts time in whole seconds).
async fn wait_for_outcome(c: &Calls, key: &[u8], want: Outcome) -> GetResponse {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = peek(c, key).await;
        if r.outcome() == want {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{key:?} never reached {want:?}; last answer {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every case, against one server.
async fn cases(server: &TestServer) {
    let c = Calls::new(server.client().await);
    values_that_never_expire(&c).await;
    values_without_grace(&c).await;
    counters_stored_by_set(&c).await;
    peeks_never_take_the_election(&c).await;
    peeks_give_back_the_election_of_invalidated_items(&c).await;
    peeks_of_missing_and_pending_keys(&c).await;
    read_answers_carry_expiry_and_grace(&c).await;
    flush_drops_one_key_space_only(&c).await;
}

async fn values_that_never_expire(c: &Calls) {
    let forever = SetRequest {
        no_expiry: true,
        ..set(b"forever", b"v")
    };
    assert!(c.try_set_with(forever.clone()).await.expect("set"));
    let r = c.get(b"forever").await;
    assert_hit(&r, b"v");
    assert!(r.no_expiry, "never-expiring value: {r:?}");
    assert_eq!(r.ttl_seconds, 0);
    assert_status(
        c.try_set_with(SetRequest {
            ttl_seconds: 5,
            ..forever
        })
        .await,
        Code::InvalidArgument,
        "no_expiry",
    );
    // A touch gives it a lifetime, and another takes it away again.
    assert!(c.try_touch(b"forever", 100).await.expect("touch"));
    let r = c.get(b"forever").await;
    assert!(!r.no_expiry && r.ttl_seconds > 90, "touched: {r:?}");
    let touch = harness::req(
        TouchRequest {
            key: b"forever".to_vec(),
            ttl_seconds: 0,
            no_expiry: true,
        },
        None,
        None,
    );
    assert!(
        c.client
            .clone()
            .touch(touch)
            .await
            .expect("touch")
            .into_inner()
            .touched
    );
    assert!(c.get(b"forever").await.no_expiry);
    // Counters can be created without an expiry too.
    let r = c
        .client
        .clone()
        .increment(harness::req(
            mintcache_client::proto::IncrementRequest {
                key: b"forever-counter".to_vec(),
                delta: 1,
                initial_value: Some(7),
                ttl_seconds: 0,
                no_expiry: true,
            },
            None,
            None,
        ))
        .await
        .expect("increment");
    assert_eq!(r.into_inner().value, 7);
    let r = c.get(b"forever-counter").await;
    assert!(r.counter && r.no_expiry, "{r:?}");
}

async fn values_without_grace(c: &Calls) {
    let plain = SetRequest {
        ttl_seconds: 1,
        no_grace: true,
        ..set(b"plain", b"v")
    };
    assert_status(
        c.try_set_with(SetRequest {
            grace_seconds: 10,
            ..plain.clone()
        })
        .await,
        Code::InvalidArgument,
        "no_grace",
    );
    assert!(c.try_set_with(plain).await.expect("set"));
    let r = c.get(b"plain").await;
    assert_hit(&r, b"v");
    assert_eq!(r.grace_seconds, 0);
    // Gone at the end of its ttl: never STALE.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = c.get(b"plain").await;
        match r.outcome() {
            Outcome::Hit => {}
            Outcome::Miss => break,
            other => panic!("a value without grace must go from HIT to MISS, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "the value never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Invalidating a value without grace removes it.
    assert!(
        c.try_set_with(SetRequest {
            no_grace: true,
            ..set(b"plain2", b"v")
        })
        .await
        .expect("set")
    );
    assert!(c.invalidate(b"plain2").await);
    assert_miss(&c.get(b"plain2").await);
}

async fn counters_stored_by_set(c: &Calls) {
    let counter = |value: &[u8]| SetRequest {
        counter: true,
        ..set(b"count", value)
    };
    assert!(c.try_set_with(counter(b"0041")).await.expect("set"));
    let r = c.get(b"count").await;
    assert_hit(&r, b"41");
    assert!(r.counter, "{r:?}");
    assert_eq!(
        c.try_increment(b"count", 1, None, 0).await.expect("incr"),
        42
    );
    assert_eq!(
        c.try_increment(b"count", -50, None, 0).await.expect("decr"),
        0
    );
    for (bad, field) in [
        (counter(b"-1"), "value"),
        (counter(b"12a"), "value"),
        (counter(b""), "value"),
        (counter(b"18446744073709551616"), "value"),
        (
            SetRequest {
                flags: 3,
                ..counter(b"1")
            },
            "flags",
        ),
        (
            SetRequest {
                grace_seconds: 5,
                ..counter(b"1")
            },
            "grace_seconds",
        ),
        (
            SetRequest {
                lease_token: vec![2],
                ..counter(b"1")
            },
            "lease_token",
        ),
    ] {
        assert_status(c.try_set_with(bad).await, Code::InvalidArgument, field);
    }
    assert!(
        c.try_set_with(counter(b"18446744073709551615"))
            .await
            .expect("u64::MAX")
    );
    // Batches store counters too.
    let items = vec![SetManyItem {
        key: b"batch-count".to_vec(),
        value: b"5".to_vec(),
        counter: true,
        ..Default::default()
    }];
    let results = c
        .client
        .clone()
        .set_many(harness::req(SetManyRequest { items }, None, None))
        .await
        .expect("set_many")
        .into_inner()
        .results;
    assert!(
        results[0].stored && results[0].error.is_none(),
        "{results:?}"
    );
    assert_eq!(
        c.try_increment(b"batch-count", 5, None, 0)
            .await
            .expect("incr"),
        10
    );
}

/// Sets `key` fresh for one second with a long grace, and waits until it is stale.
async fn stale_value(c: &Calls, key: &[u8]) {
    assert!(
        c.try_set_with(SetRequest {
            ttl_seconds: 1,
            grace_seconds: 60,
            ..set(key, b"old")
        })
        .await
        .expect("set")
    );
    wait_for_outcome(c, key, Outcome::Stale).await;
}

async fn peeks_never_take_the_election(c: &Calls) {
    stale_value(c, b"p").await;
    for _ in 0..5 {
        let r = peek(c, b"p").await;
        assert_eq!(r.outcome(), Outcome::Stale, "{r:?}");
        assert_eq!(r.value, b"old");
        assert!(r.lease_token.is_empty(), "a peek never gets a lease");
    }
    // The election is still open for the first real reader.
    let r = c.get(b"p").await;
    assert_eq!(r.outcome(), Outcome::Refresh, "{r:?}");
    assert_eq!(c.get(b"p").await.outcome(), Outcome::Stale);
    assert_eq!(peek(c, b"p").await.outcome(), Outcome::Stale);
}

async fn peeks_give_back_the_election_of_invalidated_items(c: &Calls) {
    assert!(
        c.try_set_with(SetRequest {
            grace_seconds: 60,
            ..set(b"inv", b"v1")
        })
        .await
        .expect("set")
    );
    assert!(c.invalidate(b"inv").await);
    // memcached hands the election of an invalidated item to its first read, whatever the
    // read asks for; a peek gives it back.
    for _ in 0..3 {
        let r = peek(c, b"inv").await;
        assert_eq!(r.outcome(), Outcome::Stale, "{r:?}");
    }
    let refresh = c.get(b"inv").await;
    assert_eq!(refresh.outcome(), Outcome::Refresh, "{refresh:?}");
    // The lease of the real winner is good.
    assert!(
        c.try_set_with(SetRequest {
            lease_token: refresh.lease_token.clone(),
            ..set(b"inv", b"v2")
        })
        .await
        .expect("set")
    );
    assert_hit(&c.get(b"inv").await, b"v2");
}

async fn peeks_of_missing_and_pending_keys(c: &Calls) {
    let r = peek(c, b"nothing").await;
    assert_miss(&r);
    assert!(r.lease_token.is_empty());
    // A peek creates no placeholder: the next protected reader still gets the MISS.
    let r = read(c, b"nothing", false, Some(true)).await;
    assert_eq!(r.outcome(), Outcome::Miss, "{r:?}");
    // Someone is filling it now.
    assert_eq!(peek(c, b"nothing").await.outcome(), Outcome::Pending);
    // Batched peeks answer the same way, per key.
    let request = harness::req(
        GetManyRequest {
            keys: vec![b"nothing".to_vec(), b"inv".to_vec(), b"absent".to_vec()],
            lease_on_miss: None,
            peek: true,
            ..Default::default()
        },
        None,
        None,
    );
    let results = c
        .client
        .clone()
        .get_many(request)
        .await
        .expect("get_many")
        .into_inner()
        .results;
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome()).collect();
    assert_eq!(outcomes, [Outcome::Pending, Outcome::Hit, Outcome::Miss]);
}

async fn read_answers_carry_expiry_and_grace(c: &Calls) {
    assert!(
        c.try_set_with(SetRequest {
            ttl_seconds: 100,
            grace_seconds: 40,
            ..set(b"g", b"v")
        })
        .await
        .expect("set")
    );
    let r = c.get(b"g").await;
    assert_eq!(
        (r.grace_seconds, r.no_expiry, r.counter),
        (40, false, false)
    );
    assert!((99..=100).contains(&r.ttl_seconds), "{r:?}");
    assert!(c.invalidate(b"g").await);
    let r = c.get(b"g").await;
    assert_eq!(r.outcome(), Outcome::Refresh);
    assert!(
        (39..=40).contains(&r.grace_seconds),
        "seconds the stale value stays servable: {r:?}"
    );
}

async fn flush_drops_one_key_space_only(c: &Calls) {
    let spaces = [
        c.clone().version("fv1"),
        c.clone().version("fv2"),
        c.clone().version("fv1").namespace("other"),
    ];
    for (i, s) in spaces.iter().enumerate() {
        s.set(b"k", format!("v{i}").as_bytes()).await;
        s.set(&[b'x'; 300], b"long").await;
    }
    assert!(flush(&spaces[0]).await.expect("flush"));
    assert_miss(&spaces[0].get(b"k").await);
    assert_miss(&spaces[0].get(&[b'x'; 300]).await);
    assert_hit(&spaces[1].get(b"k").await, b"v1");
    assert_hit(&spaces[2].get(b"k").await, b"v2");
    assert_hit(&spaces[2].get(&[b'x'; 300]).await, b"long");
    // The flushed space is usable at once, and can be flushed again.
    spaces[0].set(b"k", b"after").await;
    assert_hit(&spaces[0].get(b"k").await, b"after");
    assert!(flush(&spaces[0]).await.expect("flush"));
    assert_miss(&spaces[0].get(b"k").await);
    // Flushing an empty key space is fine.
    assert!(
        flush(&c.clone().version("never-used"))
            .await
            .expect("flush")
    );
}

#[tokio::test]
async fn memcached_pool() {
    let a = Memcached::start();
    let b = Memcached::start();
    let server = TestServer::start(config(&[&a, &b])).await;
    cases(&server).await;
}

#[tokio::test]
async fn embedded_store() {
    let server = TestServer::start(config(&[])).await;
    cases(&server).await;
}

fn quick_refresh_timeout(mut cfg: Config) -> Config {
    cfg.cache.refresh_timeout_seconds = REFRESH_TIMEOUT.as_secs();
    cfg
}

/// `cache.refresh_timeout_seconds` of [`quick_refresh_timeout`].
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// A refresh winner that never stores: once the refresh timeout has passed on the server's
/// clock (which the test moves), exactly one of many concurrent readers is elected again, and
/// only the new winner's lease stores. `clock` is the server's; with `memcached`, the value
/// goes stale on memcached's own clock, which the test waits for (it counts whole seconds).
async fn abandoned_refresh_is_reopened(c: &Calls, clock: &ManualClock, memcached: bool) {
    if memcached {
        stale_value(c, b"abandoned").await;
    } else {
        assert!(
            c.try_set_with(SetRequest {
                ttl_seconds: 1,
                grace_seconds: 60,
                ..set(b"abandoned", b"old")
            })
            .await
            .expect("set")
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(peek(c, b"abandoned").await.outcome(), Outcome::Stale);
    }
    let first = c.get(b"abandoned").await;
    assert_eq!(first.outcome(), Outcome::Refresh);
    // The server sees the election decided here: its refresh timeout counts from this read.
    assert_eq!(c.get(b"abandoned").await.outcome(), Outcome::Stale);
    clock.advance(REFRESH_TIMEOUT);
    let answers = join_all((0..50).map(|_| c.get(b"abandoned"))).await;
    assert!(
        answers
            .iter()
            .all(|r| matches!(r.outcome(), Outcome::Refresh | Outcome::Stale))
    );
    let refreshes: Vec<&GetResponse> = answers
        .iter()
        .filter(|r| r.outcome() == Outcome::Refresh)
        .collect();
    let [second] = refreshes[..] else {
        panic!("one new winner once the refresh timeout passed: {refreshes:?}");
    };
    assert_eq!(second.value, b"old");
    // The abandoned lease is outdated; the new one stores.
    let store = |lease: &GetResponse, value: &[u8]| SetRequest {
        lease_token: lease.lease_token.clone(),
        ..set(b"abandoned", value)
    };
    assert!(!c.try_set_with(store(&first, b"late")).await.expect("set"));
    assert!(c.try_set_with(store(second, b"new")).await.expect("set"));
    assert_hit(&c.get(b"abandoned").await, b"new");
}

#[tokio::test]
async fn refresh_timeout_reopens_the_election_on_memcached() {
    let mc = Memcached::start();
    let clock = ManualClock::new();
    let cfg = quick_refresh_timeout(config(&[&mc]));
    let server = TestServer::start_with_clock(cfg, clock.clone().into()).await;
    abandoned_refresh_is_reopened(&Calls::new(server.client().await), &clock, true).await;
}

#[tokio::test]
async fn refresh_timeout_reopens_the_election_on_the_embedded_store() {
    let clock = ManualClock::new();
    let cfg = quick_refresh_timeout(config(&[]));
    let server = TestServer::start_with_clock(cfg, clock.clone().into()).await;
    abandoned_refresh_is_reopened(&Calls::new(server.client().await), &clock, false).await;
}

#[tokio::test]
async fn without_a_refresh_timeout_the_election_stays_closed() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.refresh_timeout_seconds = 0;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    stale_value(&c, b"k").await;
    assert_eq!(c.get(b"k").await.outcome(), Outcome::Refresh);
    // Well past what a timeout would be (the tests above use 1 s): still one winner. A real
    // wait, because the refresh timeout is counted on the server's own monotonic clock (from
    // when it first saw the election decided), which neither memcached's clock nor the embedded
    // store's ManualClock reaches.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..10 {
        assert_eq!(c.get(b"k").await.outcome(), Outcome::Stale);
    }
}

fn replica_env(mcs: &[&Memcached], flush_sync_ms: u64) -> Vec<(&'static str, String)> {
    let servers: Vec<String> = mcs.iter().map(|m| m.addr()).collect();
    vec![
        ("MINTCACHE_MEMCACHED__SERVERS", servers.join(",")),
        ("MINTCACHE_CACHE__FLUSH_SYNC_MS", flush_sync_ms.to_string()),
    ]
}

/// Waits until a replica stops serving a flushed key (bounded by `PATIENCE`).
async fn wait_until_flushed(c: &Calls, key: &[u8]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let r = c.get(key).await;
        match r.outcome() {
            Outcome::Miss => return,
            Outcome::Hit => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the other replica kept serving a flushed key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicas_agree_on_a_flush() {
    let (m1, m2) = (Memcached::start(), Memcached::start());
    let env = replica_env(&[&m1, &m2], 300);
    let a = ServerProcess::start(&env);
    let b = ServerProcess::start(&env);
    let ca = Calls::new(a.client().await).version("r");
    let cb = Calls::new(b.client().await).version("r");
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("key-{i}").into_bytes()).collect();
    for k in &keys {
        ca.set(k, b"before").await;
        // b reads them now, so it holds the key space's generation.
        assert_hit(&cb.get(k).await, b"before");
    }
    assert!(flush(&ca).await.expect("flush"));
    // The replica that flushed never serves them again.
    for k in &keys {
        assert_miss(&ca.get(k).await);
    }
    // The other one stops within its flush_sync_ms.
    for k in &keys {
        wait_until_flushed(&cb, k).await;
    }
    // Both agree on what comes next.
    cb.set(b"key-0", b"after").await;
    assert_hit(&ca.get(b"key-0").await, b"after");
}

/// A replica's copy of a key space's generation counts as one more copy: when every memcached
/// lost it (all restarted), the replica that knew it writes it back as it renews its copy, and a
/// replica that never knew it reads it there. The two keep agreeing on where keys live.
#[tokio::test]
async fn replicas_agree_after_every_memcached_lost_the_generation() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let env = replica_env(&[&mc], 200);
    let a = ServerProcess::start(&env);
    let ca = Calls::new(a.client().await).version("g");
    ca.set(b"k", b"v0").await;
    assert!(flush(&ca).await.expect("flush"));
    mc.stop();
    let mc = Memcached::start_on(port);
    // a's calls renew its copy, which puts the generation back.
    let deadline = Instant::now() + PATIENCE;
    while !mc.raw("mg :g@generation v\r\n", "\r\n").starts_with("VA") {
        assert!(
            Instant::now() < deadline,
            "the generation was not written back"
        );
        let _ = ca.try_get(b"k").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = ServerProcess::start(&env);
    let cb = Calls::new(b.client().await).version("g");
    ca.set(b"k", b"v1").await;
    assert_hit(&cb.get(b"k").await, b"v1");
    cb.set(b"j", b"w").await;
    assert_hit(&ca.get(b"j").await, b"w");
}

#[tokio::test]
async fn a_flush_survives_a_memcached_restart_and_a_partial_flush() {
    let m1 = Memcached::start();
    let mut m2 = Memcached::start();
    let port2 = m2.port;
    let mut cfg = config(&[&m1, &m2]);
    cfg.cache.flush_sync_ms = 0;
    cfg.memcached.failure_limit = 0;
    cfg.memcached.timeout_ms = 500;
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await).version("p");
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i}").into_bytes()).collect();
    for k in &keys {
        c.set(k, b"v0").await;
    }
    // One server down: the flush is refused, but what it reached already hides every old key
    // (replicas take the highest generation they can read).
    m2.stop();
    assert_status(flush(&c).await, Code::Unavailable, "unavailable");
    let m2 = Memcached::start_on(port2);
    for k in &keys {
        let (r, _) = c.try_get_full(k).await.expect("get");
        assert_miss(&r);
    }
    // The restarted server lost its copy of the generation and got it back from the others:
    // keys stored now are read back on both servers.
    for k in &keys {
        c.set(k, b"v1").await;
        assert_hit(&c.get(k).await, b"v1");
    }
    assert!(
        m2.raw("mg :p@generation v\r\n", "\r\n").starts_with("VA"),
        "generation restored on the restarted server"
    );
    // A complete flush now succeeds.
    assert!(flush(&c).await.expect("flush"));
    for k in &keys {
        assert_miss(&c.get(k).await);
    }
}

#[tokio::test]
async fn flush_under_debug_modes() {
    use sha2::{Digest, Sha256};
    const ADMIN: &str = "flush-admin-token";
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.auth.admin_token_sha256 = vec![hex::encode(Sha256::digest(ADMIN.as_bytes()))];
    let server = TestServer::start(cfg).await;
    let c = Calls::new(server.client().await);
    c.set(b"k", b"v").await;
    let debug_flush = |mode: &'static str| {
        let mut client = c.client.clone();
        async move {
            let mut request = tonic::Request::new(FlushRequest {});
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {ADMIN}").parse().expect("ascii"),
            );
            request
                .metadata_mut()
                .insert("x-cache-debug", mode.parse().expect("ascii"));
            client.flush(request).await
        }
    };
    let r = debug_flush("off").await.expect("flush");
    assert!(!r.get_ref().flushed, "debug off does not flush");
    assert_hit(&c.get(b"k").await, b"v");
    let r = debug_flush("write-only").await.expect("flush");
    assert!(r.get_ref().flushed);
    assert_miss(&c.get(b"k").await);
    // Non-admins may not use debug modes for Flush either.
    let mut request = tonic::Request::new(FlushRequest {});
    request
        .metadata_mut()
        .insert("x-cache-debug", "off".parse().expect("ascii"));
    let e = c.client.clone().flush(request).await.expect_err("refused");
    assert_eq!(e.code(), Code::PermissionDenied);
}
