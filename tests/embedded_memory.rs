//! The embedded store's memory end to end, on the real server binary over gRPC: filled far past
//! `embedded.max_bytes` with small values, the process's resident memory stays near the budget
//! (a bound on memory, read from `/proc/PID/status`), and a value just stored is readable however
//! full the store is (LRU eviction, as memcached: nothing just admitted is turned away).

mod harness;

use harness::calls::{Calls, assert_hit, item};
use harness::{ServerProcess, sample, wait_for_or};
use mintcache_client::proto::Outcome;

/// Items per `SetMany` call when filling.
const BATCH: usize = 1000;

/// Stores `count` values of `value_len` bytes under `<prefix>:<n>`, `BATCH` per call; each
/// must be stored.
async fn fill(c: &Calls, prefix: &str, count: usize, value_len: usize) {
    let value = vec![b'v'; value_len];
    for start in (0..count).step_by(BATCH) {
        let items = (start..count.min(start + BATCH))
            .map(|n| item(format!("{prefix}:{n}").as_bytes(), &value))
            .collect();
        let results = c.set_many(items).await;
        assert!(
            results.iter().all(|r| r.stored && r.error.is_none()),
            "every value is stored: {:?}",
            results.iter().find(|r| !r.stored)
        );
    }
}

/// The server's metrics.
async fn metrics(server: &ServerProcess) -> String {
    server.admin_get("/metrics").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_near_the_budget_when_filled_far_past_it() {
    const BUDGET: u64 = 16 << 20;
    /// How far the server's resident memory may grow over its idle size, filled, as a multiple
    /// of the budget: the entries themselves are weighed at their real cost (measured: 0.9 to
    /// 1.0 times the budget), and the rest is the allocator's and the calls' own.
    const FACTOR: f64 = 1.5;
    /// Entries written: about 7 times as many as the budget holds (each costs ~600 bytes).
    const ENTRIES: usize = 200_000;
    let server = ServerProcess::start(&[("MINTCACHE_EMBEDDED__MAX_BYTES", BUDGET.to_string())]);
    let c = Calls::new(server.client().await);
    // The server's idle size, once the call path has run.
    fill(&c, "warm-up", 2 * BATCH, 16).await;
    let idle = server.rss_bytes();

    fill(&c, "key", ENTRIES, 16).await;
    let filled = server.rss_bytes();
    let m = metrics(&server).await;
    let held = sample(&m, "mintcache_embedded_entries");
    let size = sample(&m, "mintcache_embedded_size_bytes");
    eprintln!(
        "budget {} MiB: resident {} MiB idle, {} MiB after {ENTRIES} entries; {held} held, \
         weighing {size} bytes",
        BUDGET >> 20,
        idle >> 20,
        filled >> 20
    );
    let grown = filled.saturating_sub(idle);
    assert!(
        (grown as f64) <= FACTOR * BUDGET as f64,
        "resident memory grew by {} MiB for a {} MiB budget (allowed: {FACTOR}x)",
        grown >> 20,
        BUDGET >> 20
    );
    assert!(
        held > 0.0 && held * 5.0 < ENTRIES as f64,
        "the store was filled far past its budget: {held} of {ENTRIES} entries held"
    );
    assert!(
        size <= BUDGET as f64,
        "{size} bytes weighed, over the budget"
    );
    // The oldest entries made room; the newest are there.
    assert_eq!(c.get(b"key:0").await.outcome(), Outcome::Miss);
    let last = format!("key:{}", ENTRIES - 1);
    assert_hit(&c.get(last.as_bytes()).await, &[b'v'; 16]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_just_stored_is_readable_when_the_store_is_full() {
    // The smallest budget there is: about 1,700 small entries.
    const BUDGET: u64 = 1 << 20;
    let server = ServerProcess::start(&[("MINTCACHE_EMBEDDED__MAX_BYTES", BUDGET.to_string())]);
    let c = Calls::new(server.client().await);
    fill(&c, "filler", 20_000, 16).await;
    wait_for_or(
        "the store to be full",
        || async {
            sample(&metrics(&server).await, "mintcache_embedded_size_bytes") > 0.9 * BUDGET as f64
        },
        || metrics(&server),
    )
    .await;

    // Each fresh value reads back at once.
    for n in 0..200 {
        let key = format!("fresh:{n}");
        let value = format!("value {n}");
        c.set(key.as_bytes(), value.as_bytes()).await;
        assert_hit(&c.get(key.as_bytes()).await, value.as_bytes());
    }
    // 200 values stored in a row, then more filler (a third of the budget) on top: all 200
    // are still there, since only the least recently used entries make room.
    for n in 0..200 {
        c.set(
            format!("batch:{n}").as_bytes(),
            format!("value {n}").as_bytes(),
        )
        .await;
    }
    fill(&c, "more-filler", 500, 16).await;
    for n in 0..200 {
        assert_hit(
            &c.get(format!("batch:{n}").as_bytes()).await,
            format!("value {n}").as_bytes(),
        );
    }
    // What made room was the old filler.
    assert_eq!(c.get(b"filler:0").await.outcome(), Outcome::Miss);
}
