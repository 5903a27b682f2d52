//! `Client::get_or_compute` end to end: concurrent callers of a stale key compute it exactly
//! once per stale period and all get the stale or the new value, whether the key went stale by
//! expiring (on the embedded store, whose clock the test moves) or by an invalidation seen by
//! two server processes sharing memcached; cold misses with leases compute once; PENDING that
//! outlasts the backoff computes anyway; outdated leases and compute errors.

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use harness::{Memcached, ServerProcess, TestServer, config};
use mintcache::clock::ManualClock;
use mintcache_client::{Backoff, Client, Error, Outcome, SetOptions};

const CALLERS: usize = 50;
const ROUNDS: usize = 4;
const COMPUTE_TIME: Duration = Duration::from_millis(50);

fn client(addr: std::net::SocketAddr) -> Client {
    Client::builder()
        .endpoint(format!("http://{addr}"))
        .version("client-mint")
        // Generous PENDING patience: callers must wait for the filler, not compute themselves.
        .pending(Backoff {
            max_attempts: 100,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
        .build()
        .expect("build")
}

/// `CALLERS` concurrent `get_or_compute` calls alternating between two clients; returns the
/// values they got. `computed` counts compute invocations.
async fn stampede(
    clients: [&Client; 2],
    key: &str,
    new_value: &str,
    computed: &Arc<AtomicUsize>,
) -> Vec<Vec<u8>> {
    let calls = (0..CALLERS).map(|i| {
        let computed = Arc::clone(computed);
        let value = new_value.as_bytes().to_vec();
        clients[i % 2].get_or_compute(key, Duration::from_secs(300), move || async move {
            computed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(COMPUTE_TIME).await;
            Ok::<_, std::io::Error>(value)
        })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("get_or_compute"))
        .collect()
}

/// Stampedes of `a` and `b` on each key, stale with the value `old`: one caller computes, all
/// get `old` or the new value, which is then a fresh hit that computes nothing.
async fn one_computation_per_stale_key(a: &Client, b: &Client, keys: &[String]) {
    for (round, key) in keys.iter().enumerate() {
        let computed = Arc::new(AtomicUsize::new(0));
        let new = format!("new:{round}");
        let values = stampede([a, b], key, &new, &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 1, "round {round}");
        assert!(
            values.iter().all(|v| v == b"old" || v == new.as_bytes()),
            "round {round}: {values:?}"
        );
        // The computing caller got its own value; the new value is now a fresh hit.
        assert!(values.iter().any(|v| v == new.as_bytes()), "round {round}");
        let after = b.get(key.as_str()).await.expect("get");
        assert_eq!(
            (after.outcome, after.value),
            (Outcome::Hit, new.into_bytes())
        );
        // Fresh now: another stampede computes nothing.
        let values = stampede([a, b], key, "unused", &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 1, "round {round}");
        assert!(values.iter().all(|v| v.starts_with(b"new:")));
    }
}

fn round_keys(prefix: &str) -> Vec<String> {
    (0..ROUNDS).map(|i| format!("{prefix}:{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_computation_per_soft_expiry() {
    let clock = ManualClock::new();
    let server = TestServer::start_with_clock(config(&[]), clock.clone().into()).await;
    let (a, b) = (client(server.addr), client(server.addr));
    let keys = round_keys("expiring");
    let soon_stale = SetOptions {
        grace: Duration::from_secs(300),
        ..SetOptions::ttl(Duration::from_secs(1))
    };
    for key in &keys {
        assert!(
            a.set_with(key.as_str(), "old", &soon_stale)
                .await
                .expect("set")
        );
    }
    clock.advance(Duration::from_secs(2));
    one_computation_per_stale_key(&a, &b, &keys).await;
}

/// Fleet-wide: the callers alternate between two server processes over one memcached. The
/// keys go stale by invalidation, which needs no wait on memcached's clock (soft expiry over
/// memcached across two servers is tests/mint.rs's `two_servers_over_memcached`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_computation_per_stale_period_across_two_servers() {
    let mc = Memcached::start();
    let env = [("MINTCACHE_MEMCACHED__SERVERS", mc.addr())];
    let (a, b) = (ServerProcess::start(&env), ServerProcess::start(&env));
    let (a, b) = (client(a.addr), client(b.addr));
    let keys = round_keys("invalidated");
    for key in &keys {
        let set = a.set(key.as_str(), "old", Duration::from_secs(300));
        assert!(set.await.expect("set"));
        assert!(a.invalidate(key.as_str()).await.expect("invalidate"));
    }
    one_computation_per_stale_key(&a, &b, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_key_is_recomputed_once_and_its_lease_protects_the_write() {
    let server = TestServer::start(config(&[])).await;
    let c = client(server.addr);
    assert!(
        c.set("page", "v1", Duration::from_secs(300))
            .await
            .expect("set")
    );
    for round in 2..=4 {
        assert!(c.invalidate("page").await.expect("invalidate"));
        let computed = Arc::new(AtomicUsize::new(0));
        let new = format!("v{round}");
        let values = stampede([&c, &c], "page", &new, &computed).await;
        assert_eq!(computed.load(Ordering::SeqCst), 1, "round {round}");
        let previous = format!("v{}", round - 1);
        assert!(
            values
                .iter()
                .all(|v| v == previous.as_bytes() || v == new.as_bytes()),
            "round {round}: {values:?}"
        );
        assert_eq!(c.get("page").await.expect("get").value, new.as_bytes());
    }

    // A value computed before an invalidation is returned to its caller but not stored.
    assert!(c.invalidate("page").await.expect("invalidate"));
    let other = c.clone();
    let value = c
        .get_or_compute("page", Duration::from_secs(300), || async move {
            // Someone invalidates the key while this caller computes.
            other
                .invalidate("page")
                .await
                .map(|_| b"computed too early".to_vec())
        })
        .await
        .expect("get_or_compute");
    assert_eq!(value, b"computed too early");
    let read = c.get("page").await.expect("get");
    assert_eq!(
        (read.outcome, read.value.as_slice()),
        (Outcome::Refresh, &b"v4"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_miss_with_leases_is_computed_once() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let c = client(server.addr).with_lease_on_miss(true);
    let computed = Arc::new(AtomicUsize::new(0));
    let values = stampede([&c, &c], "cold", "filled", &computed).await;
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert!(values.iter().all(|v| v == b"filled"), "{values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_that_outlasts_the_backoff_is_computed_by_the_caller() {
    let server = TestServer::start(config(&[])).await;
    let c = client(server.addr).with_lease_on_miss(true);
    // Another caller took the fill lease and never sets the value (it holds it for
    // `cache.fill_timeout_seconds`, 5 s by default).
    assert_eq!(c.get("stuck").await.expect("get").outcome, Outcome::Miss);
    assert_eq!(c.get("stuck").await.expect("get").outcome, Outcome::Pending);
    let impatient = Client::builder()
        .endpoint(format!("http://{}", server.addr))
        .version("client-mint")
        .lease_on_miss(true)
        .pending(Backoff {
            max_attempts: 3,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
        })
        .build()
        .expect("build");
    let value = impatient
        .get_or_compute("stuck", Duration::from_secs(60), || async {
            Ok::<_, std::io::Error>(b"mine".to_vec())
        })
        .await
        .expect("gave up waiting and computed");
    assert_eq!(value, b"mine");
    // Stored without a lease (the filler's lease is not the caller's).
    let read = c.get("stuck").await.expect("get");
    assert_eq!(
        (read.outcome, read.value.as_slice()),
        (Outcome::Hit, &b"mine"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_errors_are_returned_and_nothing_is_stored() {
    let server = TestServer::start(config(&[])).await;
    let c = client(server.addr);
    let e = c
        .get_or_compute("broken", Duration::from_secs(60), || async {
            Err::<Vec<u8>, _>(std::io::Error::other("database down"))
        })
        .await
        .expect_err("compute failed");
    assert!(matches!(e, Error::Compute(_)), "{e:?}");
    assert_eq!(e.to_string(), "computing the value failed: database down");
    assert_eq!(c.get("broken").await.expect("get").outcome, Outcome::Miss);

    // A hit never calls compute.
    assert!(
        c.set("ok", "cached", Duration::from_secs(60))
            .await
            .expect("set")
    );
    let value = c
        .get_or_compute("ok", Duration::from_secs(60), || async {
            Err::<Vec<u8>, _>(std::io::Error::other("must not run"))
        })
        .await
        .expect("hit");
    assert_eq!(value, b"cached");
}

/// Callers of a cold key through two servers wait for the fill in the server: one computes,
/// every other caller gets its value from the one read the server held for it (no polling:
/// at most two reads per caller, the first and the waiting one).
#[tokio::test]
async fn waiting_callers_get_the_fill_without_polling() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.lease_on_miss = true;
    let (s1, s2) = (
        TestServer::start(cfg.clone()).await,
        TestServer::start(cfg).await,
    );
    // No polling at all: a server that answered PENDING at once would make callers compute.
    let waiting = |addr| {
        Client::builder()
            .endpoint(format!("http://{addr}"))
            .version("client-mint")
            .pending(Backoff::NONE)
            .build()
            .expect("build")
    };
    let (a, b) = (waiting(s1.addr), waiting(s2.addr));
    let gets = |metrics: &str| {
        harness::sample_sum(metrics, "mintcache_rpc_requests_total{", "rpc=\"Get\"")
    };
    let before = gets(&s1.admin_get("/metrics").await.1) + gets(&s2.admin_get("/metrics").await.1);
    let computed = Arc::new(AtomicUsize::new(0));
    let values = stampede([&a, &b], "cold-wait", "filled", &computed).await;
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert!(values.iter().all(|v| v == b"filled"), "{values:?}");
    let after = gets(&s1.admin_get("/metrics").await.1) + gets(&s2.admin_get("/metrics").await.1);
    let reads = after - before;
    assert!(
        reads <= (2 * CALLERS) as f64,
        "{reads} reads for {CALLERS} callers: someone polled"
    );
}

/// A computation that fails after a cold `MISS` gives the fill up at once: one of the callers
/// waiting for it computes instead, the failure is returned to its own caller only, and no
/// failed value is ever stored.
#[tokio::test]
async fn a_failed_fill_is_handed_to_one_waiter() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.lease_on_miss = true;
    cfg.cache.fill_timeout_seconds = 60;
    let server = TestServer::start(cfg).await;
    let c = client(server.addr);
    let attempts = Arc::new(AtomicUsize::new(0));
    let calls = (0..10).map(|_| {
        let attempts = Arc::clone(&attempts);
        c.get_or_compute("flaky", Duration::from_secs(300), move || async move {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(COMPUTE_TIME).await;
            if attempt == 0 {
                Err(std::io::Error::other("the database is down"))
            } else {
                Ok(b"recovered".to_vec())
            }
        })
    });
    let results = join_all(calls).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "the failed fill and one more"
    );
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 1);
    for r in results.iter().filter_map(|r| r.as_ref().ok()) {
        assert_eq!(r, b"recovered");
    }
    let stored = c.get("flaky").await.expect("get");
    assert_eq!(
        (stored.outcome, stored.value),
        (Outcome::Hit, b"recovered".to_vec())
    );
}
