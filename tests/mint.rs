//! The mint protocol end to end: exactly one refresher per stale period across server
//! processes, invalidation, cold-miss leases, stale-set protection, ttl and grace boundaries.
//! Each case runs against two server processes sharing a memcached pool, and against one
//! server on the embedded store, whose clock the test moves instead of sleeping.

mod harness;

use std::time::Duration;

use futures_util::future::join_all;
use harness::calls::{Calls, assert_hit, assert_miss};
use harness::{Memcached, ServerProcess, TestServer, config};
use mintcache::clock::ManualClock;
use mintcache_client::proto::{GetRequest, GetResponse, InvalidateRequest, Outcome, SetRequest};

const READERS: usize = 200;
const ROUNDS: usize = 20;

/// How time passes for the store.
enum Time {
    /// memcached's own clock: the test waits for it.
    Wall,
    /// The embedded store's manual clock: the test moves it.
    Manual(ManualClock),
}

/// Two clients: on two server processes (memcached) or on the same server (embedded).
struct Pair {
    a: Calls,
    b: Calls,
    time: Time,
}

impl Pair {
    /// Lets `span` pass for the store.
    async fn pass(&self, span: Duration) {
        match &self.time {
            // memcached's clock is its own and counts whole seconds: no test can move it, so
            // the memcached run waits in real time (the embedded run below does not wait).
            Time::Wall => tokio::time::sleep(span).await,
            Time::Manual(clock) => clock.advance(span),
        }
    }

    /// `READERS` concurrent reads, alternating between the two servers.
    async fn stampede(&self, key: &[u8], lease_on_miss: bool) -> Vec<GetResponse> {
        let reads = (0..READERS).map(|i| {
            let c = if i % 2 == 0 { &self.a } else { &self.b };
            let mut client = c.client.clone();
            let request = harness::req(
                GetRequest {
                    peek: false,
                    key: key.to_vec(),
                    lease_on_miss: Some(lease_on_miss),
                    ..Default::default()
                },
                c.version.as_deref(),
                None,
            );
            async move { client.get(request).await.expect("get").into_inner() }
        });
        join_all(reads).await
    }
}

fn count(rs: &[GetResponse], o: Outcome) -> usize {
    rs.iter().filter(|r| r.outcome() == o).count()
}

fn winner(rs: &[GetResponse], o: Outcome) -> &GetResponse {
    rs.iter().find(|r| r.outcome() == o).expect("a winner")
}

async fn set_with(
    c: &Calls,
    key: &[u8],
    value: &[u8],
    ttl: i64,
    grace: i64,
    lease: Vec<u8>,
) -> bool {
    c.try_set_with(SetRequest {
        counter: false,
        no_expiry: false,
        no_grace: false,
        key: key.to_vec(),
        value: value.to_vec(),
        ttl_seconds: ttl,
        grace_seconds: grace,
        flags: 0,
        lease_token: lease,
        ..Default::default()
    })
    .await
    .expect("set")
}

async fn invalidate(c: &Calls, key: &[u8]) -> bool {
    let request = harness::req(
        InvalidateRequest { key: key.to_vec() },
        c.version.as_deref(),
        None,
    );
    c.client
        .clone()
        .invalidate(request)
        .await
        .expect("invalidate")
        .into_inner()
        .invalidated
}

/// Past its soft expiry, one reader in 200 (across both servers) refreshes; the others get
/// the stale value; the winner's set makes it a hit again. 20 times.
async fn soft_expiry_stampede(p: &Pair) {
    let keys: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|i| format!("expiring:{i}").into_bytes())
        .collect();
    for key in &keys {
        assert!(set_with(&p.a, key, b"old", 1, 300, Vec::new()).await);
    }
    // memcached counts whole seconds: after two ticks, 1 fresh second is certainly gone.
    p.pass(Duration::from_millis(2500)).await;
    for key in &keys {
        let rs = p.stampede(key, false).await;
        assert_eq!(
            (count(&rs, Outcome::Refresh), count(&rs, Outcome::Stale)),
            (1, READERS - 1),
            "round {key:?}"
        );
        assert!(rs.iter().all(|r| r.value == b"old" && r.ttl_seconds == 0));
        let w = winner(&rs, Outcome::Refresh);
        assert!(!w.lease_token.is_empty());
        assert!(set_with(&p.b, key, b"new", 300, 30, w.lease_token.clone()).await);
        let rs = p.stampede(key, false).await;
        assert_eq!(count(&rs, Outcome::Hit), READERS);
        assert!(rs.iter().all(|r| r.value == b"new"));
    }
}

/// After an invalidation, one reader in 200 refreshes; 20 times.
async fn invalidation_stampede(p: &Pair) {
    let key = b"invalidated";
    assert!(set_with(&p.a, key, b"v0", 300, 30, Vec::new()).await);
    for round in 1..=ROUNDS {
        assert!(invalidate(&p.b, key).await);
        let rs = p.stampede(key, false).await;
        assert_eq!(
            (count(&rs, Outcome::Refresh), count(&rs, Outcome::Stale)),
            (1, READERS - 1),
            "round {round}"
        );
        let old = format!("v{}", round - 1);
        assert!(
            rs.iter().all(|r| r.value == old.as_bytes()),
            "stale value served"
        );
        let w = winner(&rs, Outcome::Refresh);
        let new = format!("v{round}");
        assert!(set_with(&p.a, key, new.as_bytes(), 300, 30, w.lease_token.clone()).await);
        assert_hit(&p.b.get(key).await, new.as_bytes());
    }
    assert!(!invalidate(&p.a, b"never-set").await);
}

