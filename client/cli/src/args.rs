//! The command line's grammar (clap): global connection flags, every command with its
//! options, and the help texts (each command's help ends with examples).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mintcache_client::{DebugMode, LeaseToken, SetOptions};

/// The exit statuses, as shown by `--help` (and in docs/CLI.md).
pub(crate) const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  found / done: HIT or STALE, stored, deleted, flushed, SERVING, ...
  1  not found / not done: MISS, REFRESH, PENDING, not stored, no such key or counter,
     not SERVING (a batch: at least one key)
  2  usage error: bad arguments or input, unreadable file; nothing was sent
  3  no mintcache server reachable: connection refused, TLS failure, not a mintcache
     gRPC port, no answer
  4  the server refused or failed the call: INVALID_ARGUMENT, UNAUTHENTICATED,
     PERMISSION_DENIED, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, UNIMPLEMENTED, ...
  5  the cache backend behind the server (memcached) is unavailable";

const AFTER_HELP: &str = "\
Examples (`mintcache COMMAND --help` shows more):
  mintcache get user:42                          # the value; a look, never elects
  mintcache inspect user:42                      # state, ttl, grace, flags, size
  mintcache set user:42 '{\"name\":\"Ada\"}' --ttl 60
  mintcache add lock:report \"$HOSTNAME\" --ttl 30
  mintcache delete user:42
  mintcache invalidate user:42                   # soft purge
  mintcache touch session:9 --ttl 1800
  mintcache incr hits --initial 1
  mintcache decr stock:42 5
  mintcache get-many user:1 user:2
  mintcache set-many user:1 Ada user:2 Grace --ttl 60
  mintcache delete-many user:1 user:2
  mintcache flush --cache-version r41            # asks first
  mintcache stats
  mintcache health
  mintcache shell

Output: values go to stdout byte for byte. When stderr is a terminal, every command also
says what happened there in one line (HIT, MISS, stored, not found, ...); -q silences it.
--json prints one JSON object per command instead, with every detail.

`--version` alone prints this tool's version; the cache's version (x-cache-version) is
--cache-version.";

#[derive(Debug, Parser)]
#[command(
    name = "mintcache",
    // `--version` is handled before parsing (see `mod.rs`): alone it prints this tool's
    // version, with anything else it is refused, so that `--version v2 get k` cannot pass for
    // a cache version and exit 0 having done nothing.
    disable_version_flag = true,
    // A flag given twice (e.g. from an alias and the command line): the last one wins.
    args_override_self = true,
    about = "Command-line client for the mintcache gRPC cache service",
    after_help = format!("{AFTER_HELP}\n\n{EXIT_STATUS_HELP}"),
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How results are shown (global: valid before or after the command).
#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct OutputArgs {
    /// Print one JSON object per command, with every detail (outcome, ttl, grace, lease, ...).
    #[arg(long, env = "MINTCACHECLI_JSON", value_parser = FalseyValueParser::new(), global = true)]
    pub(crate) json: bool,
    /// No one-line report on stderr (it is shown only when stderr is a terminal anyway).
    #[arg(
        short,
        long,
        env = "MINTCACHECLI_QUIET",
        value_parser = FalseyValueParser::new(),
        global = true
    )]
    pub(crate) quiet: bool,
}

