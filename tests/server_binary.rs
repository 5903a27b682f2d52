//! The `mintcache-server` binary: configuration checking, errors, and startup on the
//! embedded store.

mod harness;

use std::io::Read;
use std::process::{Command, Output, Stdio};

use harness::calls::{Calls, assert_hit};
use harness::{ServerProcess, free_port};

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mintcache-server"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mintcache-server")
}

/// A config file, environment variables, and the key the error must name.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mintcache.toml");
    std::fs::write(
        &path,
        "[cache]\ndefault_version = \"r42\"\ngrace_seconds = 10\n[memcached]\nservers = [\"10.1.0.1:11211:2\"]\n",
    )
    .expect("write config");
    let out = server(
        &[
            "--config",
            path.to_str().expect("utf-8 path"),
            "--check-config",
        ],
        &[
            ("MINTCACHE_CACHE__GRACE_SECONDS", "15"),
            ("MINTCACHE_LIMITS__MAX_KEY_BYTES", "512"),
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "default_version = \"r42\"",
        "grace_seconds = 15",
        "max_key_bytes = 512",
        "\"10.1.0.1:11211:2\"",
        "listen = \"127.0.0.1:50051\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // The printed configuration is itself a valid configuration file.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, stdout).expect("write");
    let again = server(
        &["--check-config"],
        &[("MINTCACHE_CONFIG", printed.to_str().expect("utf-8"))],
    );
    assert!(again.status.success(), "stderr: {}", text(&again.stderr));
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[Case<'_>] = &[
        (
            "[cache]\ndefault_ttl_seconds = \"soon\"\n",
            &[],
            "default_ttl_seconds",
        ),
        ("[cache]\nunknown_knob = 1\n", &[], "unknown_knob"),
        (
            "",
            &[("MINTCACHE_CACHE__DEFAULT_VERSION", "bad version")],
            "cache.default_version",
        ),
        (
            "",
            &[("MINTCACHE_MEMCACHED__SERVERS", "10.0.0.1")],
            "servers",
        ),
        ("", &[("MINTCACHE_TYPO__X", "1")], "typo"),
    ];
    for (i, (toml, env, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let mut env = env.to_vec();
        env.push(("MINTCACHE_CONFIG", path.to_str().expect("utf-8")));
        let out = server(&["--check-config"], &env);
        assert_eq!(
            out.status.code(),
            Some(64),
            "case {i}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(key),
            "case {i}: error should name {key}: {stderr}"
        );
    }
    let missing = server(
        &["--config", "/nonexistent/mintcache.toml", "--check-config"],
        &[],
    );
    assert_eq!(missing.status.code(), Some(64));
    assert!(text(&missing.stderr).contains("/nonexistent/mintcache.toml"));
}

#[tokio::test]
async fn serves_on_the_embedded_store_by_default_and_says_so() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mintcache-server"))
        .env_clear()
        .env("MINTCACHE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "MINTCACHE_ADMIN__LISTEN",
            format!("127.0.0.1:{}", harness::free_port()),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let c = Calls::new(harness::connect(addr).await);
    c.set(b"k", b"v").await;
    assert_hit(&c.get(b"k").await, b"v");
    child.kill().expect("kill");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read");
    let _ = child.wait();
    assert!(
        stderr.contains("EMBEDDED in-process store"),
        "loud warning expected: {stderr}"
    );
    assert!(stderr.contains("NOT shared between replicas"), "{stderr}");
}

#[tokio::test]
async fn a_server_process_on_memcached_serves_calls() {
    let mc = harness::Memcached::start();
    let p = ServerProcess::start(&[("MINTCACHE_MEMCACHED__SERVERS", mc.addr())]);
    let c = Calls::new(p.client().await).version("v1");
    c.set(b"k", b"v").await;
    assert_hit(&c.get(b"k").await, b"v");
    assert_eq!(mc.curr_items(), 1);
}
