//! Smoke runs of `mintcache-bench`, a few seconds each: in-process
//! (`mintcache_bench::run`, the function the binary only wraps) against real servers
//! over a real memcached, and in `--memcached` mode against that memcached. They check that
//! the tool ran, that every call succeeded, and that the outcome counts add up to the calls
//! (and to the keys of batched calls). They assert counts only, never a duration or a rate:
//! `docs/BENCHMARKS.md` is where speed is measured. `client/bench/tests/bench_binary.rs` runs the
//! real binary.

mod harness;

use harness::{Memcached, TestServer, config};
use mintcache_bench::{Exit, run};
use serde_json::Value;

/// Runs the bench with `--json` and returns its exit status and report.
async fn bench(args: &[&str]) -> (Exit, Value) {
    let mut argv = vec!["mintcache-bench", "--json"];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = run(argv.clone(), &mut out, &mut err).await;
    let err = String::from_utf8_lossy(&err);
    let report: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{argv:?}: no JSON report ({e}); stderr: {err}"));
    (exit, report)
}

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` is not a count in {report:#}"))
}

fn sum(counts: &Value) -> u64 {
    counts
        .as_object()
        .map(|o| o.values().map(|v| v.as_u64().expect("a count")).sum())
        .unwrap_or_default()
}

fn outcome(report: &Value, name: &str) -> u64 {
    report["outcomes"][name].as_u64().unwrap_or(0)
}

/// The checks every run must pass: it measured calls, all of them succeeded, and the
/// outcomes account for every key of every call (keys = calls x batch size).
fn check_complete(exit: Exit, report: &Value, keys_per_call: u64) {
    assert_eq!(exit, Exit::Success, "{report:#}");
    let calls = n(report, "calls");
    assert!(calls > 0, "no call was measured: {report:#}");
    assert_eq!(n(report, "ok"), calls, "{report:#}");
    assert_eq!(sum(&report["errors"]), 0, "{report:#}");
    assert_eq!(sum(&report["key_errors"]), 0, "{report:#}");
    assert_eq!(n(report, "keys"), calls * keys_per_call, "{report:#}");
    assert_eq!(sum(&report["outcomes"]), n(report, "keys"), "{report:#}");
    let ops = report["by_op"].as_array().expect("by_op");
    assert_eq!(
        ops.iter().map(|op| n(op, "calls")).sum::<u64>(),
        calls,
        "{report:#}"
    );
    let p50 = report["latency_us"]["p50"].as_u64().expect("p50");
    let max = report["latency_us"]["max"].as_u64().expect("max");
    assert!(p50 > 0 && p50 <= max, "{report:#}");
}

/// The outcomes of one operation of the report.
fn op<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["by_op"]
        .as_array()
        .expect("by_op")
        .iter()
        .find(|op| op["op"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_mix_against_a_server_over_memcached() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let endpoint = server.addr.to_string();
    let (exit, report) = bench(&[
        "-e", &endpoint, "-c", "2", "-s", "4", "--warmup", "200ms", "-d", "2s", "--keys", "500",
    ])
    .await;
    check_complete(exit, &report, 1);
    assert_eq!(report["target"]["kind"], "grpc");
    assert_eq!(report["in_flight"], 8);
    // Every key was stored before the run and writes only overwrite them: every read hits.
    let get = op(&report, "get");
    assert_eq!(outcome(get, "HIT"), n(get, "calls"), "{report:#}");
    let set = op(&report, "set");
    assert_eq!(outcome(set, "STORED"), n(set, "calls"), "{report:#}");
    assert!(mc.curr_items() >= 500, "the keys went to memcached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_mix_with_misses_and_an_exact_call_count() {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let endpoint = server.addr.to_string();
    let (exit, report) = bench(&[
        "-e",
        &endpoint,
        "-w",
        "batch",
        "--batch",
        "10",
        "--get-ratio",
        "0.5",
        "--hit-ratio",
        "0.5",
        "--keys",
        "1000",
        "-c",
        "2",
        "-s",
        "2",
        "--warmup",
        "0",
        "-n",
        "200",
    ])
    .await;
    check_complete(exit, &report, 10);
    assert_eq!(n(&report, "calls"), 200, "--count is exact");
    let get_many = op(&report, "get_many");
    assert_eq!(
        outcome(get_many, "HIT") + outcome(get_many, "MISS"),
        n(get_many, "keys"),
        "{report:#}"
    );
    // Half of the keys were stored: among ~1000 reads, both hits and misses happen.
    assert!(outcome(get_many, "HIT") > 0 && outcome(get_many, "MISS") > 0);
    let set_many = op(&report, "set_many");
    assert_eq!(outcome(set_many, "STORED"), n(set_many, "keys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_over_two_replicas_elects_one_refresher_per_stale_period() {
    let mc = Memcached::start();
    let a = TestServer::start(config(&[&mc])).await;
    let b = TestServer::start(config(&[&mc])).await;
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    // A 1-second fresh time expires more than once in 4 seconds.
    let (exit, report) = bench(&[
        "-e", &a_addr, "-e", &b_addr, "-w", "stampede", "-c", "4", "-s", "8", "-d", "4s",
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{report:#}");
    assert_eq!(n(&report, "ok"), n(&report, "calls"), "{report:#}");
    assert_eq!(sum(&report["outcomes"]), n(&report, "keys"), "{report:#}");
    let stampede = &report["stampede"];
    assert_eq!(stampede["readers"], 32);
    assert_eq!(stampede["endpoints"], 2);
    assert!(n(stampede, "periods") >= 1, "{report:#}");
    assert_eq!(
        stampede["exactly_one_recompute_per_period"], true,
        "{report:#}"
    );
    // Each recompute stored a value once: REFRESH answers = STORED answers (a refresher still
    // recomputing when the run ended has stored too, since the run waits for it).
    assert_eq!(
        outcome(&report, "REFRESH") + outcome(&report, "MISS"),
        outcome(&report, "STORED"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_over_two_replicas_computes_once_per_round_without_polls() {
    let mc = Memcached::start();
    let a = TestServer::start(config(&[&mc])).await;
    let b = TestServer::start(config(&[&mc])).await;
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let (exit, report) = bench(&[
        "-e",
        &a_addr,
        "-e",
        &b_addr,
        "-w",
        "fill",
        "-c",
        "4",
        "-s",
        "5",
        "-n",
        "3",
        "--recompute",
        "50ms",
    ])
    .await;
    assert_eq!(exit, Exit::Success, "{report:#}");
    let fill = &report["fill"];
    assert_eq!(fill["readers"], 20, "{report:#}");
    assert_eq!(fill["rounds"], 3, "{report:#}");
    assert_eq!(fill["exactly_one_compute_per_round"], true, "{report:#}");
    assert_eq!(fill["without_value"], 0, "{report:#}");
    // Every waiter was held by the server until the fill landed: no read came back PENDING.
    assert_eq!(fill["polls"], 0, "{report:#}");
    assert_eq!(outcome(&report, "PENDING"), 0, "{report:#}");
    let waiters = n(&fill["same_replica"], "waiters") + n(&fill["other_replica"], "waiters");
    assert_eq!(waiters, 3 * 19, "{report:#}");
    // A waiter is answered once the value is stored, after the 50 ms compute.
    assert!(
        fill["same_replica"]["p50_ms"].as_f64() >= Some(50.0),
        "{report:#}"
    );
    assert_eq!(outcome(&report, "MISS"), 3, "{report:#}");
    assert_eq!(outcome(&report, "STORED"), 3, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_mode_with_both_protocols() {
    let mc = Memcached::start();
    let addr = mc.addr();
    for protocol in ["meta", "text"] {
        let (exit, report) = bench(&[
            "--memcached",
            &addr,
            "--memcached-protocol",
            protocol,
            "-c",
            "2",
            "-s",
            "8",
            "--warmup",
            "100ms",
            "-d",
            "1s",
            "--keys",
            "500",
        ])
        .await;
        check_complete(exit, &report, 1);
        assert_eq!(report["target"]["protocol"], protocol);
        let get = op(&report, "get");
        assert_eq!(
            outcome(get, "HIT"),
            n(get, "calls"),
            "{protocol}: {report:#}"
        );

        let (exit, report) = bench(&[
            "--memcached",
            &addr,
            "--memcached-protocol",
            protocol,
            "-w",
            "batch",
            "--batch",
            "20",
            "--hit-ratio",
            "0.5",
            "--keys",
            "1000",
            "-c",
            "2",
            "-s",
            "2",
            "--warmup",
            "0",
            "-n",
            "100",
        ])
        .await;
        check_complete(exit, &report, 20);
        assert_eq!(n(&report, "calls"), 100);
        let get_many = op(&report, "get_many");
        assert!(
            outcome(get_many, "HIT") > 0 && outcome(get_many, "MISS") > 0,
            "{protocol}: {report:#}"
        );
    }
}
