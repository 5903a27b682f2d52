//! The programs in `examples/` run against live servers: the Rust `get_or_compute` program,
//! the Python one (stubs generated with grpcio-tools, as its docstring says), and
//! `examples/local-cluster.sh`, which must start 3 memcached and 2 mintcache replicas that
//! answer, and leave no process behind after Ctrl-C (SIGINT); with a port taken it must never
//! say `ready`, and must name the port or the process that failed.

mod harness;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::{Memcached, ServerProcess};
use mintcache_client::{Client, Outcome};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What both get_or_compute programs print against a fresh key space.
fn check_mint_output(output: &str) {
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 4, "{output}");
    for (i, line) in lines[..3].iter().enumerate() {
        assert!(
            line.starts_with(&format!(
                "read {}: {{\"id\":42,\"name\":\"Ada\",\"load\":1}}",
                i + 1
            )),
            "computed once, then cached: {output}"
        );
        assert!(line.ends_with("(loads so far: 1)"), "{output}");
    }
    assert_eq!(
        lines[3], "after an invalidation and 10 concurrent readers: loads so far: 2",
        "one recompute for ten readers: {output}"
    );
}

#[test]
fn the_rust_get_or_compute_example() {
    let mc = Memcached::start();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["run", "--quiet", "--example", "get_or_compute", "--"])
        .arg(format!("http://{}", server.addr))
        .output()
        .expect("cargo run --example get_or_compute");
    assert!(
        out.status.success(),
        "the example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_mint_output(&String::from_utf8_lossy(&out.stdout));
}

fn python() -> PathBuf {
    let venv = root().join("target/tools/venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

#[test]
fn the_python_get_or_compute_example() {
    let python = python();
    let stubs = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&python)
        .current_dir(root())
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg("proto/mintcache/v1/cache.proto")
        .output()
        .expect("python with grpcio-tools (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "grpc_tools.protoc failed (install grpcio-tools: scripts/install-test-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mc = Memcached::start();
    let server = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let out = Command::new(&python)
        .env("PYTHONPATH", stubs.path())
        .arg(root().join("examples/get_or_compute.py"))
        .arg(server.addr.to_string())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "the example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_mint_output(&String::from_utf8_lossy(&out.stdout));
}

/// The first of `n` consecutive free loopback ports. They are looked for below the system's
/// ephemeral range: ports in it are also those of outgoing connections, and after a busy test
/// run thousands of them sit in TIME_WAIT, where a listener cannot bind them (a free port from
/// the system, then the next ones, failed that way under the whole suite).
fn free_ports(n: u16) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let range = if ephemeral_low > 11_000 + n {
        10_000..ephemeral_low - n
    } else {
        1024..u16::MAX - n
    };
    let mut rng = fastrand::Rng::new();
    for _ in 0..1000 {
        let first = rng.u16(range.clone());
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1 in {range:?}");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_serves_through_both_replicas_and_stops_cleanly() {
    let memcached_port = free_ports(3);
    let mintcache_port = free_ports(4);
    // As from a terminal, SIGINT is not ignored: a test run in the background (`nohup`, `&`)
    // inherits it ignored, and a shell cannot trap a signal that was ignored when it started.
    let mut script = Command::new("env")
        .args(["--default-signal=INT", "bash"])
        .arg(root().join("examples/local-cluster.sh"))
        .env("MEMCACHED_PORT", memcached_port.to_string())
        .env("MINTCACHE_PORT", mintcache_port.to_string())
        .env(
            "MINTCACHE_SERVER_BIN",
            env!("CARGO_BIN_EXE_mintcache-server"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bash examples/local-cluster.sh");
    // Read its output on a thread, so that a hung script fails the test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    let stdout = script.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "ready" => break,
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = script.kill();
                panic!("the cluster did not get ready:\n{}", printed.join("\n"));
            }
        }
    }
    let text = printed.join("\n");
    let pids: Vec<u32> = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("pids"))
        .expect("a pids line")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 5, "3 memcached + 2 mintcache: {text}");
    let endpoints: Vec<String> = (0..2)
        .map(|i| format!("127.0.0.1:{}", mintcache_port + 2 * i))
        .collect();
    for endpoint in &endpoints {
        assert!(text.contains(&format!("mintcache  {endpoint}")), "{text}");
    }

    // One Get through each replica: a value set through one is read through the other.
    let replica = |endpoint: &String| {
        Client::builder()
            .endpoint(format!("http://{endpoint}"))
            .version("local-cluster")
            .build()
            .expect("client")
    };
    let (first, second) = (replica(&endpoints[0]), replica(&endpoints[1]));
    assert!(
        first
            .set("greeting", "hello", Duration::from_secs(60))
            .await
            .expect("set")
    );
    for client in [&second, &first] {
        let lookup = client.get("greeting").await.expect("get");
        assert_eq!(
            (lookup.outcome, lookup.value.as_slice()),
            (Outcome::Hit, &b"hello"[..])
        );
    }

    // Ctrl-C: everything stops, nothing is left behind.
    let status = Command::new("kill")
        .args(["-INT", &script.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = script.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the script did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(130), "exit status after Ctrl-C");
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for port in (memcached_port..memcached_port + 3).chain(mintcache_port..mintcache_port + 4) {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still in use"
        );
    }
}

