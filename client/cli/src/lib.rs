//! The `mintcache` command-line tool, as library functions ([`run`], [`run_with`]) so that it
//! can be tested in-process; `src/main.rs` only wires them to the process's
//! arguments, streams and terminal.
//!
//! - `args`: the grammar (clap) and help texts;
//! - `exec`: one function per command, from parsed arguments to a `Report`;
//! - `output`: how a report is shown (raw value, one-line report, JSON);
//! - `errors`: what went wrong, in words, and the exit status it gives;
//! - `batch`: the line formats of `get-many`, `set-many` and `delete-many`;
//! - `stats`: the server's counters from its admin port;
//! - `shell`: the interactive shell;
//! - `exit`, `terminal`: [`Exit`] and [`Terminal`], which every other module may use.
//!
//! Dependencies point one way: this file uses the modules, and no module uses this file.
//!
//! Output is made for both people and pipelines: values go to stdout byte for byte, a
//! one-line report of what happened (`HIT`, `not stored: lease outdated`, ...) goes to stderr
//! when stderr is a terminal, `--json` prints one JSON object per command (errors included:
//! `{"error": {...}}` on stdout), and the exit status says what happened ([`Exit`]).
//!
//! Settings come from flags or environment variables. The variables start with
//! `MINTCACHECLI_`, kept apart from the server's `MINTCACHE_*` settings, so a shell or pod can
//! hold both without either reading the other's.

mod args;
mod batch;
mod errors;
mod exec;
mod exit;
mod output;
mod shell;
mod stats;
mod terminal;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};

use clap::Parser;

use self::args::{Cli, Command};
use self::errors::usage_message;
use self::exec::Session;
pub use self::exit::Exit;
pub use self::terminal::Terminal;

/// Runs the `mintcache` command line with these arguments (the first is the program name)
/// and streams, as in a pipeline (no terminal), and returns the exit status. Never panics on
/// bad input; never exits the process.
///
/// ```
/// use mintcache_cli::{Exit, run};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// // Nothing listens on port 1 (and one attempt only): no server reachable, exit status 3.
/// let exit = run(
///     ["mintcache", "--endpoint", "127.0.0.1:1", "--retries", "0", "get", "k"],
///     &mut std::io::empty(),
///     &mut out,
///     &mut err,
/// )
/// .await;
/// assert_eq!(exit, Exit::Unreachable);
/// assert!(out.is_empty());
/// assert!(String::from_utf8_lossy(&err).starts_with("mintcache: error: cannot reach"));
/// # }
/// ```
pub async fn run<I, T>(
    args: I,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut stdin = BufReader::new(stdin);
    run_with(args, Terminal::NONE, &mut stdin, stdout, stderr).await
}

/// Like [`run`], with the streams' [`Terminal`] status: what the binary calls.
pub async fn run_with<I, T>(
    args: I,
    terminal: Terminal,
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match version_flag(&args) {
        VersionFlag::Absent => {}
        VersionFlag::Alone => {
            let _ = writeln!(stdout, "mintcache {}", env!("CARGO_PKG_VERSION"));
            return Exit::Success;
        }
        VersionFlag::Ambiguous => {
            let json = json_requested(&args);
            output::show_error(
                Exit::Usage,
                None,
                errors::VERSION_FLAG_MISUSED,
                json,
                stdout,
                stderr,
            );
            return Exit::Usage;
        }
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help is not an error; it goes to stdout.
            if !e.use_stderr() {
                let _ = write!(stdout, "{}", e.render());
                return Exit::Success;
            }
            if json_requested(&args) {
                let message = usage_message(&e);
                output::show_error(Exit::Usage, None, &message, true, stdout, stderr);
            } else {
                let _ = write!(stderr, "{}", e.render());
            }
            return Exit::Usage;
        }
    };
    let mut session = match Session::new(&cli.connection, terminal) {
        Ok(session) => session,
        Err(e) => return output::fail(&e, &cli.connection, cli.output.json, stdout, stderr),
    };
    if let Command::Shell = cli.command {
        return shell::run(&mut session, cli.output, stdin, stdout, stderr).await;
    }
    session
        .run_command(&cli.command, cli.output, stdin, stdout, stderr, false)
        .await
}