/// Where and how to call the server (global: valid before or after the command).
#[derive(Clone, Debug, Args)]
pub(crate) struct Connection {
    /// Server address; repeat (or separate with commas) to balance over several replicas.
    #[arg(
        short,
        long = "endpoint",
        env = "MINTCACHECLI_ENDPOINT",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub(crate) endpoints: Vec<String>,
    /// Application version whose key space the call uses (x-cache-version; default: the
    /// server's cache.default_version).
    #[arg(long, env = "MINTCACHECLI_CACHE_VERSION", global = true)]
    pub(crate) cache_version: Option<String>,
    /// Namespace (x-cache-namespace; default: the server's cache.namespace).
    #[arg(short, long, env = "MINTCACHECLI_NAMESPACE", global = true)]
    pub(crate) namespace: Option<String>,
    /// Bearer token (admin token for --debug). Prefer the variable: flags show up in `ps`.
    #[arg(
        long,
        env = "MINTCACHECLI_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub(crate) token: Option<String>,
    /// Per-call debug mode (admin callers only).
    #[arg(long, value_enum, env = "MINTCACHECLI_DEBUG", global = true)]
    pub(crate) debug: Option<DebugArg>,
    /// Use TLS (implied by the other --tls-* flags and by https:// endpoints).
    #[arg(long, env = "MINTCACHECLI_TLS", value_parser = FalseyValueParser::new(), global = true)]
    pub(crate) tls: bool,
    /// PEM file of the CA that signed the server's certificate (default: system roots).
    #[arg(long, env = "MINTCACHECLI_TLS_CA", global = true)]
    pub(crate) tls_ca: Option<PathBuf>,
    /// PEM certificate for mutual TLS (with --tls-key).
    #[arg(
        long,
        env = "MINTCACHECLI_TLS_CERT",
        requires = "tls_key",
        global = true
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for mutual TLS (with --tls-cert).
    #[arg(
        long,
        env = "MINTCACHECLI_TLS_KEY",
        requires = "tls_cert",
        global = true
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// Server name to verify, when it differs from the endpoint's host.
    #[arg(long, env = "MINTCACHECLI_TLS_DOMAIN", global = true)]
    pub(crate) tls_domain: Option<String>,
    /// Seconds a call may take, retries included.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "MINTCACHECLI_TIMEOUT",
        default_value = "5",
        value_parser = parse_seconds,
        global = true
    )]
    pub(crate) timeout: Duration,
    /// Retries of a call that failed with UNAVAILABLE (never for incr).
    #[arg(long, env = "MINTCACHECLI_RETRIES", default_value_t = 2, global = true)]
    pub(crate) retries: u32,
    /// Admin HTTP address of the server, for `stats` (default: the first endpoint's host,
    /// port + 1: 127.0.0.1:50051 -> 127.0.0.1:50052).
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "MINTCACHECLI_ADMIN",
        global = true
    )]
    pub(crate) admin: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DebugArg {
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

/// How long a value lives.
#[derive(Clone, Debug, Args)]
pub(crate) struct WriteArgs {
    /// How long the value is fresh: seconds (90) or a duration (90s, 5m, 1h30m, 2d); 0: the
    /// server's default.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        conflicts_with = "no_expiry"
    )]
    pub(crate) ttl: u64,
    /// How long it stays servable as stale afterwards: seconds or a duration, as --ttl; 0: the
    /// server's default.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        conflicts_with = "no_grace"
    )]
    pub(crate) grace: u64,
    /// Opaque flags stored with the value.
    #[arg(long, default_value_t = 0)]
    pub(crate) flags: u32,
    /// The value never expires (until deleted, invalidated, flushed or evicted).
    #[arg(long)]
    pub(crate) no_expiry: bool,
    /// No grace period: the value is gone when its ttl ends, with no STALE phase.
    #[arg(long)]
    pub(crate) no_grace: bool,
    /// Store the value as a counter that `incr` can change (decimal digits).
    #[arg(long, conflicts_with = "flags")]
    pub(crate) counter: bool,
    /// Accept an empty value (refused by default: an empty stdin or variable is usually a
    /// mistake).
    #[arg(long)]
    pub(crate) allow_empty: bool,
}

impl WriteArgs {
    pub(crate) fn options(&self, lease: Option<LeaseToken>) -> SetOptions {
        SetOptions {
            ttl: Duration::from_secs(self.ttl),
            grace: Duration::from_secs(self.grace),
            flags: self.flags,
            lease,
            no_expiry: self.no_expiry,
            no_grace: self.no_grace,
            counter: self.counter,
            recompute: None,
        }
    }
}

/// Where the keys of a batch come from.
#[derive(Clone, Debug, Args)]
pub(crate) struct BatchInput {
    /// Keys and values are base64 (standard alphabet), for bytes that a line cannot hold.
    #[arg(long)]
    pub(crate) base64: bool,
}

