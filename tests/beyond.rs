//! Early refresh, waiting on a fill without polling, and the hot-key cache, end to end: real
//! memcached processes, real servers (two replicas where it matters), real gRPC clients.

mod harness;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use harness::calls::{Calls, assert_hit};
use harness::{Memcached, TestServer, config, req};
use mintcache_client::proto::cache_client::CacheClient;
use mintcache_client::proto::{
    AddRequest, DeleteRequest, GetRequest, GetResponse, Outcome, SetRequest,
};
use tonic::Code;
use tonic::transport::Channel;

/// A read with options.
async fn get(client: &CacheClient<Channel>, request: GetRequest) -> GetResponse {
    client
        .clone()
        .get(req(request, None, None))
        .await
        .expect("get")
        .into_inner()
}

fn read(key: &[u8]) -> GetRequest {
    GetRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

/// A value whose last recomputation took 100 s, fresh for 60 s: each read of it asks to
/// refresh early with probability e^(-60/100) = 55%. Over 50 reads exactly one is told
/// `REFRESH`, with the still-fresh value; every other read is a `HIT`. With β = 0 for the call,
/// none is.
async fn early_refresh_elects_one_reader_before_the_soft_expiry(cfg: mintcache::config::Config) {
    let server = TestServer::start(cfg).await;
    let client = server.client().await;
    let c = Calls::new(client.clone());
    let set = SetRequest {
        key: b"k".to_vec(),
        value: b"v1".to_vec(),
        ttl_seconds: 60,
        grace_seconds: 30,
        recompute_ms: 100_000,
        ..Default::default()
    };
    assert!(c.try_set_with(set).await.expect("set"));
    let off = get(
        &client,
        GetRequest {
            early_refresh_beta: Some(0.0),
            ..read(b"k")
        },
    )
    .await;
    assert_eq!(off.outcome(), Outcome::Hit, "β = 0: no early refresh");
    let mut refreshes = Vec::new();
    for _ in 0..50 {
        let r = get(&client, read(b"k")).await;
        match r.outcome() {
            Outcome::Hit => assert_eq!(r.value, b"v1"),
            Outcome::Refresh => refreshes.push(r),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refreshes.len(), 1, "one early refresher");
    let refresh = refreshes.remove(0);
    assert_eq!(refresh.value, b"v1");
    assert!(
        refresh.ttl_seconds > 50,
        "still fresh: {}",
        refresh.ttl_seconds
    );
    assert_eq!(refresh.lease_token.len(), 25, "a timed lease");
    // The winner stores with its lease; the value is fresh again, its recomputation measured.
    let renewed = SetRequest {
        key: b"k".to_vec(),
        value: b"v2".to_vec(),
        ttl_seconds: 60,
        grace_seconds: 30,
        lease_token: refresh.lease_token,
        ..Default::default()
    };
    assert!(c.try_set_with(renewed).await.expect("set"));
    assert_hit(&c.get(b"k").await, b"v2");
    // A β out of range is refused.
    let bad = client
        .clone()
        .get(req(
            GetRequest {
                early_refresh_beta: Some(f64::NAN),
                ..read(b"k")
            },
            None,
            None,
        ))
        .await
        .expect_err("refused");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn early_refresh_on_memcached() {
    let mc = Memcached::start();
    early_refresh_elects_one_reader_before_the_soft_expiry(config(&[&mc])).await;
}

#[tokio::test]
async fn early_refresh_on_the_embedded_store() {
    early_refresh_elects_one_reader_before_the_soft_expiry(config(&[])).await;
}

/// Readers of a cold key on two replicas, waiting with `wait_ms`: one fills, every other
/// reader gets the value in its one call (no polling on the client side), whichever replica
/// it asked.
#[tokio::test]
async fn waiting_readers_get_the_fill_on_both_replicas() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.lease_on_miss = true;
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    let (ca, cb) = (a.client().await, b.client().await);
    let filler = get(&ca, read(b"cold")).await;
    assert_eq!(filler.outcome(), Outcome::Miss);
    let waiting = GetRequest {
        wait_ms: 5_000,
        ..read(b"cold")
    };
    let waiters = (0..40).map(|i| {
        let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let request = waiting.clone();
        async move {
            let started = Instant::now();
            (get(&client, request).await, started.elapsed())
        }
    });
    let fill = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let set = SetRequest {
            key: b"cold".to_vec(),
            value: b"filled".to_vec(),
            ttl_seconds: 60,
            lease_token: filler.lease_token.clone(),
            ..Default::default()
        };
        Calls::new(ca.clone())
            .try_set_with(set)
            .await
            .expect("fill")
    };
    let (answers, stored) = tokio::join!(join_all(waiters), fill);
    assert!(stored);
    for (answer, waited) in answers {
        assert_eq!(answer.outcome(), Outcome::Hit, "waited {waited:?}");
        assert_eq!(answer.value, b"filled");
    }
}

/// A filler that gives up releases its lease (Delete with it): exactly one waiter is elected
/// to fill instead (`MISS` with a lease), the others keep waiting and get its value. A fill
/// that never happens is never answered as a value.
#[tokio::test]
async fn a_filler_that_gives_up_passes_the_fill_to_one_waiter() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.lease_on_miss = true;
    cfg.cache.fill_timeout_seconds = 60;
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    let (ca, cb) = (a.client().await, b.client().await);
    let filler = get(&ca, read(b"cold")).await;
    assert_eq!(filler.outcome(), Outcome::Miss);
    let waiting = GetRequest {
        wait_ms: 10_000,
        ..read(b"cold")
    };
    // Each waiter fills when it is the one elected, as `get_or_compute` does.
    let waiters: Vec<_> = (0..10)
        .map(|i| {
            let client = if i % 2 == 0 { ca.clone() } else { cb.clone() };
            let request = waiting.clone();
            tokio::spawn(async move {
                let answer = get(&client, request).await;
                if answer.outcome() == Outcome::Miss {
                    assert!(!answer.lease_token.is_empty());
                    let set = SetRequest {
                        key: b"cold".to_vec(),
                        value: b"second".to_vec(),
                        ttl_seconds: 60,
                        lease_token: answer.lease_token.clone(),
                        ..Default::default()
                    };
                    assert!(Calls::new(client).try_set_with(set).await.expect("fill"));
                }
                answer
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The filler fails and gives its lease back.
    let released = ca
        .clone()
        .delete(req(
            DeleteRequest {
                key: b"cold".to_vec(),
                lease_token: filler.lease_token.clone(),
            },
            None,
            None,
        ))
        .await
        .expect("delete")
        .into_inner();
    assert!(released.deleted);
    let mut answers = Vec::new();
    for task in waiters {
        answers.push(task.await.expect("task"));
    }
    let misses = answers
        .iter()
        .filter(|a| a.outcome() == Outcome::Miss)
        .count();
    assert_eq!(misses, 1, "one waiter fills instead");
    for a in answers.iter().filter(|a| a.outcome() != Outcome::Miss) {
        assert_eq!(a.outcome(), Outcome::Hit);
        assert_eq!(a.value, b"second");
    }
}

/// A waiting read answers `PENDING` when its wait (or its deadline) runs out first.
#[tokio::test]
async fn a_wait_ends_with_pending() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.cache.lease_on_miss = true;
    let server = TestServer::start(cfg).await;
    let client = server.client().await;
    assert_eq!(get(&client, read(b"cold")).await.outcome(), Outcome::Miss);
    let started = Instant::now();
    let waited = get(
        &client,
        GetRequest {
            wait_ms: 300,
            ..read(b"cold")
        },
    )
    .await;
    assert_eq!(waited.outcome(), Outcome::Pending);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Within a shorter deadline the wait is cut, and the answer is still PENDING, not
    // DEADLINE_EXCEEDED.
    let mut request = req(
        GetRequest {
            wait_ms: 10_000,
            ..read(b"cold")
        },
        None,
        None,
    );
    request.set_timeout(Duration::from_millis(400));
    let cut = client.clone().get(request).await.expect("answered");
    assert_eq!(cut.into_inner().outcome(), Outcome::Pending);
}

/// `Add` hands back a lease, and `Delete` with it removes only what that `Add` stored: a lock
/// released only by its holder.
#[tokio::test]
async fn a_lock_is_released_only_by_its_holder() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let client = server.client().await;
    let add = |value: &'static [u8]| {
        let mut client = client.clone();
        async move {
            client
                .add(req(
                    AddRequest {
                        key: b"lock".to_vec(),
                        value: value.to_vec(),
                        ttl_seconds: 30,
                        no_grace: true,
                        ..Default::default()
                    },
                    None,
                    None,
                ))
                .await
                .expect("add")
                .into_inner()
        }
    };
    let delete = |lease: Vec<u8>| {
        let mut client = client.clone();
        async move {
            client
                .delete(req(
                    DeleteRequest {
                        key: b"lock".to_vec(),
                        lease_token: lease,
                    },
                    None,
                    None,
                ))
                .await
                .expect("delete")
                .into_inner()
                .deleted
        }
    };
    let first = add(b"holder-1").await;
    assert!(first.stored);
    assert!(!first.lease_token.is_empty());
    let second = add(b"holder-2").await;
    assert!(!second.stored && second.lease_token.is_empty());
    // The lock expired and was taken by another holder meanwhile (simulated by a delete and
    // a new add): the first holder's release does not remove the second's lock.
    assert!(delete(Vec::new()).await);
    let third = add(b"holder-3").await;
    assert!(third.stored);
    assert!(!delete(first.lease_token.clone()).await, "not its lock");
    assert!(delete(third.lease_token.clone()).await, "its own lock");
    assert!(add(b"holder-4").await.stored);
}

/// The hot-key cache: a key read again and again is answered from the replica's memory
/// (memcached sees far fewer reads), a write through the replica is seen at once, a write
/// through another replica within `hot_cache.max_staleness_ms`, and `x-cache-consistency:
/// strong` always asks memcached.
#[tokio::test]
async fn hot_keys_are_served_by_the_replica_within_the_bound() {
    let mc = Memcached::start();
    let mut cfg = config(&[&mc]);
    cfg.hot_cache.max_staleness_ms = 400;
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    let (ca, cb) = (Calls::new(a.client().await), Calls::new(b.client().await));
    let gets = || -> u64 { mc.stats()["cmd_get"].parse().expect("cmd_get") };
    ca.set(b"viral", b"v1").await;
    // Two reads make it hot in memcached's eyes (read before, read lately); the next read by
    // this replica within a second keeps its copy.
    assert_hit(&ca.get(b"viral").await, b"v1");
    assert_hit(&ca.get(b"viral").await, b"v1");
    let before = gets();
    for _ in 0..200 {
        assert_hit(&ca.get(b"viral").await, b"v1");
    }
    let read_by_memcached = gets() - before;
    assert!(
        read_by_memcached <= 20,
        "memcached read the key {read_by_memcached} times for 200 reads"
    );
    let (_, metrics) = a.admin_get("/metrics").await;
    assert!(
        harness::sample(&metrics, "mintcache_hot_cache_hits_total") >= 180.0,
        "{metrics}"
    );
    // The key stays hot once memcached's access time of it ages: memcached refreshes it at most
    // once a minute, so seconds after the last refresh its `l` flag says 1, 2, ... although the
    // key is read all the time. The wait is memcached's whole-second clock, which no test can
    // move.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = gets();
    for _ in 0..200 {
        assert_hit(&ca.get(b"viral").await, b"v1");
    }
    let read_by_memcached = gets() - before;
    assert!(
        read_by_memcached <= 20,
        "memcached read the key {read_by_memcached} times for 200 reads, 2 s after it was set"
    );
    // A write through this replica is seen at once.
    ca.set(b"viral", b"v2").await;
    assert_hit(&ca.get(b"viral").await, b"v2");
    assert_hit(&ca.get(b"viral").await, b"v2");
    // A write through the other replica is seen within the bound.
    cb.set(b"viral", b"v3").await;
    let written = Instant::now();
    loop {
        let r = ca.get(b"viral").await;
        if r.value == b"v3" {
            break;
        }
        assert_eq!(r.value, b"v2");
        assert!(
            written.elapsed() < Duration::from_millis(400 + 200),
            "still the old value after {:?}",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Strong reads always ask memcached.
    let before = gets();
    let strong = ca.clone().consistency("strong");
    for _ in 0..10 {
        assert_hit(&strong.get(b"viral").await, b"v3");
    }
    assert_eq!(gets() - before, 10);
}
