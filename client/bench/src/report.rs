//! The results of a run: one [`Report`] built from the plan and the merged recorders, printed
//! either as a table for people or as one JSON object for scripts (the same numbers), plus the
//! live progress line shown while a run is going on a terminal.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use super::fill;
use super::options::{Plan, Target, Workload};
use super::record::{Latency, OpStats, Outcome, Summary};
use super::stampede::Verdict;

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) tool: &'static str,
    pub(crate) version: &'static str,
    pub(crate) target: TargetReport,
    pub(crate) workload: WorkloadReport,
    pub(crate) connections: usize,
    pub(crate) streams: usize,
    /// Calls in flight: connections x streams.
    pub(crate) in_flight: usize,
    pub(crate) warmup_seconds: f64,
    /// From the start of the measurement to the end of the last measured call.
    pub(crate) elapsed_seconds: f64,
    /// The run was stopped early (Ctrl-C); the figures cover what ran.
    pub(crate) interrupted: bool,
    /// CPU cores the load generator itself kept busy during the warm-up and the measurement
    /// (CPU time / wall time; Linux only). On a shared machine, what it takes the servers lack.
    pub(crate) client_cpu_cores: Option<f64>,
    #[serde(flatten)]
    pub(crate) total: OpReport,
    /// The same figures per operation.
    pub(crate) by_op: Vec<OpReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stampede: Option<StampedeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fill: Option<FillReport>,
}

/// Where the calls went.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum TargetReport {
    Grpc {
        endpoints: Vec<String>,
    },
    Memcached {
        addr: String,
        protocol: &'static str,
    },
}

/// What was sent.
#[derive(Debug, Serialize)]
pub(crate) struct WorkloadReport {
    /// `unary`, `batch` or `stampede`.
    pub(crate) kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) get_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) keys: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hit_ratio: Option<f64>,
    /// Keys stored before the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prefilled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ttl_seconds: Option<u32>,
}

/// The figures of one operation, or of all of them.
#[derive(Debug, Serialize)]
pub(crate) struct OpReport {
    /// `get`, `set`, `get_many`, `set_many`, or `all`.
    pub(crate) op: &'static str,
    /// Measured calls: `ok` + the failed ones (`errors`).
    pub(crate) calls: u64,
    pub(crate) ok: u64,
    /// Keys of the successful calls: the sum of `outcomes` and `key_errors`.
    pub(crate) keys: u64,
    /// Successful calls per second.
    pub(crate) ops_per_second: f64,
    /// Keys of successful calls per second.
    pub(crate) keys_per_second: f64,
    /// Latency of the successful calls.
    pub(crate) latency_us: Latency,
    /// Keys by outcome (`HIT`, `MISS`, `STALE`, `REFRESH`, `PENDING`, `STORED`, `NOT_STORED`).
    pub(crate) outcomes: BTreeMap<&'static str, u64>,
    /// Failed calls by gRPC code (or memcached error).
    pub(crate) errors: BTreeMap<&'static str, u64>,
    /// Failed keys inside successful batched calls, by code.
    pub(crate) key_errors: BTreeMap<&'static str, u64>,
}

impl OpReport {
    fn of(op: &'static str, stats: &OpStats, summary: &Summary) -> Self {
        Self {
            op,
            calls: stats.calls,
            ok: stats.ok,
            keys: stats.keys,
            ops_per_second: summary.rate(stats.ok),
            keys_per_second: summary.rate(stats.keys),
            latency_us: Latency::of(&stats.latency),
            outcomes: Outcome::ALL
                .into_iter()
                .filter(|o| stats.outcome(*o) > 0)
                .map(|o| (o.name(), stats.outcome(o)))
                .collect(),
            errors: stats.errors.clone(),
            key_errors: stats.key_errors.clone(),
        }
    }
}

