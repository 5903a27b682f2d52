//! The `mintcache` command-line tool, as a library function ([`run`]) so that it can be tested
//! in-process; `src/bin/mintcache.rs` only wires it to the process's arguments and streams.
//!
//! Output is made for shell pipelines: `get` prints the raw value (no newline added), other
//! commands print nothing or one number, and `--json` prints one JSON object per call. The
//! exit status says what happened ([`Exit`]): 0 hit / done, 1 miss / not found / not stored,
//! 2 error (message on stderr).
//!
//! Settings come from flags or environment variables. The variables start with
//! `MINTCACHECLI_`, kept apart from the server's `MINTCACHE_*` settings, so a shell or pod can
//! hold both without either reading the other's.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::{Backoff, Client, DebugMode, Error, LeaseToken, Lookup, ServingStatus, SetOptions};

/// The exit status of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: a hit, or the command did what it was asked.
    Success,
    /// 1: a miss (`MISS`, `REFRESH`, `PENDING`), a missing key or counter, a value not stored,
    /// or a health status other than `SERVING`.
    Miss,
    /// 2: an error (bad usage, unreachable server, error status); the message is on stderr.
    Error,
}

impl Exit {
    /// The process exit code: 0, 1 or 2.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Miss => 1,
            Self::Error => 2,
        }
    }

    fn from_bool(done: bool) -> Self {
        if done { Self::Success } else { Self::Miss }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "mintcache",
    version,
    // A flag given twice (e.g. from an alias and the command line): the last one wins.
    args_override_self = true,
    about = "Command-line client for the mintcache gRPC cache service",
    after_help = "Exit status: 0 hit / done, 1 miss / not found / not stored, 2 error.\n\
                  Keys and values are raw bytes; `get` prints the value exactly as stored."
)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// Print one JSON object with every detail (outcome, ttl, flags, lease token, ...).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Connection {
    /// Server address; repeat (or separate with commas) to balance over several replicas.
    #[arg(
        short,
        long = "endpoint",
        env = "MINTCACHECLI_ENDPOINT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoints: Vec<String>,
    /// Application version whose key space the call uses (x-cache-version).
    #[arg(long, env = "MINTCACHECLI_VERSION", global = true)]
    cache_version: Option<String>,
    /// Namespace (x-cache-namespace).
    #[arg(short, long, env = "MINTCACHECLI_NAMESPACE", global = true)]
    namespace: Option<String>,
    /// Bearer token (admin token for --debug). Prefer the variable: flags show up in `ps`.
    #[arg(
        long,
        env = "MINTCACHECLI_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Per-call debug mode (admin callers only).
    #[arg(long, value_enum, global = true)]
    debug: Option<DebugArg>,
    /// Use TLS (implied by the other --tls-* flags and by https:// endpoints).
    #[arg(long, global = true)]
    tls: bool,
    /// PEM file of the CA that signed the server's certificate (default: system roots).
    #[arg(long, env = "MINTCACHECLI_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// PEM certificate for mutual TLS (with --tls-key).
    #[arg(
        long,
        env = "MINTCACHECLI_TLS_CERT",
        requires = "tls_key",
        global = true
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key for mutual TLS (with --tls-cert).
    #[arg(
        long,
        env = "MINTCACHECLI_TLS_KEY",
        requires = "tls_cert",
        global = true
    )]
    tls_key: Option<PathBuf>,
    /// Server name to verify, when it differs from the endpoint's host.
    #[arg(long, env = "MINTCACHECLI_TLS_DOMAIN", global = true)]
    tls_domain: Option<String>,
    /// Seconds a call may take, retries included.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds, global = true)]
    timeout: Duration,
    /// Retries of a call that failed with UNAVAILABLE (never for incr).
    #[arg(long, default_value_t = 2, global = true)]
    retries: u32,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DebugArg {
    /// Reads miss; writes are accepted and not performed.
    #[value(alias = "turn_off")]
    Off,
    /// Reads miss; writes go through.
    #[value(alias = "write_only")]
    WriteOnly,
}

impl From<DebugArg> for DebugMode {
    fn from(arg: DebugArg) -> Self {
        match arg {
            DebugArg::Off => Self::Off,
            DebugArg::WriteOnly => Self::WriteOnly,
        }
    }
}