/// Runs `examples/local-cluster.sh` on these ports to its end (it must end by itself): exit
/// status, stdout, stderr.
fn run_cluster_script(memcached_port: u16, mintcache_port: u16) -> (Option<i32>, String, String) {
    let mut script = Command::new("bash")
        .arg(root().join("examples/local-cluster.sh"))
        .env("MEMCACHED_PORT", memcached_port.to_string())
        .env("MINTCACHE_PORT", mintcache_port.to_string())
        .env(
            "MINTCACHE_SERVER_BIN",
            env!("CARGO_BIN_EXE_mintcache-server"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash examples/local-cluster.sh");
    let deadline = Instant::now() + Duration::from_secs(60);
    while script.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = script.kill();
            panic!("the script did not stop by itself with a port taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = script.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_never_says_ready_with_a_port_taken() {
    // Ports held by other processes (something answers on them): found before anything
    // starts, each named with the setting that moves it.
    let memcached_port = free_ports(3);
    let mintcache_port = free_ports(4);
    let held_memcached = TcpListener::bind(("127.0.0.1", memcached_port + 1)).expect("bind");
    let held_admin = TcpListener::bind(("127.0.0.1", mintcache_port + 3)).expect("bind");
    let (status, out, err) = run_cluster_script(memcached_port, mintcache_port);
    assert_eq!(status, Some(1), "{out}\n{err}");
    assert!(!out.lines().any(|l| l == "ready"), "{out}");
    assert!(!out.contains("stopping"), "nothing was started: {out}");
    for (port, setting) in [
        (memcached_port + 1, "MEMCACHED_PORT"),
        (mintcache_port + 3, "MINTCACHE_PORT"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("port {port} (")) && l.contains(setting)),
            "{port} named with {setting}: {err}"
        );
    }
    assert!(
        err.contains("choose others: MINTCACHE_PORT=N") && err.contains("MEMCACHED_PORT=N"),
        "{err}"
    );
    drop((held_memcached, held_admin));

    // A port bound but not listening passes that check, and the replica cannot bind it: the
    // script sees that its own process never got ready, names it, and stops the others.
    let memcached_port = free_ports(3);
    let mintcache_port = free_ports(4);
    let holder = tokio::net::TcpSocket::new_v4().expect("socket");
    holder
        .bind(([127, 0, 0, 1], mintcache_port + 2).into())
        .expect("bind without listening");
    let (status, out, err) = run_cluster_script(memcached_port, mintcache_port);
    assert_eq!(status, Some(1), "{out}\n{err}");
    assert!(!out.lines().any(|l| l == "ready"), "{out}");
    let replica = format!("mintcache replica 2 on 127.0.0.1:{}", mintcache_port + 2);
    assert!(
        err.lines()
            .any(|l| l.contains(&replica) && l.contains("exited during startup")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{}",
            mintcache_port + 2
        )),
        "the replica's own error: {err}"
    );
    // What it had started (3 memcached, both replicas) is stopped.
    let started: Vec<u32> = out
        .lines()
        .find_map(|l| l.strip_prefix("stopping "))
        .expect("a stopping line")
        .trim_end_matches(" ...")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(started.len(), 5, "{out}");
    let left: Vec<u32> = started.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    drop(holder);
}