/// The stampede scenario's verdict and settings.
#[derive(Debug, Serialize)]
pub(crate) struct StampedeReport {
    pub(crate) key: String,
    pub(crate) readers: usize,
    pub(crate) endpoints: usize,
    pub(crate) ttl_seconds: u32,
    pub(crate) grace_seconds: u32,
    pub(crate) recompute_ms: f64,
    #[serde(flatten)]
    pub(crate) verdict: Verdict,
    /// Reads measured (every outcome).
    pub(crate) reads: u64,
    /// STALE answers as a share of the reads, in percent.
    pub(crate) stale_percent: f64,
}

/// The cold-fill scenario's verdict and settings.
#[derive(Debug, Serialize)]
pub(crate) struct FillReport {
    pub(crate) readers: usize,
    pub(crate) endpoints: usize,
    pub(crate) recompute_ms: f64,
    pub(crate) wait_ms: u32,
    #[serde(flatten)]
    pub(crate) verdict: fill::Verdict,
}

impl Report {
    pub(crate) fn new(
        plan: &Plan,
        summary: &Summary,
        interrupted: bool,
        stampede: Option<StampedeReport>,
    ) -> Self {
        let target = match &plan.target {
            Target::Grpc(grpc) => TargetReport::Grpc {
                endpoints: grpc.endpoints.clone(),
            },
            Target::Memcached { addr, protocol } => TargetReport::Memcached {
                addr: addr.clone(),
                protocol: protocol.name(),
            },
        };
        let workload = match &plan.workload {
            Workload::Mix(mix) => WorkloadReport {
                kind: if mix.batch.is_some() {
                    "batch"
                } else {
                    "unary"
                },
                get_ratio: Some(mix.get_ratio),
                batch: mix.batch,
                value_size: Some(mix.value_size),
                keys: Some(mix.keys.len()),
                hit_ratio: Some(mix.hit_ratio),
                prefilled: Some(mix.keys.filled()),
                ttl_seconds: Some(mix.ttl),
            },
            Workload::Stampede(_) | Workload::Fill(_) => WorkloadReport {
                kind: if matches!(plan.workload, Workload::Fill(_)) {
                    "fill"
                } else {
                    "stampede"
                },
                get_ratio: None,
                batch: None,
                value_size: None,
                keys: None,
                hit_ratio: None,
                prefilled: None,
                ttl_seconds: None,
            },
        };
        let stampede = stampede.map(|s| s.with_reads(summary));
        Self {
            tool: "mintcache-bench",
            version: env!("CARGO_PKG_VERSION"),
            target,
            workload,
            connections: plan.connections,
            streams: plan.streams,
            in_flight: plan.in_flight(),
            warmup_seconds: plan.warmup.as_secs_f64(),
            elapsed_seconds: summary.elapsed.as_secs_f64(),
            interrupted,
            client_cpu_cores: None,
            total: OpReport::of("all", &summary.total, summary),
            by_op: summary
                .by_op
                .iter()
                .map(|(op, stats)| OpReport::of(op.name(), stats, summary))
                .collect(),
            stampede,
            fill: None,
        }
    }

    /// Whether any call, or any key of a batch, failed.
    pub(crate) fn has_failures(&self) -> bool {
        !self.total.errors.is_empty() || !self.total.key_errors.is_empty()
    }