#[derive(Debug, Args)]
struct WriteArgs {
    /// Seconds the value is fresh (0: the server's default).
    #[arg(long, default_value_t = 0)]
    ttl: u64,
    /// Seconds it stays servable as stale afterwards (0: the server's default).
    #[arg(long, default_value_t = 0)]
    grace: u64,
    /// Opaque flags stored with the value.
    #[arg(long, default_value_t = 0)]
    flags: u32,
}

impl WriteArgs {
    fn options(&self, lease: Option<LeaseToken>) -> SetOptions {
        SetOptions {
            ttl: Duration::from_secs(self.ttl),
            grace: Duration::from_secs(self.grace),
            flags: self.flags,
            lease,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a key and print its value. Exit 0 for HIT and STALE; 1 for MISS, REFRESH
    /// (this caller should recompute: see --json for the stale value and lease token) and
    /// PENDING.
    Get {
        /// The key.
        key: OsString,
        /// Ask for cold-miss protection (later readers of a missing key get PENDING).
        #[arg(long)]
        lease_on_miss: bool,
    },
    /// Store a value, read from VALUE or, without it (or with `-`), from stdin byte for byte.
    /// Exit 1 when it was not stored (outdated --lease).
    Set {
        /// The key.
        key: OsString,
        /// The value; omit or `-` to read stdin.
        value: Option<OsString>,
        #[command(flatten)]
        write: WriteArgs,
        /// Lease token (hex) of the REFRESH or MISS this value answers.
        #[arg(long)]
        lease: Option<LeaseToken>,
    },
    /// Store a value only if the key holds none. Exit 1 when it held one.
    Add {
        /// The key.
        key: OsString,
        /// The value; omit or `-` to read stdin.
        value: Option<OsString>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove a key. Exit 1 when it held no value.
    Delete {
        /// The key.
        key: OsString,
    },
    /// Mark a key stale (soft purge): the next reader refreshes it. Exit 1 when it held no value.
    Invalidate {
        /// The key.
        key: OsString,
    },
    /// Give an existing key a new fresh ttl. Exit 1 when it does not exist.
    Touch {
        /// The key.
        key: OsString,
        /// New fresh seconds (0: the server's default).
        #[arg(long, default_value_t = 0)]
        ttl: u64,
    },
    /// Add DELTA (default 1, negative to subtract) to a counter and print the new value.
    /// Exit 1 when the counter does not exist and --initial is not given.
    Incr {
        /// The counter's key.
        key: OsString,
        /// The amount to add.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        /// Create a missing counter with this value (DELTA is then not applied).
        #[arg(long)]
        initial: Option<u64>,
        /// Lifetime in seconds of a counter created by --initial (0: the server's default).
        #[arg(long, default_value_t = 0)]
        ttl: u64,
    },
    /// Check the server's gRPC health service (grpc.health.v1.Health/Check) and print the
    /// status. Exit 0 for SERVING, 1 for any other status.
    Health {
        /// The service to ask about; empty for the server as a whole.
        #[arg(default_value = "")]
        service: String,
    },
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// Why a command failed: reported on stderr, exit 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] Error),
    #[error("cannot read {what} {path:?}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the value from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write the output: {0}")]
    Stdout(std::io::Error),
}

/// Runs the `mintcache` command line with these arguments (the first is the program name)
/// and streams, and returns the exit status. Never panics on bad input; never exits the
/// process.
///
/// ```
/// use mintcache_client::cli::{Exit, run};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// // Nothing listens on port 1 (and one attempt only): an error, exit status 2.
/// let exit = run(
///     ["mintcache", "--endpoint", "127.0.0.1:1", "--retries", "0", "get", "k"],
///     &mut std::io::empty(),
///     &mut out,
///     &mut err,
/// )
/// .await;
/// assert_eq!(exit, Exit::Error);
/// assert!(out.is_empty());
/// assert!(String::from_utf8_lossy(&err).starts_with("mintcache: error: UNAVAILABLE"));
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
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; they go to stdout.
            if e.use_stderr() {
                let _ = write!(stderr, "{}", e.render());
                return Exit::Error;
            }
            let _ = write!(stdout, "{}", e.render());
            return Exit::Success;
        }
    };
    match execute(&cli, stdin, stdout).await {
        Ok(exit) => exit,
        Err(e) => {
            let _ = writeln!(stderr, "mintcache: error: {}", explain(&cli, &e));
            Exit::Error
        }
    }
}

