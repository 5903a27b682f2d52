//! The `mintcache` CLI end to end, in-process (`mintcache_client::cli::run`, the function the
//! binary is a thin wrapper around) against a server on memcached: round trips of raw bytes
//! through arguments and stdin, exit codes (0 hit / 1 miss / 2 error), `--json`, leases,
//! counters, health, versions and namespaces. `client/tests/cli_binary.rs` checks the real
//! binary's exit codes and streams.

mod harness;

use harness::{Memcached, TestServer, config};
use mintcache_client::cli::{Exit, run};

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
}

impl Cli {
    async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Ran {
        let mut argv = vec![
            "mintcache",
            "--endpoint",
            &self.endpoint,
            "--cache-version",
            "cli",
        ];
        argv.extend_from_slice(args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = stdin;
        let exit = run(argv, &mut stdin, &mut out, &mut err).await;
        Ran {
            exit,
            out,
            err: String::from_utf8_lossy(&err).into_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, b"").await
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
}

async fn cli_on_memcached() -> (Memcached, TestServer, Cli) {
    let mc = Memcached::start();
    let server = TestServer::start(config(&[&mc])).await;
    let cli = Cli {
        endpoint: server.addr.to_string(),
    };
    (mc, server, cli)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_stdin_are_stored_byte_for_byte() {
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
    let out = String::from_utf8(cli.expect(&["get", "page", "--json"], Exit::Success).await)
        .expect("utf-8");
    assert!(out.ends_with("}\n") && out.lines().count() == 1, "{out}");
    for field in [
        r#""outcome":"HIT""#,
        r#""value":"v1""#,
        r#""value_base64":"djE=""#,
        r#""flags":9"#,
        r#""lease_token":null"#,
        r#""degraded":false"#,
    ] {
        assert!(out.contains(field), "{field} in {out}");
    }

    // Invalidate: the next reader wins the refresh. The CLI reports it as a miss (exit 1, no
    // raw output) and --json shows the stale value and the lease token to set with.
    let out = String::from_utf8(
        cli.expect(&["invalidate", "page", "--json"], Exit::Success)
            .await,
    )
    .expect("utf-8");
    assert_eq!(out, "{\"invalidated\":true}\n");
    let out =
        String::from_utf8(cli.expect(&["get", "page", "--json"], Exit::Miss).await).expect("utf-8");
    assert!(
        out.contains(r#""outcome":"REFRESH""#) && out.contains(r#""value":"v1""#),
        "{out}"
    );
    let lease = out
        .split(r#""lease_token":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a lease token")
        .to_owned();
    assert!(
        !lease.is_empty() && lease.bytes().all(|b| b.is_ascii_hexdigit()),
        "{lease}"
    );
    // Others get the stale value (exit 0) meanwhile.
    assert_eq!(cli.expect(&["get", "page"], Exit::Success).await, b"v1");
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
    let out = String::from_utf8(cli.expect(&["get", "absent", "--json"], Exit::Miss).await)
        .expect("utf-8");
    assert!(
        out.contains(r#""outcome":"MISS""#) && out.contains(r#""value":"""#),
        "{out}"
    );
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
    // A value that is not a counter: an error, exit 2, message on stderr.
    cli.expect(&["set", "text", "abc"], Exit::Success).await;
    let ran = cli.run(&["incr", "text"]).await;
    assert_eq!(ran.exit, Exit::Error);
    assert!(ran.out.is_empty());
    assert!(
        ran.err.starts_with("mintcache: error: FAILED_PRECONDITION"),
        "{}",
        ran.err
    );
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
    assert_eq!(ran.exit, Exit::Error);
    assert!(ran.err.contains("INVALID_ARGUMENT"), "{}", ran.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_errors() {
    let (_mc, _server, cli) = cli_on_memcached().await;
    assert_eq!(cli.expect(&["health"], Exit::Success).await, b"SERVING\n");
    assert_eq!(
        cli.expect(&["health", "mintcache.v1.Cache", "--json"], Exit::Success)
            .await,
        b"{\"status\":\"SERVING\"}\n"
    );
    // An unknown service is NOT_FOUND from the health service: exit 2 with the reason.
    let ran = cli.run(&["health", "no.such.Service"]).await;
    assert_eq!(ran.exit, Exit::Error);
    assert!(
        ran.err.starts_with("mintcache: error: NOT_FOUND"),
        "{}",
        ran.err
    );

    // Nothing listening: exit 2, the endpoint named, nothing on stdout.
    let port = harness::closed_port().to_string();
    let nowhere = Cli {
        endpoint: format!("127.0.0.1:{port}"),
    };
    for args in [
        &["get", "k"][..],
        &["health"],
        &["incr", "n"],
        &["set", "k", "v"],
    ] {
        let ran = nowhere.run(&[&["--retries", "1"], args].concat()).await;
        assert_eq!(ran.exit, Exit::Error, "{args:?}");
        assert!(ran.out.is_empty(), "{args:?}");
        assert!(
            ran.err.starts_with("mintcache: error: UNAVAILABLE"),
            "{args:?}: {}",
            ran.err
        );
        assert!(ran.err.contains(&port), "{}", ran.err);
    }
}