    pub(crate) fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    pub(crate) fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let target = match &self.target {
            TargetReport::Grpc { endpoints } => format!("gRPC {}", endpoints.join(", ")),
            TargetReport::Memcached { addr, protocol } => {
                format!("memcached {addr} ({protocol} protocol)")
            }
        };
        writeln!(out, "{} {}", self.tool, self.version)?;
        writeln!(out, "target       {target}")?;
        writeln!(out, "workload     {}", self.workload.describe())?;
        writeln!(
            out,
            "concurrency  {} connections x {} streams = {} calls in flight",
            self.connections, self.streams, self.in_flight
        )?;
        writeln!(
            out,
            "measured     {:.2} s after a {:.2} s warm-up{}",
            self.elapsed_seconds,
            self.warmup_seconds,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        if let Some(cores) = self.client_cpu_cores {
            writeln!(out, "client CPU   {cores:.2} cores (this load generator)")?;
        }
        writeln!(out)?;

        let batched = self.workload.batch.is_some();
        write!(out, "{:<10} {:>10} {:>12}", "op", "calls", "ops/s")?;
        if batched {
            write!(out, " {:>12}", "keys/s")?;
        }
        writeln!(
            out,
            " {:>9} {:>9} {:>9} {:>9} {:>8}",
            "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
        )?;
        let mut rows: Vec<&OpReport> = self.by_op.iter().collect();
        if rows.len() != 1 {
            rows.push(&self.total);
        }
        for row in rows {
            write!(
                out,
                "{:<10} {:>10} {:>12.1}",
                row.op, row.calls, row.ops_per_second
            )?;
            if batched {
                write!(out, " {:>12.1}", row.keys_per_second)?;
            }
            writeln!(
                out,
                " {:>9} {:>9} {:>9} {:>9} {:>8}",
                ms(row.latency_us.p50),
                ms(row.latency_us.p99),
                ms(row.latency_us.p999),
                ms(row.latency_us.max),
                row.calls - row.ok
            )?;
        }
        writeln!(out)?;
        writeln!(out, "outcomes     {}", counts(&self.total.outcomes))?;
        writeln!(out, "errors       {}", counts(&self.total.errors))?;
        if !self.total.key_errors.is_empty() {
            writeln!(out, "key errors   {}", counts(&self.total.key_errors))?;
        }
        if let Some(stampede) = &self.stampede {
            stampede.write_table(out)?;
        }
        if let Some(fill) = &self.fill {
            fill.write_table(out)?;
        }
        Ok(())
    }
}

impl WorkloadReport {
    fn describe(&self) -> String {
        let mix = |read: &str, write: &str| {
            format!(
                "{read}/{write}, {:.0}% reads, {}-byte values, {} keys ({} stored before the run), ttl {} s",
                self.get_ratio.unwrap_or_default() * 100.0,
                self.value_size.unwrap_or_default(),
                self.keys.unwrap_or_default(),
                self.prefilled.unwrap_or_default(),
                self.ttl_seconds.unwrap_or_default(),
            )
        };
        match (self.kind, self.batch) {
            ("batch", Some(k)) => {
                format!("batch, {k} keys per call: {}", mix("GetMany", "SetMany"))
            }
            ("stampede", _) => "stampede: readers of one expiring hot key".to_owned(),
            ("fill", _) => "fill: rounds of readers of one cold key at once".to_owned(),
            _ => format!("unary: {}", mix("Get", "Set")),
        }
    }
}

