//! The `mintcache-server` binary: configuration checking, errors, startup on the embedded
//! store, the addresses it reports, and bind errors.

mod harness;

use std::process::Output;

use harness::ServerProcess;
use harness::calls::{Calls, assert_hit};
use harness::cases::Cases;

fn server(args: &[&str], env: &[(&str, &str)]) -> Output {
    ServerProcess::run(args, env)
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
        ("[log]\nlevel = \"verbose\"\n", &[], "log.level"),
        ("[auth]\nrequire_token = true\n", &[], "auth.require_token"),
        (
            "",
            &[("MINTCACHE_AUTH__CLIENT_TOKEN_SHA256", "0123")],
            "auth.client_token_sha256",
        ),
        (
            "",
            &[("MINTCACHE_SERVER__LISTEN", "no-such-host.invalid:50051")],
            "server.listen",
        ),
    ];
    // Every case runs; each failing one is reported by its number.
    let mut report = Cases::new();
    for (i, (toml, env, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, toml).expect("write");
        let mut env = env.to_vec();
        env.push(("MINTCACHE_CONFIG", path.to_str().expect("utf-8")));
        let out = server(&["--check-config"], &env);
        let stderr = text(&out.stderr);
        let result = if out.status.code() != Some(64) {
            Err(format!("exit {:?}: {stderr}", out.status.code()))
        } else if !stderr.contains(key) {
            Err(format!("error should name {key}: {stderr}"))
        } else {
            Ok(())
        };
        report.check(&format!("case {i} ({toml:?} {env:?})"), result);
    }
    report.finish();
    let missing = server(
        &["--config", "/nonexistent/mintcache.toml", "--check-config"],
        &[],
    );
    assert_eq!(missing.status.code(), Some(64));
    assert!(text(&missing.stderr).contains("/nonexistent/mintcache.toml"));
}

#[test]
fn settings_that_look_like_numbers_are_what_they_say() {
    let out = server(
        &["--check-config"],
        &[
            ("MINTCACHE_CACHE__DEFAULT_VERSION", "42"),
            ("MINTCACHE_CACHE__NAMESPACE", "007"),
            ("MINTCACHE_CACHE__GRACE_SECONDS", "12"),
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "default_version = \"42\"",
        "namespace = \"007\"",
        "grace_seconds = 12",
        "listen = \"127.0.0.1:50052\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // A digest as `sha256sum` prints it is a digest.
    let digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let printed = format!("{digest}  -");
    let out = server(
        &["--check-config"],
        &[("MINTCACHE_AUTH__ADMIN_TOKEN_SHA256", printed.as_str())],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&printed));
}

#[test]
fn a_bind_error_names_the_address_that_failed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let out = server(
        &[],
        &[
            ("MINTCACHE_SERVER__LISTEN", "127.0.0.1:0"),
            ("MINTCACHE_ADMIN__LISTEN", taken.as_str()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken} (admin.listen)")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("server.listen"),
        "only the one that failed: {stderr}"
    );
}

#[test]
fn a_taken_port_is_said_once_with_the_way_forward() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr");
    for (env, key, variable) in [
        (
            [
                ("MINTCACHE_SERVER__LISTEN", taken.to_string()),
                ("MINTCACHE_ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            ],
            "server.listen",
            "MINTCACHE_SERVER__LISTEN",
        ),
        (
            [
                ("MINTCACHE_SERVER__LISTEN", "127.0.0.1:0".to_owned()),
                ("MINTCACHE_ADMIN__LISTEN", taken.to_string()),
            ],
            "admin.listen",
            "MINTCACHE_ADMIN__LISTEN",
        ),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = server(&[], &env);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        // One line (no log line and plain line saying the same), the cause once.
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert_eq!(
            stderr.matches("Address already in use").count(),
            1,
            "{stderr}"
        );
        let line = lines[0];
        assert!(
            line.starts_with(&format!(
                "mintcache-server: cannot listen on {taken} ({key}): Address already in use"
            )),
            "{line}"
        );
        // The way forward: the setting, as a variable with an example, or in the file.
        let example = format!("{variable}=127.0.0.1:{}", taken.port() + 10);
        assert!(
            line.contains("another process holds this port")
                && line.contains(&example)
                && line.contains(&format!("{key} in a --config file")),
            "{line}"
        );
        assert!(
            out.stdout.is_empty(),
            "no `listening` line: {}",
            text(&out.stdout)
        );
    }
    drop(holder);
}

#[tokio::test]
async fn listens_on_a_host_name_and_reports_the_addresses() {
    let p = ServerProcess::start(&[("MINTCACHE_SERVER__LISTEN", "localhost:0".into())]);
    assert!(
        p.addr.ip().is_loopback() && p.addr.port() != 0,
        "{}",
        p.addr
    );
    assert!(p.admin.port() != 0 && p.admin != p.addr, "{}", p.admin);
    let c = Calls::new(p.client().await);
    c.set(b"k", b"v").await;
    assert_hit(&c.get(b"k").await, b"v");
    assert_eq!(p.admin_get("/healthz").await.0, 200);
}

#[tokio::test]
async fn serves_on_the_embedded_store_by_default_and_says_so() {
    let mut p = ServerProcess::start(&[]);
    let c = Calls::new(p.client().await);
    c.set(b"k", b"v").await;
    assert_hit(&c.get(b"k").await, b"v");
    p.sigterm();
    let (_, stderr) = p.wait_exit().await;
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
