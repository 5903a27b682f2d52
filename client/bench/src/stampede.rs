//! The stampede scenario: every call stream reads one hot key in a loop, over connections
//! spread across the endpoints (two replicas show that the election is fleet-wide). The key is
//! stored with a short TTL and a long grace; after each soft expiry, a reader that gets
//! `REFRESH` (or `MISS`) "recomputes" for `--recompute` and stores the value again with its
//! lease token, which opens a new fresh period.
//!
//! A *stale period* runs from a soft expiry to the store that ends it. Each read is attributed
//! to the period current when it started (a generation number that each successful store
//! advances), so the report can say how many readers were told to recompute in each period:
//! exactly one is the mint protocol working; a plain TTL cache would have every reader of the
//! expired key recompute it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mintcache_client::proto::{GetRequest, GetResponse, SetRequest, SetResponse};
use serde::Serialize;

use super::control::{Limiter, Live, Phase, join_tasks};
use super::error::BenchError;
use super::grpc::{drive, outcome, status_text};
use super::options::GrpcTarget;
use super::record::{Op, Outcome, Recorder, Tally, record_call, unwrap_recorders};
use super::wire::{Conn, Driver};

/// What every reader shares.
pub(crate) struct Job {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) ttl: u32,
    pub(crate) grace: u32,
    pub(crate) recompute: Duration,
    pub(crate) streams: usize,
}

impl Job {
    fn set_request(&self, lease_token: Vec<u8>) -> SetRequest {
        SetRequest {
            key: self.key.clone(),
            value: self.value.clone(),
            ttl_seconds: i64::from(self.ttl),
            grace_seconds: i64::from(self.grace),
            lease_token,
            ..SetRequest::default()
        }
    }
}

/// The hot key: under the run's key prefix, which is new for every run unless given.
pub(crate) fn hot_key(prefix: &str) -> Vec<u8> {
    format!("{prefix}hot").into_bytes()
}

/// Reads answered in one stale period, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Period {
    pub(crate) refresh: u64,
    pub(crate) miss: u64,
    pub(crate) stale: u64,
    pub(crate) pending: u64,
}

impl Period {
    /// Readers told to recompute the value.
    pub(crate) fn recomputes(&self) -> u64 {
        self.refresh + self.miss
    }
}

/// Stale periods as the readers saw them.
#[derive(Debug, Default)]
pub(crate) struct Book {
    generation: AtomicU64,
    periods: Mutex<BTreeMap<u64, Period>>,
}

impl Book {
    /// The period a read starting now belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A read of period `period` answered `outcome` (fresh hits are not part of any stale period).
    pub(crate) fn observe(&self, period: u64, outcome: Outcome) -> Result<(), BenchError> {
        if outcome == Outcome::Hit {
            return Ok(());
        }
        let mut periods = self
            .periods
            .lock()
            .map_err(|_| BenchError::Internal("stampede book lock poisoned".into()))?;
        let counts = periods.entry(period).or_default();
        match outcome {
            Outcome::Refresh => counts.refresh += 1,
            Outcome::Miss => counts.miss += 1,
            Outcome::Stale => counts.stale += 1,
            Outcome::Pending => counts.pending += 1,
            Outcome::Hit | Outcome::Stored | Outcome::NotStored => {}
        }
        Ok(())
    }

    /// A recomputed value was stored: the current period ends.
    pub(crate) fn refreshed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The stale periods seen, in order.
    pub(crate) fn periods(&self) -> Result<Vec<Period>, BenchError> {
        let periods = self
            .periods
            .lock()
            .map_err(|_| BenchError::Internal("stampede book lock poisoned".into()))?;
        Ok(periods.values().copied().collect())
    }
}

/// The verdict on the stale periods of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Verdict {
    /// Stale periods seen.
    pub(crate) periods: usize,
    /// REFRESH answers in all.
    pub(crate) refreshes: u64,
    /// MISS answers in all (the grace ran out, or the key was evicted).
    pub(crate) misses: u64,
    /// STALE answers in all.
    pub(crate) stale: u64,
    /// How many periods had n recomputes (REFRESH + MISS), by n.
    pub(crate) recomputes_per_period: BTreeMap<u64, u64>,
    /// Every period had exactly one recompute, and there was at least one period.
    pub(crate) exactly_one_recompute_per_period: bool,
    /// The periods, in order.
    pub(crate) per_period: Vec<Period>,
}