impl StampedeReport {
    /// The reads measured and the share of them answered STALE.
    fn with_reads(mut self, summary: &Summary) -> Self {
        let reads: u64 = [
            Outcome::Hit,
            Outcome::Stale,
            Outcome::Refresh,
            Outcome::Miss,
            Outcome::Pending,
        ]
        .into_iter()
        .map(|o| summary.total.outcome(o))
        .sum();
        self.reads = reads;
        self.stale_percent = if reads == 0 {
            0.0
        } else {
            summary.total.outcome(Outcome::Stale) as f64 * 100.0 / reads as f64
        };
        self
    }

    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let v = &self.verdict;
        writeln!(out)?;
        writeln!(
            out,
            "stampede     key {}, {} readers over {} endpoint(s), fresh {} s, grace {} s, \
             recompute {:.0} ms",
            self.key,
            self.readers,
            self.endpoints,
            self.ttl_seconds,
            self.grace_seconds,
            self.recompute_ms
        )?;
        let distribution: Vec<String> = v
            .recomputes_per_period
            .iter()
            .map(|(n, periods)| format!("{n} in {periods}"))
            .collect();
        writeln!(
            out,
            "stale periods {}: recomputes (REFRESH + MISS) per period: {}; REFRESH {}, MISS {}, \
             STALE {}",
            v.periods,
            if distribution.is_empty() {
                "-".to_owned()
            } else {
                distribution.join(", ")
            },
            v.refreshes,
            v.misses,
            v.stale
        )?;
        writeln!(
            out,
            "stale share  {:.2}% of {} reads answered STALE",
            self.stale_percent, self.reads
        )?;
        writeln!(
            out,
            "verdict      {}",
            if v.exactly_one_recompute_per_period {
                "exactly one recompute in every stale period"
            } else if v.periods == 0 {
                "no stale period seen (run longer than the fresh time)"
            } else {
                "NOT exactly one recompute per stale period"
            }
        )?;
        writeln!(
            out,
            "{:>8} {:>8} {:>8} {:>8} {:>8}",
            "period", "REFRESH", "MISS", "STALE", "PENDING"
        )?;
        for (i, p) in v.per_period.iter().enumerate() {
            writeln!(
                out,
                "{:>8} {:>8} {:>8} {:>8} {:>8}",
                i + 1,
                p.refresh,
                p.miss,
                p.stale,
                p.pending
            )?;
        }
        Ok(())
    }
}

impl FillReport {
    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        let v = &self.verdict;
        writeln!(out)?;
        writeln!(
            out,
            "fill         {} readers over {} endpoint(s) per round, compute {:.0} ms, reads held \
             up to {} ms",
            self.readers, self.endpoints, self.recompute_ms, self.wait_ms
        )?;
        let distribution: Vec<String> = v
            .computes_per_round
            .iter()
            .map(|(n, rounds)| format!("{n} in {rounds}"))
            .collect();
        writeln!(
            out,
            "rounds       {}: computes per round: {}; readers without the value {}; client \
             polls (PENDING answers) {}",
            v.rounds,
            if distribution.is_empty() {
                "-".to_owned()
            } else {
                distribution.join(", ")
            },
            v.without_value,
            v.polls
        )?;
        for (name, l) in [
            ("filler      ", &v.filler),
            ("same replica", &v.same_replica),
            ("other       ", &v.other_replica),
        ] {
            writeln!(
                out,
                "{name} {} from the round's start: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.waiters, l.p50_ms, l.p99_ms, l.max_ms
            )?;
        }
        let l = &v.same_replica_after_fill;
        writeln!(
            out,
            "same replica {} from their filler's Set answered: p50 {:.1} ms, p99 {:.1} ms, max \
             {:.1} ms",
            l.waiters, l.p50_ms, l.p99_ms, l.max_ms
        )?;
        writeln!(
            out,
            "verdict      {}",
            if v.exactly_one_compute_per_round && v.without_value == 0 {
                "exactly one compute in every round, every reader got the value"
            } else if v.rounds == 0 {
                "no round ran"
            } else {
                "NOT exactly one compute per round with the value for everyone"
            }
        )
    }
}

fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

