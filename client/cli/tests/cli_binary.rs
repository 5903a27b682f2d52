//! The real `mintcache` binary: streams, exit codes and environment variables. Round trips
//! against a server are in the workspace's `tests/client_cli.rs` (in-process, same code path:
//! the binary only passes its arguments and standard streams to `mintcache_cli::run`).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn mintcache(args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mintcache"));
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run mintcache");
    // A command that does not read stdin may have exited already: its stdin is then closed.
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("write stdin"),
    }
    child.wait_with_output().expect("wait for mintcache")
}

#[test]
fn help_exits_0_on_stdout() {
    let out = mintcache(&["--help"], &[], b"");
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["get", "set", "delete", "invalidate", "incr", "health"] {
        assert!(help.contains(command), "{command} in {help}");
    }
    assert!(out.stderr.is_empty());
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    let out = mintcache(&["get"], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY"));
}

#[test]
fn an_unreachable_server_exits_3_with_a_clear_message() {
    let port = closed_port().to_string();
    for args in [&["get", "k"][..], &["set", "k"], &["health"]] {
        let out = mintcache(
            &[
                &["--endpoint", &format!("127.0.0.1:{port}"), "--retries", "0"],
                args,
            ]
            .concat(),
            &[],
            b"value from stdin",
        );
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("mintcache: error: cannot reach a mintcache server"),
            "{args:?}: {err}"
        );
        assert!(err.contains(&port), "{err}");
    }
}

#[test]
fn settings_come_from_mintcachecli_variables() {
    let port = closed_port().to_string();
    let out = mintcache(
        &["get", "k"],
        &[
            ("MINTCACHECLI_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("MINTCACHECLI_TOKEN", "s3cret".into()),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&port),
        "the endpoint came from the environment: {err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn the_cache_version_is_never_mistaken_for_the_version_flag() {
    let out = mintcache(&["--version"], &[], b"");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("mintcache {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = mintcache(&["--version", "v2", "get", "user:42"], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cache-version VERSION"));
    // The variable has the flag's name.
    let port = closed_port().to_string();
    let out = mintcache(
        &[
            "--endpoint",
            &format!("127.0.0.1:{port}"),
            "--retries",
            "0",
            "get",
            "k",
        ],
        &[("MINTCACHECLI_CACHE_VERSION", "vé".into())],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("x-cache-version"));
}

#[test]
fn an_empty_stdin_is_not_stored_as_an_empty_value() {
    // Refused before any call: the endpoint is never contacted.
    let out = mintcache(&["--endpoint", "127.0.0.1:1", "set", "k"], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-empty"));
}

#[test]
fn flags_read_their_variables() {
    // MINTCACHECLI_TIMEOUT is parsed like --timeout: a bad value is a usage error.
    let out = mintcache(&["get", "k"], &[("MINTCACHECLI_TIMEOUT", "0".into())], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive number of seconds"));
    let out = mintcache(
        &["get", "k"],
        &[("MINTCACHECLI_DEBUG", "sometimes".into())],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn boolean_variables_are_off_when_false() {
    for value in ["false", "0", "", "true", "1"] {
        // `--raw` with JSON on is refused before any call; with JSON off, the admin address
        // (nothing listens on port 1) is tried: a different message.
        let out = mintcache(
            &["--admin", "127.0.0.1:1", "stats", "--raw"],
            &[("MINTCACHECLI_JSON", value.into())],
            b"",
        );
        let (out_text, err) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let json_on = matches!(value, "true" | "1");
        // With JSON on, the error itself is JSON on stdout.
        let said = if json_on { &out_text } else { &err };
        assert_eq!(
            said.contains("cannot be JSON"),
            json_on,
            "{value:?}: {said}"
        );
        assert_eq!(
            said.starts_with("{\"error\":"),
            json_on,
            "{value:?}: {said}"
        );
        assert_eq!(
            out.status.code(),
            Some(if json_on { 2 } else { 3 }),
            "{value:?}"
        );
    }
}

#[test]
fn with_json_an_error_is_one_json_object_on_stdout() {
    let port = closed_port().to_string();
    let endpoint = format!("127.0.0.1:{port}");
    let out = mintcache(
        &[
            "--json",
            "--endpoint",
            &endpoint,
            "--retries",
            "0",
            "get",
            "k",
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["error"]["exit"], 3);
    assert_eq!(v["error"]["kind"], "unreachable");
    assert_eq!(v["error"]["code"], "UNAVAILABLE");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&endpoint)),
        "{v}"
    );
    // A usage error under --json (here from the variable) is JSON too.
    let out = mintcache(&["get"], &[("MINTCACHECLI_JSON", "1".into())], b"");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["error"]["kind"], "usage");
}

#[test]
fn ttl_arguments_take_durations_and_refuse_negatives_in_words() {
    // Refused before any call: nothing listens on port 1 and nothing is tried.
    let out = mintcache(
        &["--endpoint", "127.0.0.1:1", "set", "k", "v", "--ttl", "-5"],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be negative"), "{err}");
    assert!(!err.contains("-- -5"), "{err}");
    let out = mintcache(
        &[
            "--endpoint",
            "127.0.0.1:1",
            "set",
            "k",
            "v",
            "--ttl",
            "1hour",
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seconds (90) or a duration (90s, 5m"), "{err}");
    // `1h` is a duration: the call is made (and finds nothing listening).
    let out = mintcache(
        &[
            "--endpoint",
            "127.0.0.1:1",
            "--retries",
            "0",
            "set",
            "k",
            "v",
            "--ttl",
            "1h",
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(3));
}
