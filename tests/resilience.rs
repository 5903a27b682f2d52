//! Failures and hostile conditions end to end: memcached restarts, per-item refusals, leases
//! across restarts, servers that are not memcached. Real memcached processes, killed and
//! restarted on their ports.

mod harness;

use std::time::{Duration, Instant};

use harness::calls::{Calls, assert_hit};
use harness::{Memcached, TestServer, config};
use mintcache_client::proto::{Outcome, SetRequest};

const PATIENCE: Duration = Duration::from_secs(10);

/// The CAS value a lease token carries (its last 8 bytes, in every token format).
fn lease_cas(token: &[u8]) -> u64 {
    let tail: [u8; 8] = token[token.len() - 8..].try_into().expect("8 bytes");
    u64::from_be_bytes(tail)
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
