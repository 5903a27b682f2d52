//! The grammar of `mintcache-bench`'s command line (clap): flags, help texts, examples, and
//! the parsers of ratios and durations. What the values must satisfy together is checked in
//! `options`.

use std::time::Duration;

use clap::{Parser, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  # 90/10 Get/Set, 64-byte values, 4 connections x 16 streams (64 calls in flight), 10 s
  mintcache-bench --endpoint 127.0.0.1:50051

  # the same workload sent directly to memcached (meta protocol), for the ratio
  mintcache-bench --memcached 127.0.0.1:11211

  # twemproxy speaks only the text protocol
  mintcache-bench --memcached 127.0.0.1:22121 --memcached-protocol text

  # GetMany of 100 keys, 4 connections x 4 streams, JSON for scripts
  mintcache-bench -e 127.0.0.1:50051 --workload batch --batch 100 --get-ratio 1 -c 4 -s 4 --json

  # half of the reads miss, 1 KiB values, exactly 100000 calls
  mintcache-bench -e 127.0.0.1:50051 --hit-ratio 0.5 --value-size 1024 --count 100000

  # 200 readers of one expiring key over two replicas: expect exactly 1 REFRESH per stale period
  mintcache-bench -e 10.0.0.1:50051 -e 10.0.0.2:50051 --workload stampede -c 8 -s 25 -d 20s

  # 200 readers of a cold key at once, 50 rounds: expect 1 compute per round, no polls
  mintcache-bench -e 10.0.0.1:50051 -e 10.0.0.2:50051 --workload fill -c 8 -s 25 -n 50

Exit status: 0 every call succeeded, 1 the run completed but some calls failed,
2 bad usage, 3 the run could not be done (server unreachable, protocol error).";

/// What the tool sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum WorkloadKind {
    /// `Get`/`Set` (memcached: one get or set per request), mixed by --get-ratio.
    Unary,
    /// `GetMany`/`SetMany` of --batch keys (memcached: pipelined gets or sets), mixed by --get-ratio.
    Batch,
    /// Readers of one expiring hot key; each REFRESH winner recomputes and sets it.
    Stampede,
    /// Rounds of readers of one cold key at once, held by the server for the one fill.
    Fill,
}

/// The memcached protocol of `--memcached` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// The meta protocol (`mg`/`ms`, batches closed by `mn`), as mintcache itself uses.
    Meta,
    /// The text protocol (`get`/`set`, multi-key `get`), which twemproxy speaks.
    Text,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Text => "text",
        }
    }
}

