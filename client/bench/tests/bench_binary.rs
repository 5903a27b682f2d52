//! The real `mintcache-bench` binary: help, usage errors and exit codes, and a short
//! `--memcached` run against a real memcached process (started here on a free port; a missing
//! memcached fails the test). Runs against mintcache servers are in the workspace's
//! `tests/bench_smoke.rs` (in-process, same code path: the binary only passes its arguments,
//! streams and Ctrl-C to `mintcache_bench`).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mintcache-bench"))
        .args(args)
        .env_remove("MINTCACHE_BENCH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run mintcache-bench")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A memcached process, killed on drop.
struct Memcached {
    child: Child,
    port: u16,
}

impl Memcached {
    fn start() -> Self {
        let port = free_port();
        let mut cmd = Command::new("memcached");
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]);
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start memcached ({e}); install it (apt-get install memcached)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("memcached exited during startup: {status}");
            }
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn help_shows_examples_and_exits_0() {
    let out = bench(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "--connections",
        "--streams",
        "--memcached",
        "--json",
        "Examples:",
    ] {
        assert!(help.contains(expected), "{expected} missing from --help");
    }
    assert!(out.stderr.is_empty());
}

#[test]
fn bad_usage_exits_2_with_a_message_on_stderr() {
    let cases: [&[&str]; 4] = [
        &["--get-ratio", "2"],
        &["--batch", "10"],
        &["--memcached", "127.0.0.1:11211", "-w", "stampede"],
        &["-d", "1s", "-n", "10"],
    ];
    for args in cases {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn an_unreachable_target_exits_3() {
    let closed = format!("127.0.0.1:{}", free_port());
    for args in [
        ["--memcached", closed.as_str(), "-d", "1s"],
        ["--endpoint", closed.as_str(), "-d", "1s"],
    ] {
        let out = bench(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot connect"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn memcached_run_prints_a_complete_json_report() {
    let mc = Memcached::start();
    let addr = format!("127.0.0.1:{}", mc.port);
    let out = bench(&[
        "--memcached",
        &addr,
        "-c",
        "2",
        "-s",
        "4",
        "--warmup",
        "0",
        "-n",
        "2000",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["calls"], 2000);
    assert_eq!(report["ok"], 2000);
    let outcomes = report["outcomes"].as_object().expect("outcomes");
    let total: u64 = outcomes.values().map(|v| v.as_u64().expect("count")).sum();
    assert_eq!(total, 2000);
    assert!(report["errors"].as_object().expect("errors").is_empty());
    // Not a terminal: no progress line, nothing but the report on stdout.
    assert!(!out.stdout.contains(&b'\r'));
}

#[test]
fn memcached_run_prints_a_table() {
    let mc = Memcached::start();
    let addr = format!("127.0.0.1:{}", mc.port);
    let out = bench(&[
        "--memcached",
        &addr,
        "--memcached-protocol",
        "text",
        "--warmup",
        "0",
        "-n",
        "500",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("memcached 127.0.0.1:"), "{table}");
    assert!(table.contains("(text protocol)"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("all ")), "{table}");
    assert!(table.contains("errors       none"), "{table}");
}
