//! The validation of `mintcache-bench`'s command line (its grammar is `args`) into a [`Plan`]:
//! every check that does not need the network happens here, before any connection is opened,
//! so that a typo fails in milliseconds with a message naming the flag.

use std::time::Duration;

use clap::Parser;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Endpoint;

use super::args::{Cli, Protocol, WorkloadKind};
use super::control::Bound;
use super::keys::KeySpace;
use super::record::Op;

/// The default server when neither `--endpoint` nor `--memcached` is given.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";
/// Defaults of the get/set mix.
const DEFAULT_GET_RATIO: f64 = 0.9;
const DEFAULT_VALUE_SIZE: usize = 64;
const DEFAULT_KEYS: u64 = 10_000;
const DEFAULT_HIT_RATIO: f64 = 1.0;
const DEFAULT_BATCH: u32 = 100;
const DEFAULT_TTL: u32 = 3600;
const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Defaults of the stampede scenario: a value fresh for one second, then stale for 30 s while
/// one reader recomputes it in 50 ms.
const DEFAULT_STAMPEDE_TTL: u32 = 1;
const DEFAULT_GRACE: u32 = 30;
const DEFAULT_RECOMPUTE: Duration = Duration::from_millis(50);
/// The longest a fill round's read is held: the server's default `cache.max_wait_ms`.
const MAX_FILL_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_VERSION: &str = "bench";
/// A fixed default seed makes two runs draw the same key sequence.
const DEFAULT_SEED: u64 = 1;

/// Upper bounds that catch typos (an extra zero) before they exhaust the machine.
const MAX_CONNECTIONS: usize = 4096;
const MAX_STREAMS: usize = 4096;
const MAX_IN_FLIGHT: usize = 65_536;
/// memcached's default item size limit.
const MAX_VALUE_SIZE: usize = 1 << 20;
const MAX_BATCH: u32 = 10_000;
/// TTLs above 30 days are absolute Unix times in memcached; a benchmark never needs them.
const MAX_TTL: u32 = 30 * 24 * 3600;
/// The largest grace the server accepts (24 bits of the item's client flags).
const MAX_GRACE: u32 = 16_777_215;
/// Room left under memcached's 250-byte key limit for the digits of the key index.
const MAX_KEY_PREFIX: usize = 200;
/// Version and namespace labels: the server's own rule (1..=64 bytes of `[A-Za-z0-9._-]`).
const MAX_LABEL: usize = 64;

/// A command line that cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// A validated run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) target: Target,
    pub(crate) workload: Workload,
    pub(crate) connections: usize,
    pub(crate) streams: usize,
    pub(crate) warmup: Duration,
    pub(crate) bound: Bound,
    pub(crate) timeout: Duration,
    pub(crate) threads: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) json: bool,
}

impl Plan {
    /// Calls in flight at any time.
    pub(crate) fn in_flight(&self) -> usize {
        self.connections * self.streams
    }
}

/// Where the calls go.
#[derive(Debug)]
pub(crate) enum Target {
    Grpc(GrpcTarget),
    Memcached { addr: String, protocol: Protocol },
}

/// A mintcache server (or several replicas) and the metadata of every call.
pub(crate) struct GrpcTarget {
    /// Normalized URIs (`http://...` or `https://...`).
    pub(crate) endpoints: Vec<String>,
    pub(crate) version: AsciiMetadataValue,
    pub(crate) namespace: Option<AsciiMetadataValue>,
    /// `Bearer <token>`, marked sensitive; never printed.
    pub(crate) authorization: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for GrpcTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTarget")
            .field("endpoints", &self.endpoints)
            .field("version", &self.version)
            .field("namespace", &self.namespace)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What is sent.
#[derive(Debug)]
pub(crate) enum Workload {
    Mix(Mix),
    Stampede(Stampede),
    Fill(Fill),
}

/// Reads and writes of keys drawn from a key space.
#[derive(Clone, Debug)]
pub(crate) struct Mix {
    pub(crate) get_ratio: f64,
    /// `None`: unary calls; `Some(k)`: GetMany/SetMany of `k` keys.
    pub(crate) batch: Option<u32>,
    pub(crate) value_size: usize,
    pub(crate) keys: KeySpace,
    pub(crate) hit_ratio: f64,
    pub(crate) ttl: u32,
}

impl Mix {
    /// Keys per call.
    pub(crate) fn keys_per_call(&self) -> u32 {
        self.batch.unwrap_or(1)
    }