/// The command line as clap parses it; `options` checks it.
#[derive(Debug, Parser)]
#[command(
    name = "mintcache-bench",
    version,
    args_override_self = true,
    about = "Load generator for the mintcache gRPC cache service (and for memcached, side by side)",
    long_about = "Load generator for the mintcache gRPC cache service.\n\n\
        Runs a fixed number of calls in flight (--connections HTTP/2 connections, --streams \
        calls on each) for a warm-up, then for --duration or --count calls, and reports ops/s, \
        latency percentiles of the successful calls (HDR histogram), errors by gRPC code and \
        outcomes (HIT, MISS, STALE, ...). With --memcached the same workload, concurrency and \
        key distribution go directly to memcached (pipelined on each connection), so that \
        ratios can be measured side by side.\n\n\
        Keys are `<key-prefix><index>`, the index zero-padded to 8 digits (`<key-prefix>00000042`) \
        and drawn uniformly from --keys keys. Before \
        the run, the first --hit-ratio share of them is stored; reads draw from all keys (so \
        about --hit-ratio of them hit) and writes from the stored ones (so the hit ratio stays).",
    after_help = EXAMPLES
)]
pub(crate) struct Cli {
    /// mintcache server: `host:port` or `http://host:port` (plaintext HTTP/2) [default:
    /// http://127.0.0.1:50051]. Repeat for several replicas: connections go to them in turn.
    #[arg(
        short = 'e',
        long = "endpoint",
        value_name = "URL",
        conflicts_with = "memcached"
    )]
    pub(crate) endpoints: Vec<String>,
    /// Send the workload directly to memcached at `host:port` instead of a mintcache server.
    #[arg(long, value_name = "ADDR")]
    pub(crate) memcached: Option<String>,
    /// Protocol of --memcached mode [default: meta].
    #[arg(long, value_enum, value_name = "PROTOCOL", requires = "memcached")]
    pub(crate) memcached_protocol: Option<Protocol>,

    /// What to send.
    #[arg(short = 'w', long, value_enum, default_value_t = WorkloadKind::Unary)]
    pub(crate) workload: WorkloadKind,
    /// Share of reads among the calls, 0..=1 [default: 0.9].
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub(crate) get_ratio: Option<f64>,
    /// Bytes per value [default: 64].
    #[arg(long, value_name = "BYTES")]
    pub(crate) value_size: Option<usize>,
    /// Number of distinct keys [default: 10000].
    #[arg(long, value_name = "N")]
    pub(crate) keys: Option<u64>,
    /// Share of the keys stored before the run, 0..=1: the expected share of reads that hit
    /// [default: 1].
    #[arg(long, value_name = "RATIO", value_parser = parse_ratio)]
    pub(crate) hit_ratio: Option<f64>,
    /// Keys per GetMany/SetMany (--workload batch) [default: 100].
    #[arg(long, value_name = "K")]
    pub(crate) batch: Option<u32>,
    /// Fresh seconds of the values written [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ttl: Option<u32>,
    /// Prefix of every key (printable ASCII, no spaces) [default: `bench:<run id>:`, a new
    /// key space per run, so that keys left by an earlier run cannot turn misses into hits].
    #[arg(long, value_name = "PREFIX")]
    pub(crate) key_prefix: Option<String>,

    /// Stampede: seconds the hot value stays fresh after each refresh [default: 1].
    #[arg(long, value_name = "SECONDS", help_heading = "Stampede")]
    pub(crate) stampede_ttl: Option<u32>,
    /// Stampede: seconds the hot value stays servable as STALE [default: 30].
    #[arg(long, value_name = "SECONDS", help_heading = "Stampede")]
    pub(crate) grace: Option<u32>,
    /// Stampede and fill: how long the REFRESH (or MISS) winner takes to compute [default:
    /// 50ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Stampede")]
    pub(crate) recompute: Option<Duration>,

    /// HTTP/2 (or memcached) connections.
    #[arg(
        short = 'c',
        long,
        value_name = "C",
        default_value_t = 4,
        help_heading = "Load"
    )]
    pub(crate) connections: usize,
    /// Calls in flight on each connection (memcached: pipelined requests).
    #[arg(
        short = 's',
        long,
        value_name = "S",
        default_value_t = 16,
        help_heading = "Load"
    )]
    pub(crate) streams: usize,
    /// Load before measuring; its calls are not counted [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Load")]
    pub(crate) warmup: Option<Duration>,
    /// How long to measure [default: 10s].
    #[arg(
        short = 'd',
        long,
        value_name = "DURATION",
        value_parser = parse_duration,
        conflicts_with = "count",
        help_heading = "Load"
    )]
    pub(crate) duration: Option<Duration>,
    /// Measure exactly this many calls instead of a duration.
    #[arg(short = 'n', long, value_name = "N", help_heading = "Load")]
    pub(crate) count: Option<u64>,
    /// Give up on a call (or a memcached reply) after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s", help_heading = "Load")]
    pub(crate) timeout: Duration,
    /// Worker threads of the load generator [default: one per CPU].
    #[arg(long, value_name = "N", help_heading = "Load")]
    pub(crate) threads: Option<usize>,
    /// Seed of the key and operation draws (each call stream derives its own).
    #[arg(long, value_name = "N", help_heading = "Load")]
    pub(crate) seed: Option<u64>,

    /// `x-cache-version` of every call [default: bench].
    #[arg(long, value_name = "VERSION", help_heading = "gRPC calls")]
    pub(crate) cache_version: Option<String>,
    /// `x-cache-namespace` of every call [default: the server's].
    #[arg(long, value_name = "NAMESPACE", help_heading = "gRPC calls")]
    pub(crate) namespace: Option<String>,
    /// Bearer token sent with every call.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MINTCACHE_BENCH_TOKEN",
        hide_env_values = true,
        help_heading = "gRPC calls"
    )]
    pub(crate) token: Option<String>,

    /// Print one JSON object (for scripts) instead of the table.
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
}

/// A share between 0 and 1.
pub(crate) fn parse_ratio(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// `10s`, `500ms`, `2m`, `1.5s`, `1h`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || format!("`{text}` is not a duration (examples: 10s, 500ms, 2m, 1.5s)");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let seconds = value * scale;
    // A bound far above any benchmark (a year), which also keeps the float conversion exact
    // enough and away from overflow.
    if !seconds.is_finite() || seconds > 365.0 * 24.0 * 3600.0 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let ok = |text: &str, expected: Duration| {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        };
        ok("10s", Duration::from_secs(10));
        ok("10", Duration::from_secs(10));
        ok("500ms", Duration::from_millis(500));
        ok("1.5s", Duration::from_millis(1500));
        ok("2m", Duration::from_secs(120));
        ok("1h", Duration::from_secs(3600));
        ok("250us", Duration::from_micros(250));
        ok("0", Duration::ZERO);
        for bad in [
            "",
            "s",
            "10x",
            "-1s",
            "1e3",
            "10 parsecs",
            "1..2s",
            "99999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
