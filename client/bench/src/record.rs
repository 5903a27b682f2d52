//! What the measured calls did: a [`Recorder`] per connection (its streams share it behind a
//! mutex held for a few counter updates, which keeps one latency histogram per connection and
//! operation instead of one per stream), merged into one [`Summary`] at the end.
//!
//! Counting rules, which the report and the smoke test rely on:
//! - `calls` = `ok` + the sum of `errors` (a failed call counts once, by its error code);
//! - `keys` = keys of the successful calls = the sum of `outcomes` + the sum of `key_errors`
//!   (per-key failures inside a successful batched call);
//! - latencies are those of the successful calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::control::Live;
use super::error::BenchError;

/// Highest latency the histograms hold (longer calls are recorded as this): 10 minutes, in µs.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Significant digits of the histograms: 0.1% precision at every latency.
const SIGNIFICANT_DIGITS: u8 = 3;

/// An operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Get,
    Set,
    GetMany,
    SetMany,
}

impl Op {
    pub(crate) const ALL: [Op; 4] = [Op::Get, Op::Set, Op::GetMany, Op::SetMany];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::GetMany => "get_many",
            Self::SetMany => "set_many",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one key of a successful call came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Stale,
    Refresh,
    Miss,
    Pending,
    Stored,
    NotStored,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 7] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Refresh,
        Outcome::Miss,
        Outcome::Pending,
        Outcome::Stored,
        Outcome::NotStored,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Stale => "STALE",
            Self::Refresh => "REFRESH",
            Self::Miss => "MISS",
            Self::Pending => "PENDING",
            Self::Stored => "STORED",
            Self::NotStored => "NOT_STORED",
        }
    }
}

/// The keys of one successful call, by outcome, and its per-key failures.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    outcomes: [u64; Outcome::ALL.len()],
    key_errors: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// A call of one key.
    pub(crate) fn one(outcome: Outcome) -> Self {
        let mut tally = Self::default();
        tally.add(outcome, 1);
        tally
    }

    pub(crate) fn add(&mut self, outcome: Outcome, n: u64) {
        self.outcomes[outcome as usize] += n;
    }

    pub(crate) fn key_error(&mut self, code: &'static str, n: u64) {
        if n > 0 {
            *self.key_errors.entry(code).or_default() += n;
        }
    }

    pub(crate) fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    pub(crate) fn key_errors_total(&self) -> u64 {
        self.key_errors.values().sum()
    }
}

/// Totals of one operation (or of all of them).
#[derive(Clone, Debug)]
pub(crate) struct OpStats {
    pub(crate) calls: u64,
    pub(crate) ok: u64,
    pub(crate) keys: u64,
    pub(crate) outcomes: [u64; Outcome::ALL.len()],
    pub(crate) errors: BTreeMap<&'static str, u64>,
    pub(crate) key_errors: BTreeMap<&'static str, u64>,
    /// Latencies of the successful calls, in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl OpStats {
    pub(crate) fn new() -> Result<Self, BenchError> {
        Ok(Self {
            calls: 0,
            ok: 0,
            keys: 0,
            outcomes: [0; Outcome::ALL.len()],
            errors: BTreeMap::new(),
            key_errors: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
                .map_err(|e| BenchError::Internal(format!("latency histogram: {e:?}")))?,
        })
    }

    fn success(&mut self, latency: Duration, tally: &Tally) {
        self.calls += 1;
        self.ok += 1;
        for (total, n) in self.outcomes.iter_mut().zip(tally.outcomes) {
            *total += n;
        }
        let mut keys: u64 = tally.outcomes.iter().sum();
        for (code, n) in &tally.key_errors {
            *self.key_errors.entry(code).or_default() += n;
            keys += n;
        }
        self.keys += keys;
        // Sub-microsecond calls count as 1 µs, the histogram's lowest value.
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
    }

    fn failure(&mut self, code: &'static str) {
        self.calls += 1;
        *self.errors.entry(code).or_default() += 1;
    }

    fn merge(&mut self, other: &OpStats) -> Result<(), BenchError> {
        self.calls += other.calls;
        self.ok += other.ok;
        self.keys += other.keys;
        for (total, n) in self.outcomes.iter_mut().zip(other.outcomes) {
            *total += n;
        }
        for (code, n) in &other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, n) in &other.key_errors {
            *self.key_errors.entry(code).or_default() += n;
        }
        self.latency
            .add(&other.latency)
            .map_err(|e| BenchError::Internal(format!("merging latency histograms: {e:?}")))
    }

    pub(crate) fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    #[cfg(test)]
    pub(crate) fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The measured calls of one connection.
#[derive(Debug)]
pub(crate) struct Recorder {
    ops: [Option<OpStats>; Op::ALL.len()],
    last_done: Option<Instant>,
    live: Arc<Live>,
}