    /// The operations this mix makes.
    pub(crate) fn ops(&self) -> [Op; 2] {
        match self.batch {
            None => [Op::Get, Op::Set],
            Some(_) => [Op::GetMany, Op::SetMany],
        }
    }

    /// The next operation: a read with probability `get_ratio`.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> Op {
        let [read, write] = self.ops();
        // f64() is in [0, 1): a ratio of 1 always reads, 0 never does.
        if rng.f64() < self.get_ratio {
            read
        } else {
            write
        }
    }
}

/// The stampede scenario's settings.
#[derive(Debug)]
pub(crate) struct Stampede {
    pub(crate) key_prefix: String,
    pub(crate) ttl: u32,
    pub(crate) grace: u32,
    pub(crate) recompute: Duration,
}

/// The cold-fill scenario's settings.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) key_prefix: String,
    pub(crate) recompute: Duration,
    /// `GetRequest.wait_ms` of every read: the call's timeout less 100 ms, at most the
    /// server's default `cache.max_wait_ms` (10 s).
    pub(crate) wait_ms: u32,
}

/// Parses the arguments (the first one is the program name). `Err` carries clap's error,
/// which also stands for `--help` and `--version`.
pub(crate) fn parse<I, T>(args: I) -> Result<Result<Plan, UsageError>, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    Ok(validate(cli))
}

/// Checks the command line in a fixed order (the first problem found is the one reported):
/// the target, the flags that apply to the workload, concurrency, the bound and the runtime,
/// then the workload's own settings.
fn validate(cli: Cli) -> Result<Plan, UsageError> {
    let stampede = matches!(cli.workload, WorkloadKind::Stampede | WorkloadKind::Fill);
    let target = target(&cli)?;
    if stampede && matches!(target, Target::Memcached { .. }) {
        return Err(usage(format!(
            "--workload {} needs mintcache servers (--endpoint): the refresh election is \
             mintcache's",
            workload_name(cli.workload)
        )));
    }
    check_workload_flags(&cli, stampede)?;
    check_concurrency(&cli)?;
    let bound = bound(&cli)?;
    if cli.timeout.is_zero() {
        return Err(usage("--timeout must be above zero"));
    }
    if cli.threads == Some(0) {
        return Err(usage("--threads must be at least 1"));
    }
    let key_prefix = match &cli.key_prefix {
        Some(prefix) => {
            check_key_prefix(prefix)?;
            prefix.clone()
        }
        None => format!("bench:{:08x}:", run_id()),
    };
    let workload = if cli.workload == WorkloadKind::Fill {
        Workload::Fill(Fill {
            key_prefix,
            recompute: cli.recompute.unwrap_or(DEFAULT_RECOMPUTE),
            wait_ms: u32::try_from(
                cli.timeout
                    .saturating_sub(Duration::from_millis(100))
                    .min(MAX_FILL_WAIT)
                    .as_millis(),
            )
            .unwrap_or(u32::MAX),
        })
    } else if stampede {
        Workload::Stampede(stampede_settings(&cli, key_prefix)?)
    } else {
        Workload::Mix(mix_settings(&cli, &key_prefix)?)
    };
    Ok(Plan {
        target,
        workload,
        connections: cli.connections,
        streams: cli.streams,
        warmup: if stampede {
            Duration::ZERO
        } else {
            cli.warmup.unwrap_or(DEFAULT_WARMUP)
        },
        bound,
        timeout: cli.timeout,
        threads: cli.threads,
        seed: cli.seed.unwrap_or(DEFAULT_SEED),
        json: cli.json,
    })
}