impl Verdict {
    pub(crate) fn of(periods: Vec<Period>) -> Self {
        let mut recomputes_per_period = BTreeMap::new();
        for period in &periods {
            *recomputes_per_period
                .entry(period.recomputes())
                .or_default() += 1;
        }
        Self {
            periods: periods.len(),
            refreshes: periods.iter().map(|p| p.refresh).sum(),
            misses: periods.iter().map(|p| p.miss).sum(),
            stale: periods.iter().map(|p| p.stale).sum(),
            exactly_one_recompute_per_period: !periods.is_empty()
                && periods.iter().all(|p| p.recomputes() == 1),
            recomputes_per_period,
            per_period: periods,
        }
    }
}

/// Stores the hot key's first value.
pub(crate) async fn seed(
    target: &GrpcTarget,
    timeout: std::time::Duration,
    job: &Job,
) -> Result<(), BenchError> {
    // A connection of its own, closed once the value is stored.
    let mut connected = super::grpc::connect(target, 1, timeout).await?;
    let Some((conn, driver)) = connected.pop() else {
        return Err(BenchError::Internal("no connection".into()));
    };
    super::wire::spawn(driver);
    let response: SetResponse = conn
        .call(Op::Set, &job.set_request(Vec::new()))
        .await
        .map_err(|s| BenchError::Setup(format!("storing the hot key: {}", status_text(&s))))?;
    if response.stored {
        Ok(())
    } else {
        Err(BenchError::Setup(
            "the server did not store the hot key".into(),
        ))
    }
}