/// The error message with its causes (e.g. `tcp connect error: Connection refused`), and a
/// hint where the bare status would puzzle.
fn explain(cli: &Cli, e: &CliError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        // A status is already in the message as `CODE: message` (its own Display is verbose).
        if !cause.is::<tonic::Status>() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    let code = match e {
        CliError::Client(error) => error.code(),
        _ => None,
    };
    match (code, &cli.command) {
        (Some(Code::Unimplemented), Command::Health { .. }) => format!(
            "{message} (the server does not serve the gRPC health service grpc.health.v1.Health)"
        ),
        (Some(Code::Unavailable), _) => format!(
            "{message} (endpoint: {})",
            cli.connection.endpoints.join(", ")
        ),
        _ => message,
    }
}

fn client(c: &Connection) -> Result<Client, CliError> {
    let mut builder = Client::builder()
        .endpoints(c.endpoints.iter().map(|e| e.trim().to_owned()))
        .timeout(c.timeout)
        .retry(Backoff {
            max_attempts: c.retries.saturating_add(1),
            ..Backoff::UNAVAILABLE_DEFAULT
        });
    if let Some(v) = &c.cache_version {
        builder = builder.version(v);
    }
    if let Some(ns) = &c.namespace {
        builder = builder.namespace(ns);
    }
    if let Some(token) = &c.token {
        builder = builder.token(token);
    }
    if let Some(tls) = tls_config(c)? {
        builder = builder.tls(tls);
    }
    let client = builder.build()?;
    Ok(match c.debug {
        Some(mode) => client.with_debug(mode.into()),
        None => client,
    })
}

fn tls_config(c: &Connection) -> Result<Option<ClientTlsConfig>, CliError> {
    let read = |what, path: &PathBuf| {
        std::fs::read(path).map_err(|source| CliError::File {
            what,
            path: path.clone(),
            source,
        })
    };
    if !(c.tls || c.tls_ca.is_some() || c.tls_cert.is_some() || c.tls_domain.is_some()) {
        return Ok(None);
    }
    let mut config = ClientTlsConfig::new();
    config = match &c.tls_ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?)),
        None => config.with_enabled_roots(),
    };
    if let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) {
        config = config.identity(Identity::from_pem(
            read("certificate", cert)?,
            read("private key", key)?,
        ));
    }
    if let Some(domain) = &c.tls_domain {
        config = config.domain_name(domain);
    }
    Ok(Some(config))
}

fn bytes(s: &OsString) -> Vec<u8> {
    s.clone().into_encoded_bytes()
}

fn value_or_stdin(value: Option<&OsString>, stdin: &mut dyn Read) -> Result<Vec<u8>, CliError> {
    match value {
        Some(v) if v != "-" => Ok(bytes(v)),
        _ => {
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf).map_err(CliError::Stdin)?;
            Ok(buf)
        }
    }
}

async fn execute(
    cli: &Cli,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<Exit, CliError> {
    let client = client(&cli.connection)?;
    let mut out = Output {
        json: cli.json,
        stdout,
    };
    match &cli.command {
        Command::Get { key, lease_on_miss } => {
            let client = if *lease_on_miss {
                client.with_lease_on_miss(true)
            } else {
                client
            };
            let lookup = client.get(bytes(key)).await?;
            let exit = Exit::from_bool(lookup.outcome.is_usable());
            if out.json {
                out.json(lookup_json(&lookup))?;
            } else if let Some(value) = lookup.usable_value() {
                out.raw(value)?;
            }
            Ok(exit)
        }
        Command::Set {
            key,
            value,
            write,
            lease,
        } => {
            let value = value_or_stdin(value.as_ref(), stdin)?;
            let stored = client
                .set_with(bytes(key), value, &write.options(lease.clone()))
                .await?;
            out.json_only(json!({ "stored": stored }))?;
            Ok(Exit::from_bool(stored))
        }
        Command::Add { key, value, write } => {
            let value = value_or_stdin(value.as_ref(), stdin)?;
            let stored = client.add(bytes(key), value, &write.options(None)).await?;
            out.json_only(json!({ "stored": stored }))?;
            Ok(Exit::from_bool(stored))
        }
        Command::Delete { key } => {
            let deleted = client.delete(bytes(key)).await?;
            out.json_only(json!({ "deleted": deleted }))?;
            Ok(Exit::from_bool(deleted))
        }
        Command::Invalidate { key } => {
            let invalidated = client.invalidate(bytes(key)).await?;
            out.json_only(json!({ "invalidated": invalidated }))?;
            Ok(Exit::from_bool(invalidated))
        }
        Command::Touch { key, ttl } => {
            let touched = client.touch(bytes(key), Duration::from_secs(*ttl)).await?;
            out.json_only(json!({ "touched": touched }))?;
            Ok(Exit::from_bool(touched))
        }
        Command::Incr {
            key,
            delta,
            initial,
            ttl,
        } => {
            let value = match initial {
                Some(initial) => Some(
                    client
                        .increment_or_create(
                            bytes(key),
                            *delta,
                            *initial,
                            Duration::from_secs(*ttl),
                        )
                        .await?,
                ),
                None => client.increment(bytes(key), *delta).await?,
            };
            if out.json {
                out.json(json!({ "value": value }))?;
            } else if let Some(value) = value {
                out.raw(format!("{value}\n").as_bytes())?;
            }
            Ok(Exit::from_bool(value.is_some()))
        }
        Command::Health { service } => {
            let status = client.health(service).await?;
            let name = status.as_str_name();
            if out.json {
                out.json(json!({ "status": name }))?;
            } else {
                out.raw(format!("{name}\n").as_bytes())?;
            }
            Ok(Exit::from_bool(status == ServingStatus::Serving))
        }
    }
}

fn lookup_json(l: &Lookup) -> Value {
    json!({
        "outcome": l.outcome.as_str(),
        "value": std::str::from_utf8(&l.value).ok(),
        "value_base64": BASE64.encode(&l.value),
        "flags": l.flags,
        "ttl_seconds": l.ttl.as_secs(),
        "lease_token": l.lease.as_ref().map(ToString::to_string),
        "degraded": l.degraded,
    })
}

/// Where results go: raw bytes, or one JSON object per call with `--json`.
struct Output<'a> {
    json: bool,
    stdout: &'a mut dyn Write,
}