impl Recorder {
    /// A recorder for the operations a workload makes.
    pub(crate) fn new(ops: &[Op], live: Arc<Live>) -> Result<Self, BenchError> {
        let mut stats = [None, None, None, None];
        for op in ops {
            stats[op.index()] = Some(OpStats::new()?);
        }
        Ok(Self {
            ops: stats,
            last_done: None,
            live,
        })
    }

    fn stats(&mut self, op: Op, done: Instant) -> Result<&mut OpStats, BenchError> {
        self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
        let slot = &mut self.ops[op.index()];
        if slot.is_none() {
            *slot = Some(OpStats::new()?);
        }
        slot.as_mut()
            .ok_or_else(|| BenchError::Internal("recorder slot".into()))
    }

    /// A successful call that ended at `done` after `latency`.
    pub(crate) fn success(
        &mut self,
        op: Op,
        latency: Duration,
        done: Instant,
        tally: &Tally,
    ) -> Result<(), BenchError> {
        self.stats(op, done)?.success(latency, tally);
        self.live.add(1, 0);
        Ok(())
    }

    /// A failed call, by error code (a gRPC code name or a memcached error word).
    pub(crate) fn failure(
        &mut self,
        op: Op,
        code: &'static str,
        done: Instant,
    ) -> Result<(), BenchError> {
        self.stats(op, done)?.failure(code);
        self.live.add(1, 1);
        Ok(())
    }
}

/// Everything measured, merged.
#[derive(Debug)]
pub(crate) struct Summary {
    /// The operations that were made, in [`Op`] order.
    pub(crate) by_op: Vec<(Op, OpStats)>,
    pub(crate) total: OpStats,
    /// From the start of the measurement to the end of the last measured call.
    pub(crate) elapsed: Duration,
}

impl Summary {
    /// Merges the recorders of a run whose measurement started at `measure_start`.
    pub(crate) fn merge(
        recorders: impl IntoIterator<Item = Recorder>,
        measure_start: Instant,
    ) -> Result<Self, BenchError> {
        let mut by_op: Vec<(Op, OpStats)> = Vec::new();
        let mut total = OpStats::new()?;
        let mut last_done: Option<Instant> = None;
        for recorder in recorders {
            if let Some(done) = recorder.last_done {
                last_done = Some(last_done.map_or(done, |last| last.max(done)));
            }
            for (op, stats) in Op::ALL.into_iter().zip(recorder.ops) {
                let Some(stats) = stats else { continue };
                if stats.calls == 0 {
                    continue;
                }
                total.merge(&stats)?;
                match by_op.iter_mut().find(|(o, _)| *o == op) {
                    Some((_, merged)) => merged.merge(&stats)?,
                    None => by_op.push((op, stats)),
                }
            }
        }
        by_op.sort_by_key(|(op, _)| *op);
        let elapsed = last_done.map_or(Duration::ZERO, |done| {
            done.saturating_duration_since(measure_start)
        });
        Ok(Self {
            by_op,
            total,
            elapsed,
        })
    }