/// The flags of one workload are refused with the others.
fn check_workload_flags(cli: &Cli, stampede: bool) -> Result<(), UsageError> {
    let not_for = |given: bool, flag: &str, what: &str| -> Result<(), UsageError> {
        if given {
            Err(usage(format!("{flag} does not apply to {what}")))
        } else {
            Ok(())
        }
    };
    let mix_flags = [
        (cli.get_ratio.is_some(), "--get-ratio"),
        (cli.value_size.is_some(), "--value-size"),
        (cli.keys.is_some(), "--keys"),
        (cli.hit_ratio.is_some(), "--hit-ratio"),
        (cli.batch.is_some(), "--batch"),
        (cli.ttl.is_some(), "--ttl"),
    ];
    let stampede_flags = [
        (cli.stampede_ttl.is_some(), "--stampede-ttl"),
        (cli.grace.is_some(), "--grace"),
        (cli.recompute.is_some(), "--recompute"),
    ];
    if stampede {
        let name = workload_name(cli.workload);
        for (given, flag) in mix_flags {
            not_for(given, flag, &format!("--workload {name}"))?;
        }
        not_for(
            cli.warmup.is_some(),
            "--warmup",
            &format!("--workload {name} (every stale period or round counts)"),
        )?;
        if cli.workload == WorkloadKind::Fill {
            for (given, flag) in &stampede_flags[..2] {
                not_for(*given, flag, "--workload fill (only to stampede)")?;
            }
        }
    } else {
        for (given, flag) in stampede_flags {
            not_for(given, flag, "--workload unary or batch (only to stampede)")?;
        }
        if cli.workload == WorkloadKind::Unary {
            not_for(
                cli.batch.is_some(),
                "--batch",
                "--workload unary (use --workload batch)",
            )?;
        }
    }
    Ok(())
}

fn workload_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Unary => "unary",
        WorkloadKind::Batch => "batch",
        WorkloadKind::Stampede => "stampede",
        WorkloadKind::Fill => "fill",
    }
}

/// Connections, streams per connection, and the calls in flight they make together.
fn check_concurrency(cli: &Cli) -> Result<(), UsageError> {
    if cli.connections == 0 || cli.connections > MAX_CONNECTIONS {
        return Err(usage(format!(
            "--connections must be 1..={MAX_CONNECTIONS}, not {}",
            cli.connections
        )));
    }
    if cli.streams == 0 || cli.streams > MAX_STREAMS {
        return Err(usage(format!(
            "--streams must be 1..={MAX_STREAMS}, not {}",
            cli.streams
        )));
    }
    if cli.connections * cli.streams > MAX_IN_FLIGHT {
        return Err(usage(format!(
            "--connections x --streams must be at most {MAX_IN_FLIGHT} calls in flight, not {}",
            cli.connections * cli.streams
        )));
    }
    Ok(())
}

/// `--count` wins over `--duration`; neither: the default duration.
fn bound(cli: &Cli) -> Result<Bound, UsageError> {
    match (cli.duration, cli.count) {
        (_, Some(0)) => Err(usage("--count must be at least 1")),
        (_, Some(n)) => Ok(Bound::Count(n)),
        (Some(d), None) if d.is_zero() => Err(usage("--duration must be above zero")),
        (Some(d), None) => Ok(Bound::Duration(d)),
        (None, None) => Ok(Bound::Duration(DEFAULT_DURATION)),
    }
}

fn stampede_settings(cli: &Cli, key_prefix: String) -> Result<Stampede, UsageError> {
    let ttl = cli.stampede_ttl.unwrap_or(DEFAULT_STAMPEDE_TTL);
    if ttl == 0 || ttl > MAX_TTL {
        return Err(usage(format!(
            "--stampede-ttl must be 1..={MAX_TTL} seconds"
        )));
    }
    let grace = cli.grace.unwrap_or(DEFAULT_GRACE);
    if grace == 0 || grace > MAX_GRACE {
        return Err(usage(format!("--grace must be 1..={MAX_GRACE} seconds")));
    }
    Ok(Stampede {
        key_prefix,
        ttl,
        grace,
        recompute: cli.recompute.unwrap_or(DEFAULT_RECOMPUTE),
    })
}

