//! The embedded store's memory end to end, on the real server binary over gRPC: filled far past
//! `embedded.max_bytes`, the process's resident memory stays near the budget (a bound on memory,
//! read from `/proc/PID/status`), and a value just stored is readable however full the store is
//! (LRU eviction, as memcached: nothing just admitted is turned away).

mod harness;

use std::time::{Duration, Instant};

use harness::calls::{Calls, assert_hit, item};
use harness::{ServerProcess, sample, wait_for_or};
use mintcache_client::proto::Outcome;

/// How far the server's resident memory may grow over its idle size, filled, as a multiple of
/// the budget, at most [`SETTLE`] after the last write. Measured: 0.87 to 1.09 times (before
/// the allocator handed freed pages back and values were weighed as allocated: up to 1.9
/// times, and it stayed there; docs/OPERATIONS.md, "Embedded store memory"); the rest is
/// margin for a busy machine.
const FACTOR: f64 = 1.15;

/// How long the allocator may take to hand back what was freed by the last writes: ten times
/// its decay time (100 ms, `.cargo/config.toml`). While writes stream in, pages freed in the
/// last moments are still resident (up to 1.4 times the budget with 64 KiB values, measured).
const SETTLE: Duration = Duration::from_secs(1);

/// Bytes of values per `SetMany` call when filling (at most 1,000 values).
const BATCH_BYTES: usize = 1 << 20;

/// The server's metrics.
async fn metrics(server: &ServerProcess) -> String {
    server.admin_get("/metrics").await.1
}

/// Fills a store of `budget` bytes with `written` times its budget of `value_len`-byte values,
/// `SetMany` after `SetMany` as fast as the server takes them, and checks the growth of the
/// server's resident memory against [`FACTOR`].
async fn fill_and_measure(budget: u64, value_len: usize, written: f64) {
    let server = ServerProcess::start(&[("MINTCACHE_EMBEDDED__MAX_BYTES", budget.to_string())]);
    let c = Calls::new(server.client().await);
    let per_call = (BATCH_BYTES / value_len).clamp(1, 1000);
    let value = vec![b'v'; value_len];
    let batch = |prefix: &str, start: usize, end: usize| {
        (start..end)
            .map(|n| item(format!("{prefix}:{n}").as_bytes(), &value))
            .collect::<Vec<_>>()
    };
    // The server's idle size, once the call path has run.
    for start in [0, per_call] {
        let results = c.set_many(batch("warm-up", start, start + per_call)).await;
        assert!(results.iter().all(|r| r.stored));
    }
    let idle = server.rss_bytes();

    let count = (written * budget as f64 / value_len as f64) as usize;
    for start in (0..count).step_by(per_call) {
        let results = c
            .set_many(batch("key", start, count.min(start + per_call)))
            .await;
        assert!(
            results.iter().all(|r| r.stored && r.error.is_none()),
            "every value is stored: {:?}",
            results.iter().find(|r| !r.stored)
        );
    }
    let filled = server.rss_bytes();
    let written_at = Instant::now();
    let growth = |rss: u64| rss.saturating_sub(idle) as f64 / budget as f64;
    // Resident memory once the allocator has handed back what the last writes freed: the
    // first reading within the bound, or the last one after SETTLE.
    let settled = loop {
        let rss = server.rss_bytes();
        if growth(rss) <= FACTOR || written_at.elapsed() >= SETTLE {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let m = metrics(&server).await;
    let held = sample(&m, "mintcache_embedded_entries");
    let size = sample(&m, "mintcache_embedded_size_bytes");
    eprintln!(
        "budget {} MiB, {value_len}-byte values, {count} written: resident {:.1} MiB idle; \
         grown {:.2}x the budget at the last write, {:.2}x {:?} later; {held} held, weighing \
         {size} bytes",
        budget >> 20,
        idle as f64 / 1048576.0,
        growth(filled),
        growth(settled),
        written_at.elapsed(),
    );
    assert!(
        growth(settled) <= FACTOR,
        "resident memory grew by {} MiB for a {} MiB budget, {SETTLE:?} after the last write \
         (allowed: {FACTOR}x)",
        settled.saturating_sub(idle) >> 20,
        budget >> 20
    );
    assert!(
        held > 0.0 && held < 0.9 * count as f64,
        "the store was filled past its budget: {held} of {count} entries held"
    );
    assert!(
        size <= budget as f64,
        "{size} bytes weighed, over the budget"
    );
    // The oldest entries made room; the newest are there.
    assert_eq!(c.get(b"key:0").await.outcome(), Outcome::Miss);
    let last = format!("key:{}", count - 1);
    assert_hit(&c.get(last.as_bytes()).await, &value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_near_the_budget_with_small_values() {
    // About 7 times what the budget holds (each entry costs ~650 bytes).
    fill_and_measure(16 << 20, 16, 7.0 * 16.0 / 650.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_near_the_budget_with_1_kib_values() {
    fill_and_measure(64 << 20, 1024, 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_near_the_budget_with_64_kib_values() {
    fill_and_measure(64 << 20, 64 * 1024, 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_just_stored_is_readable_when_the_store_is_full() {
    // The smallest budget there is: about 1,700 small entries.
    const BUDGET: u64 = 1 << 20;
    let server = ServerProcess::start(&[("MINTCACHE_EMBEDDED__MAX_BYTES", BUDGET.to_string())]);
    let c = Calls::new(server.client().await);
    let fill = async |prefix: &str, count: usize| {
        for start in (0..count).step_by(1000) {
            let items = (start..count.min(start + 1000))
                .map(|n| item(format!("{prefix}:{n}").as_bytes(), &[b'v'; 16]))
                .collect();
            let results = c.set_many(items).await;
            assert!(results.iter().all(|r| r.stored), "every value is stored");
        }
    };
    fill("filler", 20_000).await;
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
    fill("more-filler", 500).await;
    for n in 0..200 {
        assert_hit(
            &c.get(format!("batch:{n}").as_bytes()).await,
            format!("value {n}").as_bytes(),
        );
    }
    // What made room was the old filler.
    assert_eq!(c.get(b"filler:0").await.outcome(), Outcome::Miss);
}
