//! The `mintcache` CLI end to end, in-process (`mintcache_cli::run_with`, the function
//! the binary is a thin wrapper around) against servers on memcached: round trips of raw
//! bytes through arguments and stdin, the exit statuses (0 found / 1 not found / 2 usage /
//! 3 unreachable / 4 refused / 5 backend down), the one-line reports shown on a terminal,
//! `--json`, leases, counters, inspect, batches, flush, stats, the shell, and the messages of
//! failures (TLS mismatches, the admin port or memcached given as the endpoint, memcached down
//! behind the server). `client/cli/tests/cli_binary.rs` checks the real binary's streams.

mod harness;

use harness::pki::Pki;
use harness::{Memcached, TestServer, config};
use mintcache_cli::{Exit, Terminal, run_with};

/// The output of one CLI invocation.
struct Ran {
    exit: Exit,
    out: Vec<u8>,
    err: String,
}

impl Ran {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

struct Cli {
    endpoint: String,
    admin: Option<String>,
}

impl Cli {
    async fn run_as(&self, terminal: Terminal, args: &[&str], stdin: &[u8]) -> Ran {
        let mut argv = vec![
            "mintcache",
            "--endpoint",
            &self.endpoint,
            "--cache-version",
            "cli",
            "--retries",
            "0",
        ];
        if let Some(admin) = &self.admin {
            argv.extend(["--admin", admin]);
        }
        argv.extend_from_slice(args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = stdin;
        let exit = run_with(argv, terminal, &mut stdin, &mut out, &mut err).await;
        Ran {
            exit,
            out,
            err: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Ran {
        self.run_as(Terminal::NONE, args, stdin).await
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, b"").await
    }

    /// Runs as a person at a terminal would (stdout and stderr terminals, stdin not, so
    /// nothing waits for typing): returns the report line on stderr.
    async fn report(&self, args: &[&str], exit: Exit) -> String {
        let terminal = Terminal {
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let ran = self.run_as(terminal, args, b"").await;
        assert_eq!(ran.exit, exit, "{args:?}: {} / {}", ran.out(), ran.err);
        ran.err.trim_end().to_owned()
    }

    /// Runs and checks the exit status; returns stdout.
    async fn expect(&self, args: &[&str], exit: Exit) -> Vec<u8> {
        let ran = self.run(args).await;
        assert_eq!(
            ran.exit,
            exit,
            "{args:?}: stdout {:?}, stderr {}",
            ran.out(),
            ran.err
        );
        ran.out
    }

    async fn expect_text(&self, args: &[&str], exit: Exit) -> String {
        String::from_utf8(self.expect(args, exit).await).expect("utf-8")
    }
}

async fn cli_on_memcached() -> (Memcached, TestServer, Cli) {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let cli = Cli {
        endpoint: server.addr.to_string(),
        admin: Some(server.admin.to_string()),
    };
    (mc, server, cli)
}

/// The value of a `"name":"..."` string field in a JSON line.
fn json_field(json: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    v[name].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_delete_round_trip_with_exit_codes() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    assert_eq!(cli.expect(&["get", "greeting"], Exit::Miss).await, b"");
    assert_eq!(
        cli.expect(
            &["set", "greeting", "hello world", "--ttl", "60"],
            Exit::Success
        )
        .await,
        b""
    );
    // The raw value, byte for byte, no newline added.
    assert_eq!(
        cli.expect(&["get", "greeting"], Exit::Success).await,
        b"hello world"
    );
    assert_eq!(
        cli.expect(&["delete", "greeting"], Exit::Success).await,
        b""
    );
    assert_eq!(cli.expect(&["delete", "greeting"], Exit::Miss).await, b"");
    assert_eq!(cli.expect(&["get", "greeting"], Exit::Miss).await, b"");
    // add: only when absent.
    cli.expect(&["add", "once", "first"], Exit::Success).await;
    cli.expect(&["add", "once", "second"], Exit::Miss).await;
    assert_eq!(cli.expect(&["get", "once"], Exit::Success).await, b"first");
    // touch: existing keys only.
    cli.expect(&["touch", "once", "--ttl", "600"], Exit::Success)
        .await;
    cli.expect(&["touch", "nothing", "--ttl", "600"], Exit::Miss)
        .await;
    // A key spelt like a flag, after `--`.
    cli.expect(&["set", "--", "--version", "v"], Exit::Success)
        .await;
    assert_eq!(
        cli.expect(&["get", "--", "--version"], Exit::Success).await,
        b"v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_stdin_are_stored_byte_for_byte_and_empty_ones_need_a_flag() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    let binary: Vec<u8> = (0..=255u8).chain(*b"\r\nEND\n").collect();
    let ran = cli
        .run_with_stdin(&["set", "blob", "--ttl", "60"], &binary)
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(cli.expect(&["get", "blob"], Exit::Success).await, binary);
    // `-` reads stdin too.
    let ran = cli
        .run_with_stdin(&["set", "dash", "-"], b"from stdin\n")
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(
        cli.expect(&["get", "dash"], Exit::Success).await,
        b"from stdin\n"
    );
    // `set k </dev/null`: refused, nothing stored.
    let ran = cli.run_with_stdin(&["set", "dash"], b"").await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.err.contains("--allow-empty"), "{}", ran.err);
    assert_eq!(
        cli.expect(&["get", "dash"], Exit::Success).await,
        b"from stdin\n"
    );
    let ran = cli
        .run_with_stdin(&["set", "dash", "--allow-empty"], b"")
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(cli.expect(&["get", "dash"], Exit::Success).await, b"");
    // `set k` typed at a terminal: refused at once instead of waiting for Ctrl-D.
    let ran = cli.run_as(Terminal::ALL, &["set", "typed"], b"").await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.err.contains("give it as an argument"), "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_and_a_refresh_round_with_the_lease() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    cli.expect(
        &[
            "set", "page", "v1", "--ttl", "300", "--grace", "60", "--flags", "9",
        ],
        Exit::Success,
    )
    .await;
    let out = cli
        .expect_text(&["get", "page", "--json"], Exit::Success)
        .await;
    assert!(out.ends_with("}\n") && out.lines().count() == 1, "{out}");
    for field in [
        r#""key":"page""#,
        r#""outcome":"HIT""#,
        r#""value":"v1""#,
        r#""value_base64":"djE=""#,
        r#""flags":9"#,
        r#""grace_seconds":60"#,
        r#""no_expiry":false"#,
        r#""counter":false"#,
        r#""lease_token":null"#,
        r#""degraded":false"#,
    ] {
        assert!(out.contains(field), "{field} in {out}");
    }

    // Invalidate: a plain `get` (a peek) sees STALE and never takes the refresh...
    let out = cli
        .expect_text(&["invalidate", "page", "--json"], Exit::Success)
        .await;
    assert_eq!(out, "{\"invalidated\":true}\n");
    let out = cli
        .expect_text(&["get", "page", "--json"], Exit::Success)
        .await;
    assert!(out.contains(r#""outcome":"STALE""#), "{out}");
    // ...so the first reader that takes part in the election wins it: exit 1, the stale
    // value and the lease token in --json.
    let out = cli
        .expect_text(&["get", "page", "--elect", "--json"], Exit::Miss)
        .await;
    assert!(
        out.contains(r#""outcome":"REFRESH""#) && out.contains(r#""value":"v1""#),
        "{out}"
    );
    let lease = json_field(&out, "lease_token");
    assert!(
        !lease.is_empty() && lease.bytes().all(|b| b.is_ascii_hexdigit()),
        "{lease}"
    );
    // Others get the stale value (exit 0) meanwhile.
    assert_eq!(
        cli.expect(&["get", "page", "--elect"], Exit::Success).await,
        b"v1"
    );
    // The refresher sets with its lease; the same lease again is outdated: exit 1.
    let out = cli
        .expect(
            &["set", "page", "v2", "--lease", &lease, "--json"],
            Exit::Success,
        )
        .await;
    assert_eq!(out, b"{\"stored\":true}\n");
    cli.expect(&["set", "page", "v3", "--lease", &lease], Exit::Miss)
        .await;
    assert_eq!(cli.expect(&["get", "page"], Exit::Success).await, b"v2");
    let out = cli
        .expect_text(&["get", "absent", "--json"], Exit::Miss)
        .await;
    assert!(
        out.contains(r#""outcome":"MISS""#) && out.contains(r#""lease_token":null"#),
        "a peek hands out no lease: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_gets_a_one_line_report_on_a_terminal() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    assert_eq!(
        cli.report(
            &["set", "k", "v", "--ttl", "600", "--grace", "30"],
            Exit::Success
        )
        .await,
        "stored"
    );
    // On a terminal the value gets a final newline; the report goes to stderr.
    let terminal = Terminal {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let ran = cli.run_as(terminal, &["get", "k"], b"").await;
    assert_eq!(ran.out, b"v\n");
    assert!(
        ran.err.starts_with("HIT (fresh for 10m") && ran.err.ends_with("then stale for 30s)\n"),
        "{}",
        ran.err
    );
    // Quiet: no report.
    let ran = cli.run_as(terminal, &["-q", "get", "k"], b"").await;
    assert_eq!((ran.out.as_slice(), ran.err.as_str()), (&b"v\n"[..], ""));
    assert_eq!(cli.report(&["get", "nope"], Exit::Miss).await, "MISS");
    let miss = cli.report(&["get", "nope", "--elect"], Exit::Miss).await;
    assert!(
        miss.starts_with("MISS (lease ") && miss.contains(": store the value with --lease "),
        "{miss}"
    );
    // Cold-miss protection: the next reader is told someone else is filling the key.
    let first = cli
        .report(&["get", "cold", "--elect", "--lease-on-miss"], Exit::Miss)
        .await;
    assert!(first.starts_with("MISS (lease"), "{first}");
    let pending = cli
        .report(&["get", "cold", "--elect", "--lease-on-miss"], Exit::Miss)
        .await;
    assert!(pending.starts_with("PENDING (another caller"), "{pending}");

    cli.report(&["invalidate", "k"], Exit::Success).await;
    let stale = cli.report(&["get", "k"], Exit::Success).await;
    assert!(stale.starts_with("STALE (past its soft expiry"), "{stale}");
    let refresh = cli.report(&["get", "k", "--elect"], Exit::Miss).await;
    assert!(
        refresh.starts_with("REFRESH (stale, and this caller won the refresh"),
        "{refresh}"
    );
    let lease = refresh
        .split("--lease ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the lease in the report")
        .to_owned();
    assert_eq!(
        cli.report(&["set", "k", "v2", "--lease", &lease], Exit::Success)
            .await,
        "stored"
    );
    let outdated = cli
        .report(&["set", "k", "v3", "--lease", &lease], Exit::Miss)
        .await;
    assert!(
        outdated.starts_with("not stored: lease outdated"),
        "{outdated}"
    );
    assert_eq!(
        cli.report(&["add", "k", "x"], Exit::Miss).await,
        "not stored: the key already holds a value"
    );
    assert_eq!(
        cli.report(&["delete", "gone"], Exit::Miss).await,
        "not found"
    );
    assert_eq!(
        cli.report(&["invalidate", "gone"], Exit::Miss).await,
        "not found"
    );
    assert_eq!(
        cli.report(&["touch", "gone"], Exit::Miss).await,
        "not found"
    );
    assert_eq!(
        cli.report(&["touch", "k", "--ttl", "90"], Exit::Success)
            .await,
        "touched: fresh for 1m30s"
    );
    assert_eq!(
        cli.report(&["incr", "no-counter"], Exit::Miss).await,
        "not found: no counter no-counter (create it with --initial N)"
    );
    assert_eq!(cli.report(&["delete", "k"], Exit::Success).await, "deleted");
    // Pipelines see no report at all: stdout carries only data, the exit status the rest.
    let ran = cli.run(&["delete", "k"]).await;
    assert_eq!((ran.exit, ran.err.as_str()), (Exit::Miss, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    assert_eq!(cli.expect(&["incr", "hits"], Exit::Miss).await, b"");
    assert_eq!(
        cli.expect(
            &["incr", "hits", "--initial", "5", "--ttl", "60"],
            Exit::Success
        )
        .await,
        b"5\n"
    );
    assert_eq!(cli.expect(&["incr", "hits"], Exit::Success).await, b"6\n");
    assert_eq!(
        cli.expect(&["incr", "hits", "10"], Exit::Success).await,
        b"16\n"
    );
    assert_eq!(
        cli.expect(&["decr", "hits", "4"], Exit::Success).await,
        b"12\n"
    );
    assert_eq!(
        cli.expect(&["incr", "hits", "-100"], Exit::Success).await,
        b"0\n"
    );
    assert_eq!(
        cli.expect(&["incr", "hits", "2", "--json"], Exit::Success)
            .await,
        b"{\"value\":2}\n"
    );
    assert_eq!(
        cli.expect(&["incr", "nope", "--json"], Exit::Miss).await,
        b"{\"value\":null}\n"
    );
    // A value that is not a counter: refused by the server, exit 4, message on stderr.
    cli.expect(&["set", "text", "abc"], Exit::Success).await;
    let ran = cli.run(&["incr", "text"]).await;
    assert_eq!(ran.exit, Exit::Failed);
    assert!(ran.out.is_empty());
    assert!(
        ran.err.starts_with("mintcache: error: FAILED_PRECONDITION"),
        "{}",
        ran.err
    );
    // Counters stored by `set --counter` and created never to expire.
    cli.expect(&["set", "stock", "40", "--counter"], Exit::Success)
        .await;
    assert_eq!(
        cli.expect(&["incr", "stock", "2"], Exit::Success).await,
        b"42\n"
    );
    let out = cli
        .expect_text(&["inspect", "stock", "--json"], Exit::Success)
        .await;
    assert!(
        out.contains(r#""counter":true"#) && out.contains(r#""value":"42""#),
        "{out}"
    );
    cli.expect(
        &["incr", "forever", "--initial", "1", "--no-expiry"],
        Exit::Success,
    )
    .await;
    let out = cli
        .expect_text(&["inspect", "forever", "--json"], Exit::Success)
        .await;
    assert!(out.contains(r#""no_expiry":true"#), "{out}");
    let ran = cli.run(&["set", "bad", "forty", "--counter"]).await;
    assert_eq!(ran.exit, Exit::Failed, "{}", ran.err);
    assert!(ran.err.contains("INVALID_ARGUMENT"), "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_state_ttl_grace_flags_and_never_elects() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    cli.expect(
        &[
            "set", "user:42", "Ada", "--ttl", "600", "--grace", "120", "--flags", "7",
        ],
        Exit::Success,
    )
    .await;
    let text = cli
        .expect_text(&["inspect", "user:42"], Exit::Success)
        .await;
    for line in [
        "key     user:42\n",
        "state   HIT (fresh)\n",
        "grace   120s\n",
        "flags   7\n",
        "counter no\n",
        "size    3 bytes\n",
        "value   Ada\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(text.contains("ttl     60"), "{text}"); // 600s or 599s by now
    cli.expect(
        &["set", "conf", "on", "--no-expiry", "--no-grace"],
        Exit::Success,
    )
    .await;
    let text = cli.expect_text(&["peek", "conf"], Exit::Success).await;
    assert!(text.contains("expires never\n"), "{text}");
    cli.expect(&["touch", "user:42", "--no-expiry"], Exit::Success)
        .await;
    let text = cli
        .expect_text(&["inspect", "user:42"], Exit::Success)
        .await;
    assert!(text.contains("expires never\n"), "{text}");
    // Invalidated: every inspection sees STALE; none of them takes the refresh.
    cli.expect(
        &["set", "hot", "old", "--ttl", "600", "--grace", "60"],
        Exit::Success,
    )
    .await;
    cli.expect(&["invalidate", "hot"], Exit::Success).await;
    for _ in 0..3 {
        let text = cli.expect_text(&["inspect", "hot"], Exit::Success).await;
        assert!(text.contains("state   STALE"), "{text}");
    }
    let out = cli
        .expect_text(&["get", "hot", "--elect", "--json"], Exit::Miss)
        .await;
    assert!(
        out.contains(r#""outcome":"REFRESH""#),
        "the election was left open: {out}"
    );
    assert_eq!(
        cli.expect_text(&["inspect", "absent"], Exit::Miss).await,
        "key     absent\nstate   MISS (no value)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_from_arguments_and_stdin() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    cli.expect(
        &["set-many", "a", "1", "b", "two words", "--ttl", "60"],
        Exit::Success,
    )
    .await;
    let ran = cli
        .run_with_stdin(
            &["set-many", "--ttl", "60"],
            b"c\t3\r\nd\t{\"x\":\"\\t\"}\n\n",
        )
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(
        cli.expect_text(&["get-many", "a", "b", "c", "d"], Exit::Success)
            .await,
        "a\t1\nb\ttwo words\nc\t3\nd\t{\"x\":\"\\t\"}\n"
    );
    // A missing key: exit 1, the others still printed.
    let ran = cli.run_with_stdin(&["get-many"], b"a\nmissing\nc\n").await;
    assert_eq!(ran.exit, Exit::Miss, "{}", ran.err);
    assert_eq!(ran.out(), "a\t1\nc\t3\n");
    let out = cli
        .expect_text(&["get-many", "a", "missing", "--json"], Exit::Miss)
        .await;
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["results"][0]["outcome"], "HIT");
    assert_eq!(v["results"][1]["outcome"], "MISS");
    assert_eq!(v["results"][1]["key"], "missing");
    // Copy a key space: get-many's output is set-many's input.
    let copied = cli
        .expect(&["get-many", "a", "b", "c"], Exit::Success)
        .await;
    let ran = cli
        .run_with_stdin(&["--cache-version", "copy", "set-many"], &copied)
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(
        cli.expect(&["--cache-version", "copy", "get", "b"], Exit::Success)
            .await,
        b"two words"
    );
    // Values a line cannot hold travel as base64.
    let ran = cli
        .run_with_stdin(&["set-many", "--base64"], b"bmw=\tYQpi\n")
        .await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(cli.expect(&["get", "nl"], Exit::Success).await, b"a\nb");
    let ran = cli.run(&["get-many", "nl"]).await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.err.contains("--base64"), "{}", ran.err);
    assert_eq!(
        cli.expect_text(&["get-many", "--base64", "bmw="], Exit::Success)
            .await,
        "bmw=\tYQpi\n"
    );
    // A bad key fails only itself: exit 4, the error on stderr, the rest done.
    let ran = cli.run(&["set-many", "ok", "1", "", "2"]).await;
    assert_eq!(ran.exit, Exit::Failed);
    assert!(ran.err.contains("INVALID_ARGUMENT"), "{}", ran.err);
    assert_eq!(cli.expect(&["get", "ok"], Exit::Success).await, b"1");
    // Empty values need --allow-empty; odd argument counts are usage errors.
    assert_eq!(cli.run(&["set-many", "e", ""]).await.exit, Exit::Usage);
    assert_eq!(cli.run(&["set-many", "e"]).await.exit, Exit::Usage);
    // delete-many: exit 1 when a key held no value.
    assert_eq!(
        cli.report(&["delete-many", "a", "b", "zz"], Exit::Miss)
            .await,
        "deleted 2 of 3; not found: zz"
    );
    let ran = cli.run_with_stdin(&["delete-many", "-"], b"c\nd\n").await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    cli.expect(&["get-many", "a", "c"], Exit::Miss).await;
    assert_eq!(cli.run(&["delete-many"]).await.exit, Exit::Usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_drops_one_key_space_after_confirmation() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    cli.expect(&["set", "k", "mine"], Exit::Success).await;
    cli.expect(
        &["--cache-version", "other", "set", "k", "theirs"],
        Exit::Success,
    )
    .await;
    // No terminal and no --yes: refused, nothing flushed.
    let ran = cli.run(&["flush"]).await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.err.contains("--yes"), "{}", ran.err);
    // A terminal: asked; anything but yes keeps the keys.
    let ran = cli.run_as(Terminal::ALL, &["flush"], b"n\n").await;
    assert_eq!(ran.exit, Exit::Miss);
    assert!(
        ran.err.contains("Drop every key of version cli"),
        "{}",
        ran.err
    );
    assert!(ran.err.contains("not flushed"), "{}", ran.err);
    cli.expect(&["get", "k"], Exit::Success).await;
    let ran = cli.run_as(Terminal::ALL, &["flush"], b"y\n").await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert!(
        ran.err
            .contains("flushed: every key of version cli is gone"),
        "{}",
        ran.err
    );
    cli.expect(&["get", "k"], Exit::Miss).await;
    assert_eq!(
        cli.expect(&["--cache-version", "other", "get", "k"], Exit::Success)
            .await,
        b"theirs"
    );
    assert_eq!(
        cli.expect(
            &["--cache-version", "other", "flush", "--yes", "--json"],
            Exit::Success
        )
        .await,
        b"{\"flushed\":true}\n"
    );
    cli.expect(&["--cache-version", "other", "get", "k"], Exit::Miss)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_namespaces_from_flags() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    cli.expect(&["set", "k", "in cli"], Exit::Success).await;
    cli.expect(
        &["--cache-version", "other", "set", "k", "in other"],
        Exit::Success,
    )
    .await;
    cli.expect(&["-n", "tenant", "set", "k", "in tenant"], Exit::Success)
        .await;
    assert_eq!(cli.expect(&["get", "k"], Exit::Success).await, b"in cli");
    // Later flags win: the global flag may also follow the subcommand.
    assert_eq!(
        cli.expect(&["get", "k", "--cache-version", "other"], Exit::Success)
            .await,
        b"in other"
    );
    assert_eq!(
        cli.expect(&["--namespace", "tenant", "get", "k"], Exit::Success)
            .await,
        b"in tenant"
    );
    cli.expect(&["--cache-version", "v404", "get", "k"], Exit::Miss)
        .await;
    let ran = cli
        .run(&["--cache-version", "bad version", "get", "k"])
        .await;
    assert_eq!(ran.exit, Exit::Failed);
    assert!(ran.err.contains("INVALID_ARGUMENT"), "{}", ran.err);
    // The old mistake: `--version v2` is refused, not taken as "print the version, exit 0".
    let ran = cli.run(&["--version", "other", "get", "k"]).await;
    assert_eq!(ran.exit, Exit::Usage);
    assert!(ran.out.is_empty());
    // Debug mode needs an admin token.
    let ran = cli.run(&["--debug", "off", "get", "k"]).await;
    assert_eq!(ran.exit, Exit::Failed);
    assert!(
        ran.err.contains("PERMISSION_DENIED") && ran.err.contains("admin token"),
        "{}",
        ran.err
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_an_unreachable_server() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    assert_eq!(cli.expect(&["health"], Exit::Success).await, b"SERVING\n");
    assert_eq!(
        cli.expect(&["health", "mintcache.v1.Cache", "--json"], Exit::Success)
            .await,
        b"{\"status\":\"SERVING\"}\n"
    );
    assert_eq!(
        cli.expect(&["health", ""], Exit::Success).await,
        b"SERVING\n"
    );
    // A service the server does not know is not SERVING: exit 1, as the exit status table
    // says, with the status the health protocol gives it.
    let ran = cli.run(&["health", "no.such.Service"]).await;
    assert_eq!(
        (ran.exit, ran.out().as_str()),
        (Exit::Miss, "SERVICE_UNKNOWN\n")
    );
    assert!(ran.err.is_empty(), "{}", ran.err);
    let report = cli.report(&["health", "no.such.Service"], Exit::Miss).await;
    assert!(
        report.contains("knows no service \"no.such.Service\""),
        "{report}"
    );
    assert_eq!(
        cli.expect(&["health", "no.such.Service", "--json"], Exit::Miss)
            .await,
        b"{\"status\":\"SERVICE_UNKNOWN\"}\n"
    );

    // Nothing listening: exit 3, the endpoint named and what to check, nothing on stdout.
    let port = harness::closed_port().to_string();
    let nowhere = Cli {
        endpoint: format!("127.0.0.1:{port}"),
        admin: None,
    };
    for args in [
        &["get", "k"][..],
        &["health"],
        &["incr", "n"],
        &["set", "k", "v"],
        &["stats"],
    ] {
        let ran = nowhere.run(args).await;
        assert_eq!(ran.exit, Exit::Unreachable, "{args:?}: {}", ran.err);
        assert!(ran.out.is_empty(), "{args:?}");
        assert!(
            ran.err.starts_with("mintcache: error: cannot re"),
            "{args:?}: {}",
            ran.err
        );
        assert!(ran.err.contains(&port) || args == ["stats"], "{}", ran.err);
    }
    let ran = nowhere.run(&["get", "k"]).await;
    assert!(ran.err.contains("is the server running"), "{}", ran.err);
    // An endpoint without a port: the port it stood for is named, and the usual one given.
    let portless = Cli {
        endpoint: "127.0.0.1".to_owned(),
        admin: None,
    };
    let ran = portless.run(&["get", "k"]).await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err
            .starts_with("mintcache: error: cannot reach a mintcache server at 127.0.0.1 (port 80: no port given)")
            && ran.err.contains("-e 127.0.0.1:50051"),
        "{}",
        ran.err
    );
}

/// A gRPC server of another kind on a free loopback port: tonic's health service alone (which
/// answers SERVING for the server as a whole), or no service at all. Like any gRPC server, it
/// answers calls it does not know UNIMPLEMENTED.
async fn another_grpc_server(with_health: bool) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut routes = tonic::service::RoutesBuilder::default();
    if with_health {
        let (_reporter, health) = tonic_health::server::health_reporter();
        routes.add_service(health);
    }
    let routes = routes.routes();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_grpc_server_on_the_port_is_found_out() {
    for with_health in [true, false] {
        let (addr, task) = another_grpc_server(with_health).await;
        let cli = Cli {
            endpoint: addr.clone(),
            admin: None,
        };
        for args in [
            &["get", "k"][..],
            &["set", "k", "v"],
            &["incr", "n"],
            &["health"],
        ] {
            let ran = cli.run(args).await;
            assert_eq!(
                ran.exit,
                Exit::Unreachable,
                "{with_health} {args:?}: {}",
                ran.err
            );
            assert!(ran.out.is_empty(), "{args:?}");
            assert!(
                ran.err.starts_with(&format!(
                    "mintcache: error: cannot reach a mintcache server at {addr}: a gRPC server \
                     answers there, but it is not a mintcache server ("
                )) && ran.err.contains("Another program holds this port"),
                "{with_health} {args:?}: {}",
                ran.err
            );
            let health = if with_health {
                "its health service knows no mintcache.v1.Cache"
            } else {
                "it has no gRPC health service"
            };
            assert!(ran.err.contains(health), "{args:?}: {}", ran.err);
        }
        // The same under --json: an error object on stdout, exit 3.
        let ran = cli.run(&["get", "k", "--json"]).await;
        assert_eq!(ran.exit, Exit::Unreachable);
        assert!(ran.err.is_empty(), "{}", ran.err);
        let v: serde_json::Value = serde_json::from_str(&ran.out()).expect("json");
        assert_eq!(v["error"]["kind"], "unreachable", "{}", ran.out());
        assert_eq!(v["error"]["code"], "UNIMPLEMENTED", "{}", ran.out());
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_every_error_is_a_json_object_on_stdout() {
    let (mut mc, _server, cli) = cli_on_memcached().await;
    let json_error = |ran: &Ran, exit: Exit, kind: &str, code: Option<&str>| {
        assert_eq!(ran.exit, exit, "{} / {}", ran.out(), ran.err);
        assert!(ran.err.is_empty(), "nothing on stderr: {}", ran.err);
        let v: serde_json::Value = serde_json::from_str(&ran.out()).expect("one JSON object");
        assert_eq!(v["error"]["exit"], u64::from(exit.code()), "{}", ran.out());
        assert_eq!(v["error"]["kind"], kind, "{}", ran.out());
        assert_eq!(v["error"]["code"].as_str(), code, "{}", ran.out());
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // Refused by the server: exit 4.
    let ran = cli.run(&["set", "", "v", "--json"]).await;
    let message = json_error(&ran, Exit::Failed, "failed", Some("INVALID_ARGUMENT"));
    assert!(message.starts_with("INVALID_ARGUMENT: "), "{message}");
    // Unreachable: exit 3.
    let nowhere = Cli {
        endpoint: format!("127.0.0.1:{}", harness::closed_port()),
        admin: None,
    };
    let ran = nowhere.run(&["--json", "get", "k"]).await;
    json_error(&ran, Exit::Unreachable, "unreachable", Some("UNAVAILABLE"));
    let ran = nowhere.run(&["--json", "stats"]).await;
    json_error(&ran, Exit::Unreachable, "unreachable", None);
    // A usage error: exit 2.
    let ran = cli.run(&["--json", "set", "k"]).await;
    json_error(&ran, Exit::Usage, "usage", None);
    // In the shell too, one object per failed command.
    let ran = cli
        .run_with_stdin(&["--json", "shell"], b"set '' v\nfrobnicate\nget k\n")
        .await;
    let lines: Vec<serde_json::Value> = ran
        .out()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", ran.out());
    assert_eq!(lines[0]["error"]["code"], "INVALID_ARGUMENT");
    assert_eq!(lines[1]["error"]["kind"], "usage");
    assert_eq!(lines[2]["outcome"], "MISS");
    assert!(ran.err.is_empty(), "{}", ran.err);
    // memcached down behind the server: exit 5.
    mc.stop();
    let ran = cli.run(&["set", "k", "v", "--json"]).await;
    json_error(
        &ran,
        Exit::BackendUnavailable,
        "backend_unavailable",
        Some("UNAVAILABLE"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ports_and_tls_mismatches_are_explained() {
    let mc = Memcached::start();
    let plain = TestServer::start(config(&[&mc])).await;
    let pki = Pki::new();
    let tls = TestServer::start(pki.server_config(&mc, None)).await;
    let ca = pki.write("ca.pem", &pki.ca_pem());
    let other_ca = Pki::new();
    let other_ca = other_ca.write("other-ca.pem", &other_ca.ca_pem());
    let ca = ca.to_string_lossy().into_owned();
    let other_ca = other_ca.to_string_lossy().into_owned();

    let run = |endpoint: String, args: Vec<String>| async move {
        let cli = Cli {
            endpoint,
            admin: None,
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.run(&args).await
    };
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

    // The admin HTTP port given as the gRPC endpoint.
    let ran = run(plain.admin.to_string(), owned(&["get", "k"])).await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err.contains("not gRPC") && ran.err.contains("admin"),
        "{}",
        ran.err
    );
    // memcached given as the endpoint.
    let ran = run(mc.addr(), owned(&["get", "k"])).await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err.contains("is this a mintcache gRPC port"),
        "{}",
        ran.err
    );
    // TLS to a plaintext server.
    let ran = run(
        plain.addr.to_string(),
        owned(&["--tls-ca", &ca, "get", "k"]),
    )
    .await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(ran.err.contains("drop --tls"), "{}", ran.err);
    // Plaintext to a TLS server.
    let ran = run(format!("http://{}", tls.addr), owned(&["get", "k"])).await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err.contains("cannot reach a mintcache server"),
        "{}",
        ran.err
    );
    // A CA that did not sign the server's certificate.
    let tls_endpoint = format!("https://localhost:{}", tls.addr.port());
    let ran = run(
        tls_endpoint.clone(),
        owned(&["--tls-ca", &other_ca, "get", "k"]),
    )
    .await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err.contains("pass the CA that signed it"),
        "{}",
        ran.err
    );
    // A name the certificate was not issued for.
    let ran = run(
        tls_endpoint.clone(),
        owned(&[
            "--tls-ca",
            &ca,
            "--tls-domain",
            "cache.example.com",
            "get",
            "k",
        ]),
    )
    .await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(
        ran.err.contains("not valid for this host name"),
        "{}",
        ran.err
    );
    // And the right settings work.
    let ran = run(tls_endpoint, owned(&["--tls-ca", &ca, "set", "k", "v"])).await;
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_down_is_not_blamed_on_the_endpoint() {
    let (mut mc, _server, cli) = cli_on_memcached().await;
    cli.expect(&["set", "k", "v"], Exit::Success).await;
    mc.stop();
    let ran = cli.run(&["set", "k", "v2"]).await;
    assert_eq!(ran.exit, Exit::BackendUnavailable, "{}", ran.err);
    assert!(
        ran.err
            .starts_with("mintcache: error: the cache backend behind the server is unavailable"),
        "{}",
        ran.err
    );
    // A read fails open: a miss (exit 1) with a warning that says why, whatever the mode.
    let ran = cli.run(&["get", "k"]).await;
    assert_eq!(ran.exit, Exit::Miss, "{}", ran.err);
    assert!(
        ran.err
            .contains("warning: the cache backend behind the server (memcached) is unavailable"),
        "{}",
        ran.err
    );
    let ran = cli.run(&["get", "k", "--json"]).await;
    assert!(ran.out().contains(r#""degraded":true"#), "{}", ran.out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_the_servers_counters() {
    let (_mc, server, cli) = cli_on_memcached().await;
    cli.expect(&["set", "k", "v"], Exit::Success).await;
    // Two reads that take part in the refresh election...
    cli.expect(&["get", "k", "--elect"], Exit::Success).await;
    cli.expect(&["get", "nope", "--elect"], Exit::Miss).await;
    // ... and five peeks: `get` and `inspect` (Get), `get-many` (GetMany), each counted.
    cli.expect(&["get", "k"], Exit::Success).await;
    cli.expect(&["get", "k"], Exit::Success).await;
    cli.expect(&["inspect", "nope"], Exit::Miss).await;
    cli.expect(&["get-many", "k", "nope"], Exit::Miss).await;
    cli.run(&["set", "", "v"]).await;
    let text = cli.expect_text(&["stats"], Exit::Success).await;
    assert!(
        text.contains(&format!("server      {} (admin port)", server.admin)),
        "{text}"
    );
    assert!(text.contains("Get 5, GetMany 1"), "{text}");
    assert!(text.contains("INVALID_ARGUMENT 1"), "{text}");
    for line in [
        "reads       7: HIT 4, STALE 0, REFRESH 0, MISS 3, PENDING 0\n",
        "  elect     2: HIT 1, STALE 0, REFRESH 0, MISS 1, PENDING 0\n",
        "  peek      5: HIT 3, STALE 0, MISS 2, PENDING 0\n",
        "hit ratio   57.1% (HIT + STALE) (elect 50.0%, peek 60.0%)\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(text.contains("memcached   127.0.0.1:"), "{text}");
    let json = cli.expect_text(&["stats", "--json"], Exit::Success).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    // Counts are integers (`"OK":1`, never `1.0`).
    assert!(v["calls"]["Set"]["OK"].is_u64(), "{json}");
    assert!(
        json.contains(r#""Set":{"#) && json.contains(r#""OK":1,"#),
        "{json}"
    );
    assert_eq!(v["outcomes"]["hit"], 4);
    assert_eq!(v["outcomes_by_read"]["peek"]["miss"], 2);
    assert_eq!(v["hit_ratio_by_read"]["elect"], 0.5);
    let raw = cli.expect_text(&["stats", "--raw"], Exit::Success).await;
    assert!(raw.contains("mintcache_rpc_requests_total"), "{raw}");
    assert!(
        raw.contains("mintcache_mint_outcomes_total{outcome=\"hit\",read=\"peek\"} 3"),
        "{raw}"
    );
    // The gRPC port given as the admin address: said so, exit 3.
    let wrong = Cli {
        endpoint: cli.endpoint.clone(),
        admin: Some(cli.endpoint.clone()),
    };
    let ran = wrong.run(&["stats"]).await;
    assert_eq!(ran.exit, Exit::Unreachable, "{}", ran.err);
    assert!(ran.err.contains("--admin"), "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_runs_commands_from_a_pipe() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    let script = b"# a comment\nset greeting \"hello world\" --ttl 60\nget greeting\n\
        use v2\nget greeting\nset greeting bonjour\nget greeting --json\nhelp\n\
        inspect greeting\nquit\nget greeting\n";
    // On a terminal, each command's report follows its value on stdout.
    let terminal = Terminal {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let ran = cli.run_as(terminal, &["shell"], script).await;
    let out = ran.out();
    assert!(out.contains("stored\nhello world\nHIT (fresh for"), "{out}");
    assert!(
        out.contains("\nMISS\nstored\n{"),
        "v2 is another key space: {out}"
    );
    assert!(out.contains(r#""value":"bonjour""#), "{out}");
    assert!(out.contains("Commands (as on the command line"), "{out}");
    assert!(out.contains("value   bonjour\n"), "{out}");
    // `quit` ended it: the last `get` never ran, and the status is that of `inspect`.
    assert_eq!(ran.exit, Exit::Success, "{}", ran.err);
    assert_eq!(out.matches("\"value\"").count(), 1, "{out}");
    assert!(ran.err.is_empty(), "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_in_a_pipe_prints_values_only() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    // `printf 'set a 1\nget a\n' | mintcache shell 2>/dev/null`: values alone on stdout, one
    // per line, and no report anywhere (stderr is not a terminal either).
    let script = b"set a 1 --ttl 5m\nget a\nset b 'two words'\nget b\nget nope\ndelete a\nincr n --initial 7\n";
    let ran = cli.run_with_stdin(&["shell"], script).await;
    assert_eq!(ran.out(), "1\ntwo words\n7\n");
    assert!(ran.err.is_empty(), "{}", ran.err);
    assert_eq!(ran.exit, Exit::Success, "the last command's status");
    // Only stderr a terminal (`... | mintcache shell | tee values.txt`): the reports go there.
    let terminal = Terminal {
        stdin: false,
        stdout: false,
        stderr: true,
    };
    let ran = cli
        .run_as(terminal, &["shell"], b"get b\nget nope\nset c 3\n")
        .await;
    assert_eq!(ran.out(), "two words\n");
    assert!(
        ran.err.starts_with("HIT (fresh for") && ran.err.ends_with("\nMISS\nstored\n"),
        "{}",
        ran.err
    );
    // -q: no reports, even on a terminal.
    let terminal = Terminal {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let ran = cli.run_as(terminal, &["-q", "shell"], b"get b\n").await;
    assert_eq!(ran.out(), "two words\n");
    assert!(ran.err.is_empty(), "{}", ran.err);
}