fn mix_settings(cli: &Cli, key_prefix: &str) -> Result<Mix, UsageError> {
    let value_size = cli.value_size.unwrap_or(DEFAULT_VALUE_SIZE);
    if value_size > MAX_VALUE_SIZE {
        return Err(usage(format!(
            "--value-size must be at most {MAX_VALUE_SIZE} bytes (memcached's item limit)"
        )));
    }
    let keys = cli.keys.unwrap_or(DEFAULT_KEYS);
    if keys == 0 {
        return Err(usage("--keys must be at least 1"));
    }
    let batch = match cli.workload {
        WorkloadKind::Batch => {
            let k = cli.batch.unwrap_or(DEFAULT_BATCH);
            if k == 0 || k > MAX_BATCH {
                return Err(usage(format!("--batch must be 1..={MAX_BATCH}")));
            }
            Some(k)
        }
        _ => None,
    };
    let ttl = cli.ttl.unwrap_or(DEFAULT_TTL);
    if ttl == 0 || ttl > MAX_TTL {
        return Err(usage(format!("--ttl must be 1..={MAX_TTL} seconds")));
    }
    let hit_ratio = cli.hit_ratio.unwrap_or(DEFAULT_HIT_RATIO);
    Ok(Mix {
        get_ratio: cli.get_ratio.unwrap_or(DEFAULT_GET_RATIO),
        batch,
        value_size,
        keys: KeySpace::new(key_prefix, keys, hit_ratio),
        hit_ratio,
        ttl,
    })
}

fn target(cli: &Cli) -> Result<Target, UsageError> {
    if let Some(addr) = &cli.memcached {
        for (given, flag) in [
            (cli.cache_version.is_some(), "--cache-version"),
            (cli.namespace.is_some(), "--namespace"),
            (cli.token.is_some(), "--token (or MINTCACHE_BENCH_TOKEN)"),
        ] {
            if given {
                return Err(usage(format!(
                    "{flag} applies to mintcache servers, not to --memcached"
                )));
            }
        }
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => {
                return Err(usage(format!(
                    "--memcached wants host:port (e.g. 127.0.0.1:11211), not `{addr}`"
                )));
            }
        }
        return Ok(Target::Memcached {
            addr: addr.to_owned(),
            protocol: cli.memcached_protocol.unwrap_or(Protocol::Meta),
        });
    }

    let given: Vec<&str> = if cli.endpoints.is_empty() {
        vec![DEFAULT_ENDPOINT]
    } else {
        cli.endpoints.iter().map(String::as_str).collect()
    };
    let endpoints = given
        .into_iter()
        .map(normalize_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    let version = cli.cache_version.as_deref().unwrap_or(DEFAULT_VERSION);
    let version = label("--cache-version", version, false)?;
    let namespace = cli
        .namespace
        .as_deref()
        .map(|ns| label("--namespace", ns, true))
        .transpose()?;
    let authorization = match &cli.token {
        None => None,
        Some(token) => {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(usage(
                    "--token must be printable ASCII without spaces (a bearer token)",
                ));
            }
            let mut value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| usage("--token must be printable ASCII"))?;
            value.set_sensitive(true);
            Some(value)
        }
    };
    Ok(Target::Grpc(GrpcTarget {
        endpoints,
        version,
        namespace,
        authorization,
    }))
}

/// `host:port` becomes `http://host:port`; the result must be a URI tonic accepts.
pub(crate) fn normalize_endpoint(given: &str) -> Result<String, UsageError> {
    let given = given.trim();
    let uri = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    if uri.starts_with("https://") {
        return Err(usage(format!(
            "--endpoint `{given}`: mintcache-bench speaks plaintext HTTP/2 only (measure TLS \
             separately, e.g. with a TLS-terminating proxy in front)"
        )));
    }
    if !uri.starts_with("http://") {
        return Err(usage(format!(
            "--endpoint `{given}`: the scheme must be http"
        )));
    }
    Endpoint::from_shared(uri.clone())
        .map_err(|e| usage(format!("--endpoint `{given}` is not a valid address: {e}")))?;
    Ok(uri)
}