/// Runs the readers until the limiter stops them.
pub(crate) async fn run(
    job: Arc<Job>,
    conns: Vec<(Conn, Driver)>,
    limiter: Arc<Limiter>,
    live: Arc<Live>,
) -> Result<(Vec<Recorder>, Verdict), BenchError> {
    let book = Arc::new(Book::default());
    let mut recorders = Vec::with_capacity(conns.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (conn, driver) in conns {
        let recorder = Arc::new(Mutex::new(Recorder::new(
            &[Op::Get, Op::Set],
            live.clone(),
        )?));
        recorders.push(recorder.clone());
        let readers: Vec<Reader> = (0..job.streams)
            .map(|_| Reader {
                conn: conn.clone(),
                job: job.clone(),
                book: book.clone(),
                recorder: recorder.clone(),
            })
            .collect();
        let limiter = limiter.clone();
        tasks.spawn(async move {
            let result = drive(driver, readers.into_iter().map(|r| r.run(&limiter))).await;
            if result.is_err() {
                limiter.stop();
            }
            result
        });
    }
    join_tasks(tasks, &limiter).await?;
    let verdict = Verdict::of(book.periods()?);
    Ok((unwrap_recorders(recorders)?, verdict))
}

struct Reader {
    conn: Conn,
    job: Arc<Job>,
    book: Arc<Book>,
    recorder: Arc<Mutex<Recorder>>,
}

impl Reader {
    async fn run(self, limiter: &Limiter) -> Result<(), BenchError> {
        loop {
            let phase = limiter.next(Instant::now());
            if phase == Phase::Stop {
                return Ok(());
            }
            let measured = phase == Phase::Measure;
            let period = self.book.generation();
            let request = GetRequest {
                key: self.job.key.clone(),
                ..GetRequest::default()
            };
            let started = Instant::now();
            let result: Result<GetResponse, _> = self.conn.call(Op::Get, &request).await;
            let done = Instant::now();
            let response = match result {
                Ok(response) => response,
                Err(status) => {
                    self.record(measured, Op::Get, started, done, Err(&status))?;
                    continue;
                }
            };
            let Some(outcome) = outcome(response.outcome) else {
                let mut tally = Tally::default();
                tally.key_error("BAD_OUTCOME", 1);
                self.record(measured, Op::Get, started, done, Ok(&tally))?;
                continue;
            };
            self.record(measured, Op::Get, started, done, Ok(&Tally::one(outcome)))?;
            self.book.observe(period, outcome)?;
            if matches!(outcome, Outcome::Refresh | Outcome::Miss) {
                self.recompute(measured, response.lease_token).await?;
            }
        }
    }

    /// What a REFRESH winner does: compute the value, then store it with its lease token.
    async fn recompute(&self, measured: bool, lease_token: Vec<u8>) -> Result<(), BenchError> {
        tokio::time::sleep(self.job.recompute).await;
        let request = self.job.set_request(lease_token);
        let started = Instant::now();
        let result: Result<SetResponse, _> = self.conn.call(Op::Set, &request).await;
        let done = Instant::now();
        match result {
            Ok(response) => {
                let stored = response.stored;
                if stored {
                    self.book.refreshed();
                }
                let outcome = if stored {
                    Outcome::Stored
                } else {
                    Outcome::NotStored
                };
                self.record(measured, Op::Set, started, done, Ok(&Tally::one(outcome)))
            }
            Err(status) => self.record(measured, Op::Set, started, done, Err(&status)),
        }
    }

    fn record(
        &self,
        measured: bool,
        op: Op,
        started: Instant,
        done: Instant,
        result: Result<&Tally, &tonic::Status>,
    ) -> Result<(), BenchError> {
        if !measured {
            return Ok(());
        }
        record_call(&self.recorder, op, started, done, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_attributed_to_the_period_they_started_in() {
        let book = Book::default();
        // Period 0: fresh hits, then one REFRESH and a few STALE answers.
        let p = book.generation();
        for outcome in [
            Outcome::Hit,
            Outcome::Refresh,
            Outcome::Stale,
            Outcome::Stale,
        ] {
            book.observe(p, outcome).expect("observe");
        }
        // A read that started before the refresh landed, answered STALE, still counts for 0.
        book.refreshed();
        book.observe(p, Outcome::Stale).expect("observe");
        // Period 1.
        let p = book.generation();
        assert_eq!(p, 1);
        book.observe(p, Outcome::Refresh).expect("observe");
        book.observe(p, Outcome::Hit).expect("observe");
        book.refreshed();
        // Period 2 is still fresh at the end: not a stale period.
        book.observe(book.generation(), Outcome::Hit)
            .expect("observe");

        let periods = book.periods().expect("periods");
        assert_eq!(
            periods,
            [
                Period {
                    refresh: 1,
                    stale: 3,
                    ..Period::default()
                },
                Period {
                    refresh: 1,
                    ..Period::default()
                },
            ]
        );
        let verdict = Verdict::of(periods);
        assert_eq!(verdict.periods, 2);
        assert_eq!(
            (verdict.refreshes, verdict.stale, verdict.misses),
            (2, 3, 0)
        );
        assert_eq!(verdict.recomputes_per_period, BTreeMap::from([(1, 2)]));
        assert!(verdict.exactly_one_recompute_per_period);
    }

    #[test]
    fn a_dogpile_or_an_empty_run_is_not_exactly_one() {
        let dogpile = Verdict::of(vec![
            Period {
                refresh: 1,
                ..Period::default()
            },
            Period {
                refresh: 1,
                miss: 199,
                ..Period::default()
            },
        ]);
        assert!(!dogpile.exactly_one_recompute_per_period);
        assert_eq!(
            dogpile.recomputes_per_period,
            BTreeMap::from([(1, 1), (200, 1)])
        );
        assert_eq!(dogpile.misses, 199);

        let nothing = Verdict::of(Vec::new());
        assert_eq!(nothing.periods, 0);
        assert!(!nothing.exactly_one_recompute_per_period);

        let stuck = Verdict::of(vec![Period {
            stale: 10,
            ..Period::default()
        }]);
        assert!(!stuck.exactly_one_recompute_per_period);
        assert_eq!(stuck.recomputes_per_period, BTreeMap::from([(0, 1)]));
    }

    #[test]
    fn the_hot_key_is_in_the_run_key_space() {
        assert_eq!(hot_key("bench:0000abcd:"), b"bench:0000abcd:hot");
    }
}