#[derive(Clone, Debug, Subcommand)]
pub(crate) enum Command {
    /// Read a key and print its value (a look: never takes part in the refresh election)
    ///
    /// A stale value is STALE, never REFRESH, and no lease token is handed out unless --elect
    /// is given. Exit 0 for HIT and STALE, 1 for MISS (and, with --elect, REFRESH and PENDING).
    #[command(after_help = "Examples:
  mintcache get user:42
  mintcache get user:42 --json
  mintcache get user:42 --elect     # a refresher: REFRESH/MISS come with a lease token")]
    Get {
        /// The key.
        key: OsString,
        /// Take part in the refresh election, as an application does: a stale value may
        /// answer REFRESH (this caller should recompute it) and MISS/REFRESH carry a lease
        /// token to pass to `set --lease`.
        #[arg(long)]
        elect: bool,
        /// With --elect: cold-miss protection (later readers of a missing key get PENDING).
        #[arg(long, requires = "elect")]
        lease_on_miss: bool,
    },
    /// Show everything about a key: state, ttl, grace, flags, counter, size, value
    ///
    /// Never takes part in the refresh election. Exit 0 when the key holds a value, 1
    /// otherwise.
    #[command(
        visible_alias = "peek",
        after_help = "Examples:
  mintcache inspect user:42
  mintcache peek user:42 --json"
    )]
    Inspect {
        /// The key.
        key: OsString,
    },
    /// Store a value (from VALUE, or stdin with `-`)
    ///
    /// A value read from stdin is stored byte for byte. Exit 1 when it was not stored (an
    /// outdated --lease).
    #[command(after_help = "Examples:
  mintcache set user:42 '{\"name\":\"Ada\"}' --ttl 60 --grace 30
  mintcache set config:flags on --no-expiry
  mintcache set visits 0 --counter
  curl -s https://example.com/ | mintcache set page:home - --ttl 300
  mintcache set user:42 \"$NEW\" --lease 010000000000000003   # answer a REFRESH/MISS")]
    Set {
        /// The key.
        key: OsString,
        /// The value; `-` (or nothing, when stdin is not a terminal) reads stdin.
        value: Option<OsString>,
        #[command(flatten)]
        write: WriteArgs,
        /// Lease token (hex) of the REFRESH or MISS this value answers (`get --elect`).
        #[arg(long)]
        lease: Option<LeaseToken>,
    },
    /// Store a value only if the key holds none
    ///
    /// Exit 1 when it held one.
    #[command(after_help = "Examples:
  mintcache add lock:report \"$HOSTNAME\" --ttl 30 --no-grace")]
    Add {
        /// The key.
        key: OsString,
        /// The value; `-` (or nothing, when stdin is not a terminal) reads stdin.
        value: Option<OsString>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Remove a key
    ///
    /// Exit 1 when it held no value.
    #[command(after_help = "Examples:
  mintcache delete user:42")]
    Delete {
        /// The key.
        key: OsString,
    },
    /// Mark a key stale (soft purge)
    ///
    /// The next reader that takes part in the election refreshes it; the others keep getting
    /// the stale value meanwhile. Exit 1 when it held no value.
    #[command(after_help = "Examples:
  mintcache invalidate user:42")]
    Invalidate {
        /// The key.
        key: OsString,
    },
    /// Give an existing key a new fresh ttl, or make it never expire
    ///
    /// Exit 1 when it does not exist.
    #[command(after_help = "Examples:
  mintcache touch session:9 --ttl 1800
  mintcache touch config:flags --no-expiry")]
    Touch {
        /// The key.
        key: OsString,
        /// How long the value is fresh from now: seconds (90) or a duration (90s, 5m, 1h30m,
        /// 2d); 0: the server's default.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "0",
            value_parser = parse_duration,
            allow_hyphen_values = true,
            conflicts_with = "no_expiry"
        )]
        ttl: u64,
        /// The key never expires from now on.
        #[arg(long)]
        no_expiry: bool,
    },
    /// Add DELTA (default 1) to a counter and print the new value
    ///
    /// A negative DELTA subtracts (counters stop at 0). Exit 1 when the counter does not
    /// exist and --initial is not given.
    #[command(after_help = "Examples:
  mintcache incr hits --initial 1 --ttl 3600   # creates it at 1 when missing
  mintcache incr hits 10
  mintcache incr hits -3")]
    Incr {
        /// The counter's key.
        key: OsString,
        /// The amount to add.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        #[command(flatten)]
        create: CounterArgs,
    },
    /// Subtract DELTA (default 1) from a counter and print the new value
    ///
    /// Counters stop at 0. Exit 1 when the counter does not exist and --initial is not given.
    #[command(after_help = "Examples:
  mintcache decr stock:42
  mintcache decr stock:42 5")]
    Decr {
        /// The counter's key.
        key: OsString,
        /// The amount to subtract.
        #[arg(default_value_t = 1)]
        delta: u32,
        #[command(flatten)]
        create: CounterArgs,
    },
    /// Read many keys in one call (arguments, or one key per line on stdin)
    ///
    /// Never takes part in refresh elections. Prints `KEY<TAB>VALUE` per key that holds a
    /// value. Exit 1 when at least one key holds none.
    #[command(
        name = "get-many",
        visible_alias = "mget",
        after_help = "Examples:
  mintcache get-many user:1 user:2 user:3
  cut -f1 keys.tsv | mintcache get-many --json
  mintcache get-many < keys.txt | mintcache --cache-version r43 set-many   # copy"
    )]
    GetMany {
        /// The keys; none (or `-`) reads one key per line from stdin.
        keys: Vec<OsString>,
        #[command(flatten)]
        input: BatchInput,
    },
    /// Store many values in one call (KEY VALUE pairs, or KEY<TAB>VALUE lines on stdin)
    ///
    /// On stdin the value is the rest of the line after the first tab, as is. Exit 1 when at
    /// least one item was not stored.
    #[command(
        name = "set-many",
        visible_alias = "mset",
        after_help = "Examples:
  mintcache set-many user:1 Ada user:2 Grace --ttl 60
  printf 'user:1\\tAda\\nuser:2\\tGrace\\n' | mintcache set-many --ttl 60
  mintcache set-many --base64 < items.b64   # `base64(KEY)<TAB>base64(VALUE)` lines"
    )]
    SetMany {
        /// KEY VALUE pairs; none (or `-`) reads `KEY<TAB>VALUE` lines from stdin.
        pairs: Vec<OsString>,
        #[command(flatten)]
        write: WriteArgs,
        #[command(flatten)]
        input: BatchInput,
    },
    /// Remove many keys in one call (arguments, or one key per line on stdin)
    ///
    /// Exit 1 when at least one key held no value.
    #[command(
        name = "delete-many",
        visible_alias = "mdel",
        after_help = "Examples:
  mintcache delete-many user:1 user:2
  grep '^session:' keys.txt | mintcache delete-many"
    )]
    DeleteMany {
        /// The keys; none (or `-`) reads one key per line from stdin.
        keys: Vec<OsString>,
        #[command(flatten)]
        input: BatchInput,
    },
    /// Drop every key of one key space, and nothing else
    ///
    /// The key space is the call's --cache-version and --namespace (or the server's
    /// defaults). Asks for confirmation unless --yes.
    #[command(after_help = "Examples:
  mintcache --cache-version r41 flush          # asks first
  mintcache --cache-version r41 flush --yes")]
    Flush {
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(short, long)]
        yes: bool,
    },
    /// Show the server's counters: calls, errors, hit ratio, latency, memcached
    ///
    /// Read from the admin port's /metrics (--admin).
    #[command(after_help = "Examples:
  mintcache stats
  mintcache --admin 10.0.0.5:50052 stats --json
  mintcache stats --raw | grep mintcache_rpc")]
    Stats {
        /// Print the Prometheus text as served (not with --json).
        #[arg(long)]
        raw: bool,
    },
    /// Ask the server's gRPC health service and print the status
    ///
    /// grpc.health.v1.Health/Check. Exit 0 for SERVING, 1 for any other status (NOT_SERVING,
    /// or SERVICE_UNKNOWN for a SERVICE the server does not know).
    #[command(after_help = "Examples:
  mintcache health
  mintcache health ''    # the server as a whole")]
    Health {
        /// The service to ask about (default: mintcache.v1.Cache, which also checks that a
        /// mintcache server answers; '' for the server as a whole).
        service: Option<String>,
    },
    /// An interactive shell with history and `help`
    ///
    /// The same commands without `mintcache`, plus `use VERSION`, `namespace NAME` and
    /// `quit`. History is kept in ~/.mintcache_history.
    #[command(after_help = "Examples:
  mintcache shell
  mintcache --cache-version r42 shell
  mintcache shell < commands.txt   # one command per line, no prompt")]
    Shell,
}