/// Whether JSON output was asked for, on a command line that did not parse: `--json` among
/// the flags, or `MINTCACHECLI_JSON` set to something other than an off value.
pub(crate) fn json_requested(args: &[OsString]) -> bool {
    let flag = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json");
    let variable = std::env::var("MINTCACHECLI_JSON").is_ok_and(|v| {
        !matches!(
            v.to_lowercase().as_str(),
            "" | "false" | "0" | "no" | "off" | "n" | "f"
        )
    });
    flag || variable
}

/// Where `--version` / `-V` appear on the command line.
#[derive(Debug, PartialEq, Eq)]
enum VersionFlag {
    Absent,
    /// The only argument: print the tool's version.
    Alone,
    /// With other arguments: most likely meant as the cache version; refused.
    Ambiguous,
}

fn version_flag(args: &[OsString]) -> VersionFlag {
    let is_version = |a: &OsString| {
        a.to_str()
            .is_some_and(|a| a == "--version" || a == "-V" || a.starts_with("--version="))
    };
    // After `--`, every argument is a positional value (e.g. a key spelt `--version`).
    let flags = args.iter().skip(1).take_while(|a| *a != "--");
    let found = flags.filter(|a| is_version(a)).count();
    match (found, args.len()) {
        (0, _) => VersionFlag::Absent,
        (1, 2) if args.get(1).is_some_and(|a| a == "--version" || a == "-V") => VersionFlag::Alone,
        _ => VersionFlag::Ambiguous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_args(args: &[&str]) -> (Exit, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = run(args, &mut std::io::empty(), &mut out, &mut err).await;
        (
            exit,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        args::ShellLine::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let all = [
            Exit::Success,
            Exit::Miss,
            Exit::Usage,
            Exit::Unreachable,
            Exit::Failed,
            Exit::BackendUnavailable,
        ];
        for (i, exit) in all.iter().enumerate() {
            assert_eq!(usize::from(exit.code()), i);
            assert!(
                args::EXIT_STATUS_HELP.contains(&format!("\n  {i}  ")),
                "{i} in the help"
            );
        }
    }

    #[tokio::test]
    async fn help_goes_to_stdout_with_status_0_and_shows_every_command_with_an_example() {
        use clap::CommandFactory;
        let (exit, out, err) = run_args(&["mintcache", "--help"]).await;
        assert_eq!((exit, err.as_str()), (Exit::Success, ""));
        assert!(out.contains("Exit status:"), "{out}");
        assert!(out.contains("  5  the cache backend"), "{out}");
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            assert!(out.contains(&format!("  {name} ")), "{name} in {out}");
            assert!(
                out.contains(&format!("\n  mintcache {name}")),
                "an example of {name} in {out}"
            );
            let (exit, help, _) = run_args(&["mintcache", name, "--help"]).await;
            assert_eq!(exit, Exit::Success, "{name}");
            let examples = help
                .split("Examples:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("{name} --help has examples: {help}"));
            assert!(
                examples
                    .lines()
                    .next()
                    .is_some_and(|l| l.contains("mintcache")),
                "{name}: {examples}"
            );
        }
    }

    #[tokio::test]
    async fn version_alone_prints_the_tool_version_and_anything_else_is_refused() {
        for flag in ["--version", "-V"] {
            let (exit, out, err) = run_args(&["mintcache", flag]).await;
            assert_eq!((exit, err.as_str()), (Exit::Success, ""));
            assert_eq!(out, format!("mintcache {}\n", env!("CARGO_PKG_VERSION")));
        }
        for args in [
            &["mintcache", "--version", "v2", "get", "user:42"][..],
            &["mintcache", "get", "user:42", "--version", "v2"],
            &["mintcache", "--version=v2", "get", "k"],
            &["mintcache", "-V", "get", "k"],
            &["mintcache", "--version", "--version"],
        ] {
            let (exit, out, err) = run_args(args).await;
            assert_eq!(exit, Exit::Usage, "{args:?}");
            assert!(out.is_empty(), "{args:?}");
            assert!(err.contains("--cache-version"), "{args:?}: {err}");
        }
        // After `--` it is a key like any other (here: nothing listens, so unreachable).
        assert_eq!(
            version_flag(&["mintcache", "get", "--", "--version"].map(OsString::from)),
            VersionFlag::Absent
        );
    }

    #[tokio::test]
    async fn usage_errors_exit_2_on_stderr() {
        for args in [
            &["mintcache"][..],
            &["mintcache", "frobnicate"],
            &["mintcache", "get"],
            &["mintcache", "--debug", "sometimes", "get", "k"],
            &["mintcache", "--timeout", "0", "get", "k"],
            &["mintcache", "set", "k", "v", "--lease", "xyz"],
            &["mintcache", "--tls-cert", "c.pem", "get", "k"],
            &["mintcache", "set", "k", "v", "--ttl", "5", "--no-expiry"],
            &["mintcache", "incr", "k", "--ttl", "5"],
            &["mintcache", "get", "k", "--lease-on-miss"],
        ] {
            let (exit, out, err) = run_args(args).await;
            assert_eq!(exit, Exit::Usage, "{args:?}");
            assert!(out.is_empty(), "{args:?}: {out}");
            assert!(!err.is_empty(), "{args:?}");
        }
    }

    #[tokio::test]
    async fn flags_parse_into_settings() {
        let cli = Cli::try_parse_from([
            "mintcache",
            "-e",
            "a:1,b:2",
            "--endpoint",
            "c:3",
            "--cache-version",
            "r8",
            "--cache-version",
            "r9",
            "incr",
            "hits",
            "-3",
            "--debug",
            "write_only",
            "--json",
        ])
        .expect("valid");
        assert_eq!(cli.connection.endpoints, ["a:1", "b:2", "c:3"]);
        assert_eq!(cli.connection.cache_version.as_deref(), Some("r9"));
        assert_eq!(cli.connection.debug, Some(args::DebugArg::WriteOnly));
        assert!(cli.output.json);
        assert!(matches!(cli.command, Command::Incr { delta: -3, .. }));
    }

    #[test]
    fn durations_are_seconds_or_units_largest_first() {
        use args::parse_duration;
        for (text, seconds) in [
            ("0", 0),
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1d2h3m4s", 93_784),
            (" 60 ", 60),
        ] {
            assert_eq!(parse_duration(text), Ok(seconds), "{text}");
        }
        for text in [
            "",
            "h",
            "1x",
            "1.5h",
            "1m1h",
            "1h1h",
            "5 m",
            "1H",
            "99999999999999999999",
        ] {
            let e = parse_duration(text).expect_err(text);
            assert!(
                e.contains("not a duration: give seconds (90)") || e.contains("too long"),
                "{text}: {e}"
            );
        }
        assert!(parse_duration(&format!("{}d", u64::MAX / 86_400 + 1)).is_err());
    }

    #[tokio::test]
    async fn ttl_arguments_take_durations_and_refuse_negatives_in_words() {
        let cli = Cli::try_parse_from([
            "mintcache",
            "set",
            "k",
            "v",
            "--ttl",
            "1h",
            "--grace",
            "90s",
        ])
        .expect("valid");
        let Command::Set { write, .. } = cli.command else {
            panic!("set");
        };
        assert_eq!((write.ttl, write.grace), (3600, 90));
        let cli = Cli::try_parse_from(["mintcache", "touch", "k", "--ttl", "5m"]).expect("valid");
        assert!(matches!(cli.command, Command::Touch { ttl: 300, .. }));
        let cli = Cli::try_parse_from(["mintcache", "incr", "n", "--initial", "1", "--ttl", "2d"])
            .expect("valid");
        assert!(matches!(&cli.command, Command::Incr { create, .. } if create.ttl == 172_800));
        for args in [
            &["mintcache", "set", "k", "v", "--ttl", "-5"][..],
            &["mintcache", "set", "k", "v", "--grace", "-5"],
            &["mintcache", "touch", "k", "--ttl", "-1h"],
            &["mintcache", "incr", "n", "--initial", "1", "--ttl", "-5"],
        ] {
            let (exit, out, err) = run_args(args).await;
            assert_eq!(exit, Exit::Usage, "{args:?}");
            assert!(out.is_empty(), "{args:?}");
            assert!(err.contains("cannot be negative"), "{args:?}: {err}");
            assert!(!err.contains("-- -"), "no `-- -5` advice: {err}");
        }
        let (exit, _, err) = run_args(&["mintcache", "set", "k", "v", "--ttl", "1hour"]).await;
        assert_eq!(exit, Exit::Usage);
        assert!(
            err.contains("'1hour'") && err.contains("give seconds (90) or a duration (90s, 5m"),
            "{err}"
        );
        assert!(!err.contains("invalid digit"), "{err}");
    }

    #[test]
    fn every_global_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let globals: Vec<_> = cli
            .get_arguments()
            .filter(|a| a.is_global_set() && a.get_long().is_some())
            .collect();
        assert!(globals.len() >= 14, "{}", globals.len());
        for arg in globals {
            let env = arg
                .get_env()
                .unwrap_or_else(|| panic!("--{} has no variable", arg.get_id()));
            assert!(
                env.to_string_lossy().starts_with("MINTCACHECLI_"),
                "{env:?}"
            );
        }
    }

    #[tokio::test]
    async fn with_json_errors_are_json_on_stdout_with_the_same_exit_status() {
        for (line, exit, kind, code) in [
            (
                "--json -e 127.0.0.1:1 --retries 0 get k",
                Exit::Unreachable,
                "unreachable",
                Some("UNAVAILABLE"),
            ),
            ("--json frobnicate", Exit::Usage, "usage", None),
            ("get --json", Exit::Usage, "usage", None),
            ("stats --raw --json", Exit::Usage, "usage", None),
            ("set k v --ttl -5 --json", Exit::Usage, "usage", None),
            ("--version v2 get k --json", Exit::Usage, "usage", None),
            (
                "--json --tls-ca /nonexistent/ca.pem get k",
                Exit::Usage,
                "usage",
                None,
            ),
        ] {
            let args: Vec<&str> = std::iter::once("mintcache")
                .chain(line.split_whitespace())
                .collect();
            let (got, out, err) = run_args(&args).await;
            assert_eq!(got, exit, "{args:?}");
            assert!(err.is_empty(), "{args:?}: nothing on stderr: {err}");
            let v: serde_json::Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("{args:?}: one JSON object: {e}: {out}"));
            assert_eq!(v["error"]["exit"], u64::from(exit.code()), "{out}");
            assert_eq!(v["error"]["kind"], kind, "{out}");
            assert_eq!(v["error"]["code"].as_str(), code, "{out}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{out}"
            );
            assert_eq!(out.lines().count(), 1, "{out}");
        }
    }

    #[tokio::test]
    async fn without_json_errors_are_plain_lines_on_stderr() {
        let (exit, out, err) = run_args(&[
            "mintcache",
            "-e",
            "127.0.0.1:1",
            "--retries",
            "0",
            "get",
            "k",
        ])
        .await;
        assert_eq!((exit, out.as_str()), (Exit::Unreachable, ""));
        assert!(err.starts_with("mintcache: error: cannot reach"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_tls_file_is_reported() {
        let (exit, _, err) =
            run_args(&["mintcache", "--tls-ca", "/nonexistent/ca.pem", "get", "k"]).await;
        assert_eq!(exit, Exit::Usage);
        assert!(err.contains("cannot read CA certificate"), "{err}");
    }
}
