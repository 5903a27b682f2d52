//! `mintcache stats`: the server's own counters, read from its admin port's `/metrics`
//! (Prometheus text) and summed up readably: calls per RPC, errors per code, read outcomes
//! and hit ratio (all reads, then elected reads and peeks apart), degraded reads, shed calls,
//! latency, and per memcached server errors, ejections and pooled connections.
//!
//! Series that have not appeared yet (a counter before its first event) count as zero, and
//! metrics this version does not know are ignored, so older and newer servers both work.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::args::Connection;
use super::errors::CliError;
use super::exit::Exit;
use super::output::{Data, Report};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Reads `/metrics` and builds the report (or, with `raw`, passes the text through).
pub(crate) async fn report(connection: &Connection, raw: bool) -> Result<Report, CliError> {
    let admin = admin_address(connection)?;
    let text = fetch(&admin, connection.timeout).await?;
    if raw {
        return Ok(Report::new(Exit::Success, Value::Null).data(Data::Text(text)));
    }
    let samples = parse(&text);
    if !samples.iter().any(|s| s.name.starts_with("mintcache_")) {
        return Err(CliError::Admin(format!(
            "http://{admin}/metrics answered, but with no mintcache metrics: is --admin the \
             admin port of a mintcache server?"
        )));
    }
    let summary = Summary::new(&samples);
    Ok(Report::new(Exit::Success, summary.json(&admin)).data(Data::Text(summary.text(&admin))))
}

/// `--admin`, or the first endpoint's host with the next port (50051 -> 50052, the server's
/// default admin port next to its default gRPC port).
pub(crate) fn admin_address(connection: &Connection) -> Result<String, CliError> {
    if let Some(admin) = &connection.admin {
        let admin = admin.trim();
        return Ok(admin
            .strip_prefix("http://")
            .unwrap_or(admin)
            .trim_end_matches('/')
            .to_owned());
    }
    let endpoint = connection.endpoints.first().map(|e| e.trim()).unwrap_or("");
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let derived = authority.rsplit_once(':').and_then(|(host, port)| {
        let port: u16 = port.parse().ok()?;
        Some(format!("{host}:{}", port.checked_add(1)?))
    });
    derived.ok_or_else(|| {
        CliError::usage(format!(
            "cannot derive the admin address from the endpoint {endpoint:?}: pass --admin \
             HOST:PORT (the server's admin.listen)"
        ))
    })
}

async fn fetch(admin: &str, timeout: Duration) -> Result<String, CliError> {
    let unreachable = |what: String| {
        CliError::Admin(format!(
            "cannot read http://{admin}/metrics: {what} (the admin address is the server's \
             admin.listen; pass it with --admin HOST:PORT)"
        ))
    };
    let work = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The connection future drives the socket; it ends when the response is read.
        tokio::spawn(connection);
        let request = hyper::Request::get("/metrics")
            .header(hyper::header::HOST, admin)
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(format!("{e} (is it an HTTP port?)")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(unreachable(format!("no answer within {timeout:?}"))))
}

/// Parses the Prometheus text format (comments skipped, labels unescaped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_owned(), value);
    }
}

/// How a read was made (the `read` label of `mintcache_mint_outcomes_total`): `elect` takes
/// part in the refresh election (applications), `peek` only looks (this CLI's `get` and
/// `inspect`, Django's `has_key`). Servers before the label counted elected reads only.
const READS: [&str; 2] = ["elect", "peek"];

/// The read outcomes, in the order shown; a peek is never `refresh`.
const OUTCOMES: [&str; 5] = ["hit", "stale", "refresh", "miss", "pending"];

/// The numbers `stats` shows.
#[derive(Debug, Default)]
struct Summary {
    /// rpc -> code -> calls.
    calls: BTreeMap<String, BTreeMap<String, f64>>,
    /// read (`elect`, `peek`) -> read outcome -> count.
    outcomes: BTreeMap<String, BTreeMap<String, f64>>,
    degraded: f64,
    shed: f64,
    in_flight: f64,
    /// rpc -> (count, sum of seconds, buckets (le, cumulative count)).
    latency: BTreeMap<String, Latency>,
    /// memcached server -> its numbers.
    backend: BTreeMap<String, Backend>,
}

#[derive(Debug, Default)]
struct Latency {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

impl Latency {
    /// The upper bound of the bucket holding the 99th percentile.
    fn p99(&self) -> Option<f64> {
        let mut buckets = self.buckets.clone();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let target = self.count * 0.99;
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= target)
            .map(|(le, _)| *le)
            .filter(|le| le.is_finite())
    }
}