/// Creating a missing counter.
#[derive(Clone, Debug, Args)]
pub(crate) struct CounterArgs {
    /// Create a missing counter with this value (DELTA is then not applied).
    #[arg(long)]
    pub(crate) initial: Option<u64>,
    /// Lifetime of a counter created by --initial: seconds (90) or a duration (90s, 5m, 1h,
    /// 2d); 0: the server's default.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0",
        value_parser = parse_duration,
        allow_hyphen_values = true,
        requires = "initial",
        conflicts_with = "no_expiry"
    )]
    pub(crate) ttl: u64,
    /// A counter created by --initial never expires.
    #[arg(long, requires = "initial")]
    pub(crate) no_expiry: bool,
}

/// The forms `--ttl` and `--grace` take, for error messages.
const DURATION_FORMS: &str = "give seconds (90) or a duration (90s, 5m, 1h30m, 2d)";

/// A ttl or grace in whole seconds: `90`, or a duration made of whole numbers of days, hours,
/// minutes and seconds, largest first (`90s`, `5m`, `1h30m`, `2d`), as the CLI prints them.
/// Negative values are refused with words rather than taken for a flag.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative: {DURATION_FORMS}, or 0 for the server's default"
        ));
    }
    let not_a_duration = || format!("not a duration: {DURATION_FORMS}");
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s} seconds is too long"));
    }
    let units = [('d', 86_400u64), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit = rest[digits..].chars().next().ok_or_else(not_a_duration)?;
        let position = units[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(not_a_duration)?;
        if digits == 0 {
            return Err(not_a_duration());
        }
        let (_, seconds) = units[next_unit + position];
        let n: u64 = rest[..digits].parse().map_err(|_| not_a_duration())?;
        total = n
            .checked_mul(seconds)
            .and_then(|add| total.checked_add(add))
            .ok_or_else(|| format!("{s} is too long"))?;
        next_unit += position + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if s.is_empty() {
        return Err(not_a_duration());
    }
    Ok(total)
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// The commands of the interactive shell: the same as the command line's, plus a few of its
/// own. Parsed from one line at a time.
#[derive(Debug, Parser)]
#[command(
    name = "",
    no_binary_name = true,
    disable_version_flag = true,
    disable_help_flag = true,
    disable_help_subcommand = true
)]
pub(crate) struct ShellLine {
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    #[command(subcommand)]
    pub(crate) command: ShellCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ShellCommand {
    #[command(flatten)]
    Cache(Command),
    /// Switch the key space to VERSION (x-cache-version) for the next commands.
    Use {
        /// The version.
        version: String,
    },
    /// Switch to namespace NAME (x-cache-namespace) for the next commands.
    Namespace {
        /// The namespace (`''` for none).
        name: String,
    },
    /// List the commands, or show one command's help.
    Help {
        /// A command.
        command: Option<String>,
    },
    /// Leave the shell (also `exit`, or Ctrl-D).
    #[command(alias = "exit")]
    Quit,
}