fn counts(counts: &BTreeMap<&'static str, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live progress line: rewritten in place on a terminal, erased before the report.
pub(crate) struct Progress {
    last_calls: u64,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self { last_calls: 0 }
    }

    /// One update, `interval` after the previous one.
    pub(crate) fn update(
        &mut self,
        out: &mut impl Write,
        since_start: Duration,
        warming_up: bool,
        totals: (u64, u64),
        interval: Duration,
    ) -> io::Result<()> {
        let (calls, errors) = totals;
        let line = if warming_up {
            format!("[{:>6.1}s] warming up", since_start.as_secs_f64())
        } else {
            let rate = (calls - self.last_calls) as f64 / interval.as_secs_f64().max(1e-9);
            format!(
                "[{:>6.1}s] {calls} calls, {rate:.0} calls/s, {errors} errors",
                since_start.as_secs_f64()
            )
        };
        self.last_calls = calls;
        // \r and "erase line": the next update or the report replaces this one.
        write!(out, "\r\x1b[2K{line}")?;
        out.flush()
    }

    pub(crate) fn clear(out: &mut impl Write) -> io::Result<()> {
        write!(out, "\r\x1b[2K")?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::super::control::Live;
    use super::super::options;
    use super::super::record::{Op, Recorder, Tally};
    use super::*;

    fn plan(args: &[&str]) -> Plan {
        let mut argv = vec!["mintcache-bench"];
        argv.extend_from_slice(args);
        options::parse(argv).expect("clap").expect("valid")
    }

    fn summary() -> Summary {
        let start = Instant::now();
        let mut r = Recorder::new(&[Op::Get, Op::Set], Arc::new(Live::default())).expect("rec");
        for i in 0..9u64 {
            r.success(
                Op::Get,
                Duration::from_micros(100 + i),
                start + Duration::from_millis(100 * i),
                &Tally::one(Outcome::Hit),
            )
            .expect("record");
        }
        r.success(
            Op::Set,
            Duration::from_micros(200),
            start + Duration::from_millis(500),
            &Tally::one(Outcome::Stored),
        )
        .expect("record");
        r.failure(Op::Set, "UNAVAILABLE", start + Duration::from_secs(1))
            .expect("record");
        Summary::merge([r], start).expect("merge")
    }

    #[test]
    fn json_has_the_totals_and_per_op_figures() {
        let plan = plan(&["-e", "127.0.0.1:1", "-c", "2", "-s", "3"]);
        let report = Report::new(&plan, &summary(), false, None);
        assert!(report.has_failures());
        let mut out = Vec::new();
        report.write_json(&mut out).expect("json");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(json["tool"], "mintcache-bench");
        assert_eq!(json["target"]["kind"], "grpc");
        assert_eq!(json["target"]["endpoints"][0], "http://127.0.0.1:1");
        assert_eq!(json["workload"]["kind"], "unary");
        assert_eq!(json["workload"]["get_ratio"], 0.9);
        assert_eq!(json["in_flight"], 6);
        assert_eq!(json["op"], "all");
        assert_eq!(json["calls"], 11);
        assert_eq!(json["ok"], 10);
        assert_eq!(json["keys"], 10);
        assert_eq!(json["ops_per_second"], 10.0);
        assert_eq!(json["outcomes"]["HIT"], 9);
        assert_eq!(json["outcomes"]["STORED"], 1);
        assert_eq!(json["errors"]["UNAVAILABLE"], 1);
        assert_eq!(json["latency_us"]["max"], 200);
        assert_eq!(json["by_op"][0]["op"], "get");
        assert_eq!(json["by_op"][1]["op"], "set");
        assert_eq!(json["by_op"][1]["calls"], 2);
        assert!(json.get("stampede").is_none());
    }

    #[test]
    fn the_table_shows_rates_latencies_outcomes_and_errors() {
        let plan = plan(&["--memcached", "127.0.0.1:11211"]);
        let report = Report::new(&plan, &summary(), true, None);
        let mut out = Vec::new();
        report.write_table(&mut out).expect("table");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("memcached 127.0.0.1:11211 (meta protocol)"),
            "{text}"
        );
        assert!(
            text.contains("4 connections x 16 streams = 64 calls in flight"),
            "{text}"
        );
        assert!(text.contains("(interrupted)"), "{text}");
        assert!(
            text.contains("unary: Get/Set, 90% reads, 64-byte values"),
            "{text}"
        );
        let all = text
            .lines()
            .find(|l| l.starts_with("all "))
            .expect("an `all` row");
        let cells: Vec<&str> = all.split_whitespace().collect();
        assert_eq!(cells[..3], ["all", "11", "10.0"], "{all}");
        assert_eq!(cells[cells.len() - 1], "1", "{all}");
        assert!(text.contains("outcomes     HIT 9, STORED 1"), "{text}");
        assert!(text.contains("errors       UNAVAILABLE 1"), "{text}");
    }

    #[test]
    fn stampede_reports_the_verdict() {
        use super::super::stampede::Period;
        let plan = plan(&["-w", "stampede"]);
        let verdict = Verdict::of(vec![
            Period {
                refresh: 1,
                stale: 40,
                ..Period::default()
            };
            3
        ]);
        let stampede = StampedeReport {
            key: "bench:stampede:1".into(),
            readers: 64,
            endpoints: 2,
            ttl_seconds: 1,
            grace_seconds: 30,
            recompute_ms: 50.0,
            verdict,
            reads: 0,
            stale_percent: 0.0,
        };
        let report = Report::new(&plan, &summary(), false, Some(stampede));
        let mut out = Vec::new();
        report.write_json(&mut out).expect("json");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(json["workload"]["kind"], "stampede");
        assert_eq!(json["stampede"]["periods"], 3);
        assert_eq!(json["stampede"]["refreshes"], 3);
        assert_eq!(json["stampede"]["recomputes_per_period"]["1"], 3);
        assert_eq!(json["stampede"]["exactly_one_recompute_per_period"], true);
        // The reads and the stale share come from the measured outcomes: 9 HITs.
        assert_eq!(json["stampede"]["reads"], 9);
        assert_eq!(json["stampede"]["stale_percent"], 0.0);
        let mut out = Vec::new();
        report.write_table(&mut out).expect("table");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("exactly one recompute in every stale period"),
            "{text}"
        );
        assert!(text.contains("64 readers over 2 endpoint(s)"), "{text}");
        assert!(text.contains("0.00% of 9 reads answered STALE"), "{text}");
    }

    #[test]
    fn fill_reports_its_rounds_and_waiters() {
        use super::super::fill::{Answer, Verdict};
        let plan = plan(&["-w", "fill", "-e", "a:1", "-e", "b:2"]);
        let answer = |endpoint, ms, computed| Answer {
            endpoint,
            latency: Duration::from_millis(ms),
            polls: 0,
            computed,
            got_value: true,
        };
        let rounds = BTreeMap::from([(
            0,
            vec![
                answer(0, 100, true),
                answer(0, 101, false),
                answer(1, 112, false),
            ],
        )]);
        let mut report = Report::new(&plan, &summary(), false, None);
        report.fill = Some(FillReport {
            readers: 3,
            endpoints: 2,
            recompute_ms: 100.0,
            wait_ms: 9900,
            verdict: Verdict::of(&rounds),
        });
        let mut out = Vec::new();
        report.write_json(&mut out).expect("json");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(json["workload"]["kind"], "fill");
        assert_eq!(json["fill"]["rounds"], 1);
        assert_eq!(json["fill"]["exactly_one_compute_per_round"], true);
        assert_eq!(json["fill"]["other_replica"]["p99_ms"], 112.0);
        let mut out = Vec::new();
        report.write_table(&mut out).expect("table");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("exactly one compute in every round, every reader got the value"),
            "{text}"
        );
        assert!(text.contains("client polls (PENDING answers) 0"), "{text}");
    }

    #[test]
    fn progress_lines_rewrite_in_place() {
        let mut progress = Progress::new();
        let mut out = Vec::new();
        let second = Duration::from_secs(1);
        progress
            .update(&mut out, second, true, (0, 0), second)
            .expect("write");
        progress
            .update(&mut out, 2 * second, false, (500, 1), second)
            .expect("write");
        Progress::clear(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("warming up"));
        assert!(text.contains("500 calls, 500 calls/s, 1 errors"), "{text}");
        assert!(!text.contains('\n'), "progress never scrolls: {text:?}");
    }
}