#[derive(Debug, Default)]
struct Backend {
    errors: BTreeMap<String, f64>,
    ejections: f64,
    connections: BTreeMap<String, f64>,
    count: f64,
    sum: f64,
}

/// A label of a sample, `?` when it has none.
fn label(sample: &Sample, name: &str) -> String {
    sample
        .labels
        .get(name)
        .cloned()
        .unwrap_or_else(|| "?".into())
}

/// The memcached server a sample is about (its `node` label).
fn node<'a>(backends: &'a mut BTreeMap<String, Backend>, sample: &Sample) -> &'a mut Backend {
    backends.entry(label(sample, "node")).or_default()
}

impl Summary {
    fn new(samples: &[Sample]) -> Self {
        let mut s = Self::default();
        for sample in samples {
            s.add(sample);
        }
        s
    }

    /// Adds a sample of the calls' series (requests, read outcomes, latency, ...), or of the
    /// memcached servers' series; other series are left out.
    fn add(&mut self, sample: &Sample) {
        let v = sample.value;
        match sample.name.as_str() {
            "mintcache_rpc_requests_total" => {
                *self
                    .calls
                    .entry(label(sample, "rpc"))
                    .or_default()
                    .entry(label(sample, "code"))
                    .or_default() += v;
            }
            "mintcache_mint_outcomes_total" => {
                let read = sample
                    .labels
                    .get("read")
                    .cloned()
                    .unwrap_or_else(|| "elect".into());
                *self
                    .outcomes
                    .entry(read)
                    .or_default()
                    .entry(label(sample, "outcome"))
                    .or_default() += v;
            }
            "mintcache_reads_degraded_total" => self.degraded += v,
            "mintcache_rpc_shed_total" => self.shed += v,
            "mintcache_rpc_in_flight" => self.in_flight += v,
            "mintcache_rpc_duration_seconds_count" => {
                self.latency.entry(label(sample, "rpc")).or_default().count += v;
            }
            "mintcache_rpc_duration_seconds_sum" => {
                self.latency.entry(label(sample, "rpc")).or_default().sum += v;
            }
            "mintcache_rpc_duration_seconds_bucket" => {
                let le = sample.labels.get("le").and_then(|le| match le.as_str() {
                    "+Inf" => Some(f64::INFINITY),
                    le => le.parse().ok(),
                });
                if let Some(le) = le {
                    let latency = self.latency.entry(label(sample, "rpc")).or_default();
                    // Several series (e.g. per code) share bounds: add them up.
                    match latency.buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some((_, count)) => *count += v,
                        None => latency.buckets.push((le, v)),
                    }
                }
            }
            _ => self.add_backend(sample),
        }
    }

    /// Adds a sample of the memcached servers' series (errors, ejections, pool, latency).
    fn add_backend(&mut self, sample: &Sample) {
        let v = sample.value;
        let backends = &mut self.backend;
        match sample.name.as_str() {
            "mintcache_backend_errors_total" => {
                *node(backends, sample)
                    .errors
                    .entry(label(sample, "kind"))
                    .or_default() += v;
            }
            "mintcache_backend_ejections_total" => node(backends, sample).ejections += v,
            "mintcache_pool_connections" => {
                *node(backends, sample)
                    .connections
                    .entry(label(sample, "state"))
                    .or_default() += v;
            }
            "mintcache_backend_duration_seconds_count" => node(backends, sample).count += v,
            "mintcache_backend_duration_seconds_sum" => node(backends, sample).sum += v,
            _ => {}
        }
    }

    /// Read outcome -> count, of every read (`None`) or of one kind of read.
    fn outcomes(&self, read: Option<&str>) -> BTreeMap<String, f64> {
        let mut sum: BTreeMap<String, f64> = BTreeMap::new();
        for (kind, outcomes) in &self.outcomes {
            if read.is_none_or(|r| r == kind) {
                for (outcome, n) in outcomes {
                    *sum.entry(outcome.clone()).or_default() += n;
                }
            }
        }
        sum
    }

    /// HIT + STALE over every read of these outcomes; none without reads.
    fn hit_ratio_of(outcomes: &BTreeMap<String, f64>) -> Option<f64> {
        let reads: f64 = outcomes.values().sum();
        let usable = ["hit", "stale"]
            .iter()
            .filter_map(|o| outcomes.get(*o))
            .sum::<f64>();
        (reads > 0.0).then(|| usable / reads)
    }

    fn hit_ratio(&self) -> Option<f64> {
        Self::hit_ratio_of(&self.outcomes(None))
    }

    /// `15: HIT 8, STALE 1, ...`: the reads of these outcomes and each outcome.
    fn outcome_line(outcomes: &BTreeMap<String, f64>, peek: bool) -> String {
        let list: Vec<String> = OUTCOMES
            .iter()
            .filter(|o| !(peek && **o == "refresh"))
            .map(|o| {
                let n = outcomes.get(*o).copied().unwrap_or(0.0);
                format!("{} {}", o.to_uppercase(), count(n))
            })
            .collect();
        format!("{}: {}", count(outcomes.values().sum()), list.join(", "))
    }

    fn text(&self, admin: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "server      {admin} (admin port)");
        self.calls_text(&mut out);
        self.reads_text(&mut out);
        let _ = writeln!(
            out,
            "degraded    {} reads answered as a miss because memcached failed",
            count(self.degraded)
        );
        let _ = writeln!(
            out,
            "shed        {} calls refused at the concurrency limit",
            count(self.shed)
        );
        let _ = writeln!(out, "in flight   {}", count(self.in_flight));
        for (rpc, latency) in self.latency.iter().filter(|(_, l)| l.count > 0.0) {
            let p99 = latency
                .p99()
                .map_or(String::new(), |le| format!(", p99 <= {}", millis(le)));
            let _ = writeln!(
                out,
                "latency     {rpc}: avg {}{p99}",
                millis(latency.sum / latency.count)
            );
        }
        self.backend_text(&mut out);
        out
    }

    /// The `calls` and `errors` lines.
    fn calls_text(&self, out: &mut String) {
        let total: f64 = self.calls.values().flat_map(|codes| codes.values()).sum();
        // The server shows its common series from the start, at zero: only what happened is
        // listed.
        let per_rpc: Vec<String> = self
            .calls
            .iter()
            .map(|(rpc, codes)| (rpc, codes.values().sum::<f64>()))
            .filter(|(_, n)| *n > 0.0)
            .map(|(rpc, n)| format!("{rpc} {}", count(n)))
            .collect();
        let _ = writeln!(out, "calls       {}{}", count(total), list(&per_rpc));
        let mut errors: BTreeMap<&str, f64> = BTreeMap::new();
        for codes in self.calls.values() {
            for (code, n) in codes.iter().filter(|(code, _)| *code != "OK") {
                *errors.entry(code).or_default() += n;
            }
        }
        let error_list: Vec<String> = errors
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(code, n)| format!("{code} {}", count(*n)))
            .collect();
        let _ = writeln!(
            out,
            "errors      {}{}",
            count(errors.values().sum()),
            list(&error_list)
        );
    }

    /// The `reads` line, one line per kind of read, and the `hit ratio` line.
    fn reads_text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "reads       {}",
            Self::outcome_line(&self.outcomes(None), false)
        );
        let mut ratios = Vec::new();
        for read in READS {
            let outcomes = self.outcomes(Some(read));
            let _ = writeln!(
                out,
                "  {read:<9} {}",
                Self::outcome_line(&outcomes, read == "peek")
            );
            if let Some(ratio) = Self::hit_ratio_of(&outcomes) {
                ratios.push(format!("{read} {:.1}%", ratio * 100.0));
            }
        }
        let ratio = self.hit_ratio().map_or("- (no reads yet)".to_owned(), |r| {
            format!("{:.1}% (HIT + STALE){}", r * 100.0, list(&ratios))
        });
        let _ = writeln!(out, "hit ratio   {ratio}");
    }

    /// One `memcached` line per server.
    fn backend_text(&self, out: &mut String) {
        if self.backend.is_empty() {
            let _ = writeln!(out, "backend     no memcached metrics (embedded store?)");
        }
        for (node, b) in &self.backend {
            let errors: Vec<String> = b
                .errors
                .iter()
                .filter(|(_, n)| **n > 0.0)
                .map(|(kind, n)| format!("{kind} {}", count(*n)))
                .collect();
            let avg = if b.count > 0.0 {
                format!(", avg {}", millis(b.sum / b.count))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "memcached   {node}: errors {}{}, ejections {}, connections {} in use / {} \
                 idle{avg}",
                count(b.errors.values().sum()),
                list(&errors),
                count(b.ejections),
                count(b.connections.get("in_use").copied().unwrap_or(0.0)),
                count(b.connections.get("idle").copied().unwrap_or(0.0)),
            );
        }
    }

    fn json(&self, admin: &str) -> Value {
        let latency: BTreeMap<&String, Value> = self
            .latency
            .iter()
            .map(|(rpc, l)| {
                (
                    rpc,
                    json!({
                        "count": count_json(l.count),
                        "avg_seconds": if l.count > 0.0 { Some(l.sum / l.count) } else { None },
                        "p99_at_most_seconds": l.p99(),
                    }),
                )
            })
            .collect();
        let backend: BTreeMap<&String, Value> = self
            .backend
            .iter()
            .map(|(node, b)| {
                (
                    node,
                    json!({
                        "errors": counts_json(&b.errors),
                        "ejections": count_json(b.ejections),
                        "connections": counts_json(&b.connections),
                        "avg_seconds": if b.count > 0.0 { Some(b.sum / b.count) } else { None },
                    }),
                )
            })
            .collect();
        let calls: BTreeMap<&String, Value> = self
            .calls
            .iter()
            .map(|(rpc, codes)| (rpc, counts_json(codes)))
            .collect();
        let by_read: BTreeMap<&str, Value> = READS
            .iter()
            .map(|read| (*read, counts_json(&self.outcomes(Some(read)))))
            .collect();
        let ratio_by_read: BTreeMap<&str, Option<f64>> = READS
            .iter()
            .map(|read| (*read, Self::hit_ratio_of(&self.outcomes(Some(read)))))
            .collect();
        json!({
            "admin": admin,
            "calls": calls,
            "outcomes": counts_json(&self.outcomes(None)),
            "outcomes_by_read": by_read,
            "hit_ratio": self.hit_ratio(),
            "hit_ratio_by_read": ratio_by_read,
            "reads_degraded": count_json(self.degraded),
            "shed": count_json(self.shed),
            "in_flight": count_json(self.in_flight),
            "latency": latency,
            "backend": backend,
        })
    }
}