/// A version or namespace label: the server's rule, checked here so that a bad label fails
/// once with a clear message instead of as millions of INVALID_ARGUMENT answers.
fn label(flag: &str, value: &str, empty_ok: bool) -> Result<AsciiMetadataValue, UsageError> {
    let ok_len = value.len() <= MAX_LABEL && (empty_ok || !value.is_empty());
    let ok_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !(ok_len && ok_chars) {
        return Err(usage(format!(
            "{flag} must be {}..={MAX_LABEL} characters of [A-Za-z0-9._-], not `{value}`",
            if empty_ok { 0 } else { 1 }
        )));
    }
    MetadataValue::try_from(value).map_err(|_| usage(format!("{flag}: invalid value `{value}`")))
}

/// Keys go to memcached as they are in `--memcached` mode, so the prefix must be protocol-safe:
/// printable ASCII without spaces, short enough to stay under memcached's 250-byte limit.
fn check_key_prefix(prefix: &str) -> Result<(), UsageError> {
    if prefix.len() > MAX_KEY_PREFIX || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(usage(format!(
            "--key-prefix must be at most {MAX_KEY_PREFIX} printable ASCII characters without \
             spaces"
        )));
    }
    Ok(())
}

/// A number that differs between runs (time and process id), for the default key prefix.
fn run_id() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // Truncating the seconds is fine: only the low bits need to vary.
    (now.as_secs() as u32).rotate_left(16) ^ now.subsec_nanos() ^ std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, UsageError> {
        let mut argv = vec!["mintcache-bench"];
        argv.extend_from_slice(args);
        parse(argv).expect("clap accepts the arguments")
    }

    fn refused(args: &[&str]) -> String {
        plan(args).expect_err("refused").0
    }

    fn clap_refuses(args: &[&str]) {
        let mut argv = vec!["mintcache-bench"];
        argv.extend_from_slice(args);
        assert!(parse(argv).is_err(), "{args:?} should be refused by clap");
    }

    #[test]
    fn defaults_are_unary_90_10_against_the_local_server() {
        let plan = plan(&[]).expect("valid");
        let Target::Grpc(target) = &plan.target else {
            panic!("gRPC target expected");
        };
        assert_eq!(target.endpoints, ["http://127.0.0.1:50051"]);
        assert_eq!(target.version, "bench");
        assert!(target.namespace.is_none() && target.authorization.is_none());
        let Workload::Mix(mix) = &plan.workload else {
            panic!("mix expected");
        };
        assert_eq!(mix.get_ratio, 0.9);
        assert_eq!(mix.batch, None);
        assert_eq!(mix.value_size, 64);
        assert_eq!(mix.keys.len(), 10_000);
        // A key space of its own per run: `bench:<8 hex digits>:<index>`.
        let key = String::from_utf8(mix.keys.key(3)).expect("ascii");
        let (run, index) = key
            .strip_prefix("bench:")
            .and_then(|rest| rest.split_once(':'))
            .expect("bench:<run>:<index>");
        assert!(
            run.len() == 8 && run.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
        assert_eq!(index, "00000003");
        assert_eq!(mix.keys.filled(), 10_000);
        assert_eq!(
            (plan.connections, plan.streams, plan.in_flight()),
            (4, 16, 64)
        );
        assert_eq!(plan.warmup, Duration::from_secs(1));
        assert_eq!(plan.bound, Bound::Duration(Duration::from_secs(10)));
        assert!(!plan.json);
    }

    #[test]
    fn endpoints_are_normalized_and_kept_in_order() {
        let plan =
            plan(&["-e", "10.0.0.1:50051", "--endpoint", "http://cache:8080"]).expect("valid");
        let Target::Grpc(target) = plan.target else {
            panic!("gRPC target expected");
        };
        assert_eq!(
            target.endpoints,
            ["http://10.0.0.1:50051", "http://cache:8080"]
        );
        assert!(refused(&["-e", "ftp://x:1"]).contains("scheme"));
        assert!(refused(&["-e", "https://cache:443"]).contains("plaintext"));
        assert!(refused(&["-e", "bad host:1"]).contains("not a valid address"));
    }

    #[test]
    fn memcached_mode_takes_a_protocol_and_refuses_grpc_only_flags() {
        let plan = plan(&[
            "--memcached",
            "127.0.0.1:11211",
            "--memcached-protocol",
            "text",
        ])
        .expect("valid");
        assert!(matches!(
            plan.target,
            Target::Memcached { ref addr, protocol: Protocol::Text } if addr == "127.0.0.1:11211"
        ));
        let plan = plan_meta();
        assert!(matches!(
            plan.target,
            Target::Memcached {
                protocol: Protocol::Meta,
                ..
            }
        ));
        assert!(refused(&["--memcached", "localhost"]).contains("host:port"));
        assert!(refused(&["--memcached", ":11211"]).contains("host:port"));
        assert!(
            refused(&["--memcached", "h:1", "--cache-version", "v"]).contains("--cache-version")
        );
        assert!(refused(&["--memcached", "h:1", "--token", "t"]).contains("--token"));
        assert!(refused(&["--memcached", "h:1", "-w", "stampede"]).contains("stampede"));
        clap_refuses(&["--memcached", "h:1", "-e", "h:2"]);
        clap_refuses(&["--memcached-protocol", "meta"]);
        clap_refuses(&["--memcached", "h:1", "--memcached-protocol", "binary"]);
    }

    fn plan_meta() -> Plan {
        plan(&["--memcached", "localhost:11211"]).expect("valid")
    }

    #[test]
    fn ratios_are_between_0_and_1() {
        for bad in ["1.5", "-0.1", "x", "NaN"] {
            clap_refuses(&["--get-ratio", bad]);
            clap_refuses(&["--hit-ratio", bad]);
        }
        let plan =
            plan(&["--get-ratio", "0", "--hit-ratio", "0.25", "--keys", "100"]).expect("valid");
        let Workload::Mix(mix) = plan.workload else {
            panic!("mix expected");
        };
        assert_eq!(mix.get_ratio, 0.0);
        assert_eq!(mix.keys.filled(), 25);
    }

    #[test]
    fn concurrency_and_bounds_are_checked() {
        assert!(refused(&["-c", "0"]).contains("--connections"));
        assert!(refused(&["-s", "0"]).contains("--streams"));
        assert!(refused(&["-c", "4096", "-s", "4096"]).contains("in flight"));
        assert!(refused(&["-n", "0"]).contains("--count"));
        assert!(refused(&["-d", "0s"]).contains("--duration"));
        assert!(refused(&["--timeout", "0"]).contains("--timeout"));
        assert!(refused(&["--threads", "0"]).contains("--threads"));
        clap_refuses(&["-d", "5s", "-n", "100"]);
        let plan = plan(&["-n", "500", "-c", "2", "-s", "3", "--warmup", "0"]).expect("valid");
        assert_eq!(plan.bound, Bound::Count(500));
        assert_eq!(plan.in_flight(), 6);
        assert_eq!(plan.warmup, Duration::ZERO);
    }

    #[test]
    fn workload_flags_must_fit_the_workload() {
        assert!(refused(&["--batch", "10"]).contains("--workload batch"));
        assert!(refused(&["-w", "batch", "--batch", "0"]).contains("--batch"));
        assert!(refused(&["-w", "batch", "--batch", "10001"]).contains("--batch"));
        assert!(refused(&["--grace", "5"]).contains("stampede"));
        assert!(refused(&["-w", "stampede", "--get-ratio", "1"]).contains("--get-ratio"));
        assert!(refused(&["-w", "stampede", "--warmup", "1s"]).contains("--warmup"));
        assert!(refused(&["--value-size", "2000000"]).contains("--value-size"));
        assert!(refused(&["--keys", "0"]).contains("--keys"));
        assert!(refused(&["--ttl", "0"]).contains("--ttl"));
        let plan = plan(&["-w", "batch"]).expect("valid");
        let Workload::Mix(mix) = plan.workload else {
            panic!("mix expected");
        };
        assert_eq!((mix.batch, mix.keys_per_call()), (Some(100), 100));
    }

    #[test]
    fn the_mix_picks_reads_by_the_get_ratio() {
        let mix = |args: &[&str]| match plan(args).expect("valid").workload {
            Workload::Mix(mix) => mix,
            Workload::Stampede(_) | Workload::Fill(_) => panic!("mix expected"),
        };
        let mut rng = fastrand::Rng::with_seed(4);
        let unary = mix(&["--get-ratio", "0.9"]);
        let reads = (0..100_000)
            .filter(|_| unary.pick(&mut rng) == Op::Get)
            .count();
        assert!((89_000..=91_000).contains(&reads), "{reads} reads");
        let only_reads = mix(&["-w", "batch", "--get-ratio", "1"]);
        assert!((0..1000).all(|_| only_reads.pick(&mut rng) == Op::GetMany));
        let only_writes = mix(&["-w", "batch", "--get-ratio", "0"]);
        assert!((0..1000).all(|_| only_writes.pick(&mut rng) == Op::SetMany));
    }

    #[test]
    fn fill_takes_only_the_compute_time() {
        let given = plan(&[
            "-w",
            "fill",
            "-e",
            "a:1",
            "--recompute",
            "100ms",
            "--timeout",
            "2s",
        ])
        .expect("valid");
        let Workload::Fill(f) = &given.workload else {
            panic!("fill expected");
        };
        assert_eq!((f.recompute, f.wait_ms), (Duration::from_millis(100), 1900));
        assert_eq!(given.warmup, Duration::ZERO);
        let Workload::Fill(f) = &plan(&["-w", "fill"]).expect("valid").workload else {
            panic!("fill expected");
        };
        assert_eq!(f.wait_ms, 9900);
        assert!(refused(&["-w", "fill", "--grace", "5"]).contains("--grace"));
        assert!(refused(&["-w", "fill", "--keys", "5"]).contains("--keys"));
        assert!(refused(&["--memcached", "h:1", "-w", "fill"]).contains("fill"));
    }

    #[test]
    fn stampede_has_its_own_defaults_and_no_warmup() {
        let plan = plan(&["-w", "stampede", "-e", "a:1", "-e", "b:2"]).expect("valid");
        let Workload::Stampede(s) = &plan.workload else {
            panic!("stampede expected");
        };
        assert_eq!((s.ttl, s.grace), (1, 30));
        assert_eq!(s.recompute, Duration::from_millis(50));
        assert_eq!(plan.warmup, Duration::ZERO);
        assert!(refused(&["-w", "stampede", "--grace", "0"]).contains("--grace"));
        assert!(refused(&["-w", "stampede", "--stampede-ttl", "0"]).contains("--stampede-ttl"));
    }

    #[test]
    fn labels_prefixes_and_tokens_are_checked_before_any_call() {
        assert!(refused(&["--cache-version", ""]).contains("--cache-version"));
        assert!(refused(&["--cache-version", "a:b"]).contains("--cache-version"));
        assert!(refused(&["--namespace", "has space"]).contains("--namespace"));
        assert!(plan(&["--namespace", ""]).is_ok());
        assert!(refused(&["--key-prefix", "has space"]).contains("--key-prefix"));
        let Workload::Mix(mix) = plan(&["--key-prefix", "k:"]).expect("valid").workload else {
            panic!("mix expected");
        };
        assert_eq!(mix.keys.key(1), b"k:00000001");
        assert!(refused(&["--key-prefix", "a\r\nflush_all"]).contains("--key-prefix"));
        assert!(refused(&["--token", "t\u{e9}"]).contains("--token"));
        let plan = plan(&["--token", "s3cret"]).expect("valid");
        let Target::Grpc(target) = &plan.target else {
            panic!("gRPC target expected");
        };
        let auth = target.authorization.as_ref().expect("authorization");
        assert!(auth.is_sensitive());
        assert!(!format!("{plan:?}").contains("s3cret"));
    }
}