/// Cold misses with cold-miss protection: one MISS, the rest PENDING, until the fill.
async fn cold_miss_stampede(p: &Pair) {
    for round in 0..ROUNDS {
        let key = format!("cold:{round}").into_bytes();
        let rs = p.stampede(&key, true).await;
        assert_eq!(
            (count(&rs, Outcome::Miss), count(&rs, Outcome::Pending)),
            (1, READERS - 1),
            "round {round}"
        );
        let w = winner(&rs, Outcome::Miss);
        assert!(!w.lease_token.is_empty());
        assert!(set_with(&p.b, &key, b"filled", 300, 30, w.lease_token.clone()).await);
        let rs = p.stampede(&key, true).await;
        assert_eq!(count(&rs, Outcome::Hit), READERS);
    }
    // Without protection every caller just misses.
    let rs = p.stampede(b"cold:unprotected", false).await;
    assert_eq!(count(&rs, Outcome::Miss), READERS);
}

/// A value computed before an invalidation (or any other write) never becomes fresh.
async fn stale_sets_are_refused(p: &Pair) {
    let key = b"leased";
    assert!(set_with(&p.a, key, b"v1", 300, 30, Vec::new()).await);
    assert!(invalidate(&p.a, key).await);
    let first = p.a.get(key).await;
    assert_eq!(first.outcome(), Outcome::Refresh);
    // Invalidated again while the first refresher computes.
    assert!(invalidate(&p.b, key).await);
    assert!(
        !set_with(
            &p.a,
            key,
            b"computed too early",
            300,
            30,
            first.lease_token.clone()
        )
        .await
    );
    let second = p.b.get(key).await;
    assert_eq!(second.outcome(), Outcome::Refresh, "the election re-opened");
    assert_eq!(second.value, b"v1");
    assert!(set_with(&p.b, key, b"v2", 300, 30, second.lease_token.clone()).await);
    assert_hit(&p.a.get(key).await, b"v2");
    // The old token stays useless.
    assert!(!set_with(&p.a, key, b"late", 300, 30, first.lease_token).await);
    assert_hit(&p.a.get(key).await, b"v2");

    // A plain miss hands out a token that refuses to overwrite a value stored since.
    let miss = p.a.get(b"raced").await;
    assert_eq!(miss.outcome(), Outcome::Miss);
    assert!(set_with(&p.b, b"raced", b"fresher", 300, 30, Vec::new()).await);
    assert!(!set_with(&p.a, b"raced", b"older", 300, 30, miss.lease_token.clone()).await);
    assert_hit(&p.a.get(b"raced").await, b"fresher");

    // A cold-miss lease dies with a delete of the placeholder.
    let mut client = p.a.client.clone();
    let cold = client
        .get(harness::req(
            GetRequest {
                peek: false,
                key: b"cold-leased".to_vec(),
                lease_on_miss: Some(true),
                ..Default::default()
            },
            p.a.version.as_deref(),
            None,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(cold.outcome(), Outcome::Miss);
    assert!(p.b.delete(b"cold-leased").await, "the placeholder is there");
    assert!(!set_with(&p.a, b"cold-leased", b"v", 300, 30, cold.lease_token).await);
}

/// Fresh for ttl, stale for grace, gone after both. memcached counts whole seconds and its
/// clock lags up to a second, so every check sits at least half a second from a boundary.
async fn ttl_and_grace_boundaries(p: &Pair) {
    let key = b"short-lived";
    assert!(set_with(&p.a, key, b"v", 3, 3, Vec::new()).await);
    let r = p.b.get(key).await;
    assert_hit(&r, b"v");
    assert!(
        (2..=3).contains(&r.ttl_seconds),
        "fresh ttl {}",
        r.ttl_seconds
    );
    p.pass(Duration::from_millis(4500)).await;
    let r = p.a.get(key).await;
    assert_eq!(r.outcome(), Outcome::Refresh, "within grace: {r:?}");
    assert_eq!(r.value, b"v");
    assert_eq!(p.b.get(key).await.outcome(), Outcome::Stale);
    p.pass(Duration::from_millis(3000)).await;
    assert_miss(&p.a.get(key).await);
}

async fn all_cases(p: Pair) {
    soft_expiry_stampede(&p).await;
    invalidation_stampede(&p).await;
    cold_miss_stampede(&p).await;
    stale_sets_are_refused(&p).await;
    ttl_and_grace_boundaries(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_over_memcached() {
    let nodes = [Memcached::start(), Memcached::start()];
    let servers = format!("{},{}", nodes[0].addr(), nodes[1].addr());
    let a = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", servers.clone())]);
    let b = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", servers)]);
    all_cases(Pair {
        a: Calls::new(a.client().await).version("mint"),
        b: Calls::new(b.client().await).version("mint"),
        time: Time::Wall,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store() {
    let clock = ManualClock::new();
    let server = TestServer::start_with_clock(config(&[]), clock.clone().into()).await;
    all_cases(Pair {
        a: Calls::new(server.client().await).version("mint"),
        b: Calls::new(server.client().await).version("mint"),
        time: Time::Manual(clock),
    })
    .await;
}