/// A counter's value as an integer when it is one.
fn count(n: f64) -> String {
    // An empty sum is -0.0; adding 0.0 makes it 0.0.
    let n = n + 0.0;
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// A counter's value in JSON: an integer when it is one (counters always are; the text format
/// writes them as floats).
fn count_json(n: f64) -> Value {
    let n = n + 0.0;
    if n.fract() == 0.0 && n.abs() < 1e15 {
        // Exact: a whole number below 2^53.
        #[allow(clippy::cast_possible_truncation)]
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

fn counts_json(counts: &BTreeMap<String, f64>) -> Value {
    Value::Object(
        counts
            .iter()
            .map(|(name, n)| (name.clone(), count_json(*n)))
            .collect(),
    )
}

fn millis(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1000.0)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn connection(args: &[&str]) -> Connection {
        let mut argv = vec!["mintcache"];
        argv.extend_from_slice(args);
        argv.push("stats");
        super::super::args::Cli::try_parse_from(argv)
            .expect("valid")
            .connection
    }

    #[test]
    fn the_admin_address_is_derived_from_the_endpoint() {
        assert_eq!(
            admin_address(&connection(&[])).expect("derived"),
            "127.0.0.1:50052"
        );
        assert_eq!(
            admin_address(&connection(&["-e", "https://cache.internal:7000,b:1"]))
                .expect("derived"),
            "cache.internal:7001"
        );
        assert_eq!(
            admin_address(&connection(&["-e", "[::1]:50051"])).expect("derived"),
            "[::1]:50052"
        );
        assert_eq!(
            admin_address(&connection(&["--admin", "http://10.0.0.5:9090/"])).expect("given"),
            "10.0.0.5:9090"
        );
        assert!(admin_address(&connection(&["-e", "https://cache.internal"])).is_err());
    }

    const METRICS: &str = r#"# HELP mintcache_rpc_requests_total Finished calls.
# TYPE mintcache_rpc_requests_total counter
mintcache_rpc_requests_total{code="OK",outcome="hit",rpc="Get",otel_scope_name="mintcache"} 9
mintcache_rpc_requests_total{code="OK",outcome="miss",rpc="Get"} 1
mintcache_rpc_requests_total{code="INVALID_ARGUMENT",outcome="none",rpc="Set"} 2
mintcache_rpc_requests_total{code="OK",outcome="none",rpc="Set"} 3
mintcache_rpc_requests_total{code="UNAVAILABLE",outcome="none",rpc="Delete"} 0
mintcache_mint_outcomes_total{outcome="hit",read="elect"} 6
mintcache_mint_outcomes_total{outcome="miss",read="elect"} 1
mintcache_mint_outcomes_total{outcome="refresh",read="elect"} 0
mintcache_mint_outcomes_total{outcome="hit",read="peek"} 3
mintcache_mint_outcomes_total{outcome="miss",read="peek"} 0
mintcache_rpc_duration_seconds_bucket{code="OK",rpc="Get",le="0.001"} 9
mintcache_rpc_duration_seconds_bucket{code="OK",rpc="Get",le="0.01"} 10
mintcache_rpc_duration_seconds_bucket{code="OK",rpc="Get",le="+Inf"} 10
mintcache_rpc_duration_seconds_sum{code="OK",rpc="Get"} 0.005
mintcache_rpc_duration_seconds_count{code="OK",rpc="Get"} 10
mintcache_backend_errors_total{kind="timeout",node="127.0.0.1:11211"} 2
mintcache_backend_errors_total{kind="connect",node="127.0.0.1:11211"} 0
mintcache_pool_connections{node="127.0.0.1:11211",state="idle"} 3
mintcache_rpc_in_flight 1
target_info{service_name="mintcache",label="a \"quoted\" \\ value"} 1
"#;

    #[test]
    fn metrics_are_parsed_and_summed_up() {
        let samples = parse(METRICS);
        assert_eq!(samples.len(), 20);
        assert_eq!(
            samples[19].labels.get("label").map(String::as_str),
            Some("a \"quoted\" \\ value")
        );
        let summary = Summary::new(&samples);
        assert_eq!(summary.hit_ratio(), Some(0.9));
        let text = summary.text("127.0.0.1:50052");
        for line in [
            "calls       15 (Get 10, Set 5)\n",
            "errors      2 (INVALID_ARGUMENT 2)\n",
            "reads       10: HIT 9, STALE 0, REFRESH 0, MISS 1, PENDING 0\n",
            "  elect     7: HIT 6, STALE 0, REFRESH 0, MISS 1, PENDING 0\n",
            "  peek      3: HIT 3, STALE 0, MISS 0, PENDING 0\n",
            "hit ratio   90.0% (HIT + STALE) (elect 85.7%, peek 100.0%)\n",
            "in flight   1\n",
            "latency     Get: avg 0.50 ms, p99 <= 10.00 ms\n",
            "memcached   127.0.0.1:11211: errors 2 (timeout 2), ejections 0, connections 0 in \
             use / 3 idle\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        // Series at zero (the server shows the common ones from the start) are not listed.
        assert!(
            !text.contains("Delete")
                && !text.contains("UNAVAILABLE")
                && !text.contains("connect 0"),
            "{text}"
        );
        let json = summary.json("a:1");
        // Counts are integers, as they are counted (the text format writes them as floats).
        let text = json.to_string();
        assert!(text.contains(r#""INVALID_ARGUMENT":2,"#), "{text}");
        assert!(json["outcomes"]["hit"].is_u64(), "{text}");
        assert!(json["calls"]["Set"]["INVALID_ARGUMENT"].is_u64(), "{text}");
        assert!(
            json["in_flight"].is_u64() && json["shed"].is_u64(),
            "{text}"
        );
        assert!(json["latency"]["Get"]["count"].is_u64(), "{text}");
        assert_eq!(json["outcomes"]["hit"], 9);
        assert_eq!(json["outcomes_by_read"]["peek"]["hit"], 3);
        assert_eq!(json["outcomes_by_read"]["elect"]["miss"], 1);
        assert_eq!(json["hit_ratio"], 0.9);
        assert_eq!(json["hit_ratio_by_read"]["peek"], 1.0);
        // A server from before the `read` label counted elected reads only.
        let old = Summary::new(&parse(
            "mintcache_mint_outcomes_total{outcome=\"hit\"} 2\n\
             mintcache_mint_outcomes_total{outcome=\"miss\"} 2\n",
        ));
        let text = old.text("a:1");
        assert!(
            text.contains("  elect     4: HIT 2, STALE 0, REFRESH 0, MISS 2, PENDING 0\n")
                && text.contains("  peek      0: HIT 0")
                && text.contains("hit ratio   50.0% (HIT + STALE) (elect 50.0%)\n"),
            "{text}"
        );
        // No series yet: zeros, not errors.
        let empty = Summary::new(&parse("mintcache_rpc_in_flight 0\n"));
        let text = empty.text("a:1");
        assert!(text.contains("hit ratio   - (no reads yet)"), "{text}");
        assert!(
            text.contains("calls       0\n") && !text.contains("-0"),
            "{text}"
        );
    }
}