impl Output<'_> {
    fn raw(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        self.stdout
            .write_all(bytes)
            .and_then(|()| self.stdout.flush())
            .map_err(CliError::Stdout)
    }

    fn json(&mut self, value: Value) -> Result<(), CliError> {
        self.raw(format!("{value}\n").as_bytes())
    }

    /// For commands whose raw output is just the exit status.
    fn json_only(&mut self, value: Value) -> Result<(), CliError> {
        if self.json { self.json(value) } else { Ok(()) }
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
    }

    #[tokio::test]
    async fn help_and_version_go_to_stdout_with_status_0() {
        let (exit, out, err) = run_args(&["mintcache", "--help"]).await;
        assert_eq!((exit, err.as_str()), (Exit::Success, ""));
        assert!(out.contains("Exit status: 0 hit"), "{out}");
        let (exit, out, _) = run_args(&["mintcache", "--version"]).await;
        assert_eq!(exit, Exit::Success);
        assert!(out.starts_with("mintcache "), "{out}");
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
        ] {
            let (exit, out, err) = run_args(args).await;
            assert_eq!(exit, Exit::Error, "{args:?}");
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
        assert!(matches!(cli.connection.debug, Some(DebugArg::WriteOnly)));
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Incr { delta: -3, .. }));
    }

    #[tokio::test]
    async fn a_missing_tls_file_is_reported() {
        let (exit, _, err) =
            run_args(&["mintcache", "--tls-ca", "/nonexistent/ca.pem", "get", "k"]).await;
        assert_eq!(exit, Exit::Error);
        assert!(err.contains("cannot read CA certificate"), "{err}");
    }

    #[test]
    fn a_server_without_the_health_service_gets_a_hint() {
        let cli = Cli::try_parse_from(["mintcache", "health"]).expect("valid");
        let e = CliError::Client(tonic::Status::unimplemented("").into());
        assert_eq!(
            explain(&cli, &e),
            "UNIMPLEMENTED (the server does not serve the gRPC health service \
             grpc.health.v1.Health)"
        );
        let cli = Cli::try_parse_from(["mintcache", "get", "k"]).expect("valid");
        assert_eq!(explain(&cli, &e), "UNIMPLEMENTED");
    }

    #[test]
    fn stdin_is_read_byte_for_byte_when_no_value_is_given() {
        let mut stdin: &[u8] = b"line\n\0\xff";
        assert_eq!(
            value_or_stdin(None, &mut stdin).expect("read"),
            b"line\n\0\xff"
        );
        let mut stdin: &[u8] = b"from stdin";
        assert_eq!(
            value_or_stdin(Some(&"-".into()), &mut stdin).expect("read"),
            b"from stdin"
        );
        assert_eq!(
            value_or_stdin(Some(&"arg".into()), &mut stdin).expect("read"),
            b"arg"
        );
    }
}