    /// Per second over the measured time (0 when nothing was measured).
    pub(crate) fn rate(&self, n: u64) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Latency percentiles of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

impl Latency {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Records one gRPC call into a recorder shared by a connection's streams: its outcomes, or
/// its failure by status code.
pub(crate) fn record_call(
    recorder: &Mutex<Recorder>,
    op: Op,
    started: Instant,
    done: Instant,
    result: Result<&Tally, &tonic::Status>,
) -> Result<(), BenchError> {
    let mut recorder = recorder
        .lock()
        .map_err(|_| BenchError::Internal("recorder lock poisoned".into()))?;
    match result {
        Ok(tally) => recorder.success(op, done - started, done, tally),
        Err(status) => recorder.failure(op, mintcache_client::code_name(status.code()), done),
    }
}

/// The recorders shared by the streams of each connection, once every stream has finished.
pub(crate) fn unwrap_recorders(
    shared: Vec<Arc<Mutex<Recorder>>>,
) -> Result<Vec<Recorder>, BenchError> {
    shared
        .into_iter()
        .map(|recorder| {
            Arc::try_unwrap(recorder)
                .map_err(|_| BenchError::Internal("a call stream outlived the run".into()))?
                .into_inner()
                .map_err(|_| BenchError::Internal("recorder lock poisoned".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn recorder(ops: &[Op]) -> Recorder {
        Recorder::new(ops, Arc::new(Live::default())).expect("recorder")
    }

    #[test]
    fn counts_add_up_across_recorders() {
        let start = Instant::now();
        let live = Arc::new(Live::default());
        let mut a = Recorder::new(&[Op::Get, Op::Set], live.clone()).expect("recorder");
        let mut b = Recorder::new(&[Op::Get, Op::Set], live.clone()).expect("recorder");
        for i in 0..90 {
            let outcome = if i % 3 == 0 {
                Outcome::Miss
            } else {
                Outcome::Hit
            };
            a.success(Op::Get, ms(1), start + ms(i), &Tally::one(outcome))
                .expect("record");
        }
        for i in 0..9 {
            b.success(Op::Set, ms(2), start + ms(i), &Tally::one(Outcome::Stored))
                .expect("record");
        }
        b.failure(Op::Set, "UNAVAILABLE", start + ms(500))
            .expect("record");
        assert_eq!(live.totals(), (100, 1));

        let summary = Summary::merge([a, b], start).expect("merge");
        assert_eq!(summary.elapsed, ms(500));
        let t = &summary.total;
        assert_eq!((t.calls, t.ok, t.keys, t.failed()), (100, 99, 99, 1));
        assert_eq!(t.outcome(Outcome::Hit), 60);
        assert_eq!(t.outcome(Outcome::Miss), 30);
        assert_eq!(t.outcome(Outcome::Stored), 9);
        assert_eq!(t.errors.get("UNAVAILABLE"), Some(&1));
        let ops: Vec<_> = summary.by_op.iter().map(|(op, _)| *op).collect();
        assert_eq!(ops, [Op::Get, Op::Set]);
        let set = &summary.by_op[1].1;
        assert_eq!((set.calls, set.ok), (10, 9));
        assert_eq!(summary.rate(t.ok), 198.0);
    }

    #[test]
    fn batches_count_keys_and_key_errors() {
        let start = Instant::now();
        let mut r = recorder(&[Op::GetMany]);
        let mut tally = Tally::default();
        tally.add(Outcome::Hit, 97);
        tally.add(Outcome::Miss, 1);
        tally.key_error("UNAVAILABLE", 2);
        tally.key_error("INTERNAL", 0);
        assert_eq!(tally.count(Outcome::Hit), 97);
        r.success(Op::GetMany, ms(3), start + ms(10), &tally)
            .expect("record");
        let summary = Summary::merge([r], start).expect("merge");
        let t = &summary.total;
        assert_eq!((t.calls, t.ok, t.keys), (1, 1, 100));
        assert_eq!(
            t.key_errors.iter().collect::<Vec<_>>(),
            [(&"UNAVAILABLE", &2)]
        );
        let outcome_keys: u64 = t.outcomes.iter().sum();
        assert_eq!(outcome_keys + t.key_errors.values().sum::<u64>(), t.keys);
    }

    #[test]
    fn latency_percentiles_come_from_successful_calls() {
        let start = Instant::now();
        let mut r = recorder(&[Op::Get]);
        for i in 1..=1000 {
            r.success(
                Op::Get,
                Duration::from_micros(i),
                start,
                &Tally::one(Outcome::Hit),
            )
            .expect("record");
        }
        r.failure(Op::Get, "DEADLINE_EXCEEDED", start)
            .expect("record");
        let summary = Summary::merge([r], start).expect("merge");
        let latency = Latency::of(&summary.total.latency);
        // 3 significant digits: each percentile within 0.1% of the exact value.
        assert!((499..=501).contains(&latency.p50), "{latency:?}");
        assert!((989..=991).contains(&latency.p99), "{latency:?}");
        assert!((998..=1000).contains(&latency.p999), "{latency:?}");
        assert!((1000..=1001).contains(&latency.max), "{latency:?}");
        assert!((latency.mean - 500.5).abs() < 1.0, "{latency:?}");
        assert_eq!(summary.total.latency.len(), 1000);
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_kept_in_range() {
        let start = Instant::now();
        let mut r = recorder(&[Op::Get]);
        let hit = Tally::one(Outcome::Hit);
        r.success(Op::Get, Duration::from_nanos(10), start, &hit)
            .expect("record");
        r.success(Op::Get, Duration::from_secs(100_000), start, &hit)
            .expect("record");
        let summary = Summary::merge([r], start).expect("merge");
        let latency = Latency::of(&summary.total.latency);
        assert_eq!(summary.total.latency.min(), 1);
        assert!(latency.max >= MAX_LATENCY_US, "{latency:?}");
    }

    #[test]
    fn nothing_measured_is_all_zeros() {
        let start = Instant::now();
        let summary = Summary::merge([recorder(&[Op::Get])], start).expect("merge");
        assert!(summary.by_op.is_empty());
        assert_eq!(summary.elapsed, Duration::ZERO);
        assert_eq!(summary.rate(0), 0.0);
        assert_eq!(Latency::of(&summary.total.latency), Latency::default());
    }

    #[test]
    fn an_operation_not_prepared_is_still_recorded() {
        let start = Instant::now();
        let mut r = recorder(&[]);
        r.success(
            Op::SetMany,
            ms(1),
            start + ms(1),
            &Tally::one(Outcome::Stored),
        )
        .expect("record");
        let summary = Summary::merge([r], start).expect("merge");
        assert_eq!(summary.by_op[0].0, Op::SetMany);
    }
}
