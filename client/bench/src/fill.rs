//! The cold-fill scenario: rounds in which every call stream reads the same key at once, a key
//! that holds nothing yet. Reads ask for cold-miss protection (`lease_on_miss`) and to be held
//! for the fill (`wait_ms`): the one reader told `MISS` "computes" for `--recompute` and stores
//! the value with its lease; every other reader should be answered with that value by the
//! server as soon as it lands, without reading again.
//!
//! Each round names a new key. The report says how many readers were told to compute in each
//! round (exactly one is the protocol working), whether every reader got the value, how many
//! reads came back `PENDING` (each one a client-side poll), and the waiters' latency from the
//! round's start, on the filler's replica and on the others (a fill stored through another
//! replica reaches a held read through the server's poll of memcached).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mintcache_client::proto::{GetRequest, GetResponse, SetRequest, SetResponse};
use serde::Serialize;
use tokio::sync::Barrier;

use super::control::{Limiter, Live, Phase, join_tasks};
use super::error::BenchError;
use super::grpc::{drive, outcome};
use super::record::{Op, Outcome, Recorder, Tally, record_call, unwrap_recorders};
use super::wire::{Conn, Driver};

/// Seconds the filled values stay fresh: long enough for a round, short enough to go away.
const FILLED_TTL: i64 = 60;

/// What every reader shares.
pub(crate) struct Job {
    pub(crate) key_prefix: String,
    pub(crate) value: Vec<u8>,
    pub(crate) recompute: Duration,
    /// `GetRequest.wait_ms`: how long the server may hold a read for the fill.
    pub(crate) wait_ms: u32,
    pub(crate) streams: usize,
    pub(crate) endpoints: usize,
}

impl Job {
    fn key(&self, round: u64) -> Vec<u8> {
        format!("{}cold:{round:08}", self.key_prefix).into_bytes()
    }
}

/// What one reader saw in one round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Answer {
    /// The replica the reader's connection goes to.
    pub(crate) endpoint: usize,
    /// From the round's start to the value (or to the failure).
    pub(crate) latency: Duration,
    /// Reads answered `PENDING` (each one read again).
    pub(crate) polls: u32,
    /// This reader was told to compute (`MISS` or `REFRESH`).
    pub(crate) computed: bool,
    /// This reader ended with the value (read, or computed and stored).
    pub(crate) got_value: bool,
}

/// Latency of the waiters of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct WaitLatency {
    pub(crate) waiters: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl WaitLatency {
    fn of(mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            // The nearest-rank percentile.
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            waiters: latencies.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// The verdict on the rounds of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Verdict {
    pub(crate) rounds: usize,
    /// How many rounds had n readers told to compute, by n.
    pub(crate) computes_per_round: BTreeMap<usize, u64>,
    /// Every round had exactly one compute, and there was at least one round.
    pub(crate) exactly_one_compute_per_round: bool,
    /// Readers that did not end with the value (a failed call, or a wrong value).
    pub(crate) without_value: usize,
    /// `PENDING` answers in all: reads the readers had to send again.
    pub(crate) polls: u64,
    /// Waiters whose connection goes to the replica the round's value was stored through.
    pub(crate) same_replica: WaitLatency,
    /// Waiters on the other replicas.
    pub(crate) other_replica: WaitLatency,
    /// The fillers, from the round's start to their `Set` answered: the compute, and the
    /// `MISS` answer among all the round's reads arriving at once.
    pub(crate) filler: WaitLatency,
    /// Waiters on the filler's replica, counted from their filler's `Set` answered (0 when
    /// answered before it): what holding them costs beyond the fill itself.
    pub(crate) same_replica_after_fill: WaitLatency,
}

impl Verdict {
    pub(crate) fn of(rounds: &BTreeMap<u64, Vec<Answer>>) -> Self {
        let mut computes_per_round = BTreeMap::new();
        let (mut same, mut other) = (Vec::new(), Vec::new());
        let (mut fillers, mut after_fill) = (Vec::new(), Vec::new());
        for answers in rounds.values() {
            let computed: Vec<&Answer> = answers.iter().filter(|a| a.computed).collect();
            *computes_per_round.entry(computed.len()).or_default() += 1;
            let filler = computed.first();
            fillers.extend(filler.map(|f| f.latency));
            for answer in answers.iter().filter(|a| !a.computed && a.got_value) {
                match filler {
                    Some(f) if f.endpoint == answer.endpoint => {
                        same.push(answer.latency);
                        after_fill.push(answer.latency.saturating_sub(f.latency));
                    }
                    _ => other.push(answer.latency),
                }
            }
        }
        let all = || rounds.values().flatten();
        Self {
            rounds: rounds.len(),
            exactly_one_compute_per_round: !rounds.is_empty()
                && computes_per_round.keys().all(|&n| n == 1),
            computes_per_round,
            without_value: all().filter(|a| !a.got_value).count(),
            polls: all().map(|a| u64::from(a.polls)).sum(),
            same_replica: WaitLatency::of(same),
            other_replica: WaitLatency::of(other),
            filler: WaitLatency::of(fillers),
            same_replica_after_fill: WaitLatency::of(after_fill),
        }
    }
}

/// The rounds' shared state: whether to go on, and what the readers saw.
#[derive(Default)]
struct Rounds {
    stop: AtomicBool,
    answers: Mutex<BTreeMap<u64, Vec<Answer>>>,
}

/// Runs rounds until the limiter stops them (`--count`: rounds; `--duration`: no round
/// starts after it).
pub(crate) async fn run(
    job: Arc<Job>,
    conns: Vec<(Conn, Driver)>,
    limiter: Arc<Limiter>,
    live: Arc<Live>,
) -> Result<(Vec<Recorder>, Verdict), BenchError> {
    let rounds = Arc::new(Rounds::default());
    let barrier = Arc::new(Barrier::new(conns.len() * job.streams));
    let endpoints = job.endpoints.max(1);
    let mut recorders = Vec::with_capacity(conns.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (conn, driver)) in conns.into_iter().enumerate() {
        let recorder = Arc::new(Mutex::new(Recorder::new(
            &[Op::Get, Op::Set],
            live.clone(),
        )?));
        recorders.push(recorder.clone());
        let readers: Vec<Reader> = (0..job.streams)
            .map(|_| Reader {
                conn: conn.clone(),
                endpoint: index % endpoints,
                job: job.clone(),
                rounds: rounds.clone(),
                barrier: barrier.clone(),
                recorder: recorder.clone(),
            })
            .collect();
        let limiter = limiter.clone();
        tasks.spawn(
            async move { drive(driver, readers.into_iter().map(|r| r.run(&limiter))).await },
        );
    }
    join_tasks(tasks, &limiter).await?;
    let answers = rounds
        .answers
        .lock()
        .map_err(|_| BenchError::Internal("fill rounds lock poisoned".into()))?;
    let verdict = Verdict::of(&answers);
    Ok((unwrap_recorders(recorders)?, verdict))
}

struct Reader {
    conn: Conn,
    endpoint: usize,
    job: Arc<Job>,
    rounds: Arc<Rounds>,
    barrier: Arc<Barrier>,
    recorder: Arc<Mutex<Recorder>>,
}

impl Reader {
    async fn run(self, limiter: &Limiter) -> Result<(), BenchError> {
        let mut round = 0u64;
        loop {
            // One reader decides for all whether a round starts; all start it together.
            if self.barrier.wait().await.is_leader() {
                let stop = limiter.next(Instant::now()) == Phase::Stop;
                self.rounds.stop.store(stop, Ordering::Release);
            }
            self.barrier.wait().await;
            if self.rounds.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let answer = self.read(&self.job.key(round)).await?;
            self.rounds
                .answers
                .lock()
                .map_err(|_| BenchError::Internal("fill rounds lock poisoned".into()))?
                .entry(round)
                .or_default()
                .push(answer);
            round += 1;
        }
    }

    /// Reads the round's key until it has the value (or computes it when told to).
    async fn read(&self, key: &[u8]) -> Result<Answer, BenchError> {
        let started = Instant::now();
        let mut answer = Answer {
            endpoint: self.endpoint,
            latency: Duration::ZERO,
            polls: 0,
            computed: false,
            got_value: false,
        };
        loop {
            let request = GetRequest {
                key: key.to_vec(),
                lease_on_miss: Some(true),
                wait_ms: self.job.wait_ms,
                ..GetRequest::default()
            };
            let call_started = Instant::now();
            let result: Result<GetResponse, _> = self.conn.call(Op::Get, &request).await;
            let done = Instant::now();
            let response = match result {
                Ok(response) => response,
                Err(status) => {
                    self.record(Op::Get, call_started, done, Err(&status))?;
                    answer.latency = done - started;
                    return Ok(answer);
                }
            };
            let Some(outcome) = outcome(response.outcome) else {
                let mut tally = Tally::default();
                tally.key_error("BAD_OUTCOME", 1);
                self.record(Op::Get, call_started, done, Ok(&tally))?;
                answer.latency = done - started;
                return Ok(answer);
            };
            self.record(Op::Get, call_started, done, Ok(&Tally::one(outcome)))?;
            match outcome {
                Outcome::Pending => answer.polls += 1,
                Outcome::Miss | Outcome::Refresh => {
                    answer.computed = true;
                    answer.got_value = self.fill(key, response.lease_token).await?;
                    answer.latency = started.elapsed();
                    return Ok(answer);
                }
                Outcome::Hit | Outcome::Stale | Outcome::Stored | Outcome::NotStored => {
                    answer.got_value = response.value == self.job.value;
                    answer.latency = done - started;
                    return Ok(answer);
                }
            }
        }
    }

    /// What the reader told to compute does: compute, then store with the lease.
    async fn fill(&self, key: &[u8], lease_token: Vec<u8>) -> Result<bool, BenchError> {
        tokio::time::sleep(self.job.recompute).await;
        let request = SetRequest {
            key: key.to_vec(),
            value: self.job.value.clone(),
            ttl_seconds: FILLED_TTL,
            lease_token,
            ..SetRequest::default()
        };
        let started = Instant::now();
        let result: Result<SetResponse, _> = self.conn.call(Op::Set, &request).await;
        let done = Instant::now();
        match result {
            Ok(response) => {
                let outcome = if response.stored {
                    Outcome::Stored
                } else {
                    Outcome::NotStored
                };
                self.record(Op::Set, started, done, Ok(&Tally::one(outcome)))?;
                Ok(response.stored)
            }
            Err(status) => {
                self.record(Op::Set, started, done, Err(&status))?;
                Ok(false)
            }
        }
    }

    fn record(
        &self,
        op: Op,
        started: Instant,
        done: Instant,
        result: Result<&Tally, &tonic::Status>,
    ) -> Result<(), BenchError> {
        record_call(&self.recorder, op, started, done, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(endpoint: usize, ms: u64, computed: bool) -> Answer {
        Answer {
            endpoint,
            latency: Duration::from_millis(ms),
            polls: 0,
            computed,
            got_value: true,
        }
    }

    #[test]
    fn waiters_are_split_by_the_fillers_replica() {
        let mut rounds = BTreeMap::new();
        rounds.insert(
            0,
            vec![
                answer(0, 101, true),
                answer(0, 102, false),
                answer(1, 110, false),
                answer(1, 120, false),
            ],
        );
        rounds.insert(
            1,
            vec![
                answer(1, 100, true),
                answer(1, 103, false),
                answer(0, 115, false),
            ],
        );
        let verdict = Verdict::of(&rounds);
        assert_eq!(verdict.rounds, 2);
        assert!(verdict.exactly_one_compute_per_round);
        assert_eq!(verdict.computes_per_round, BTreeMap::from([(1, 2)]));
        assert_eq!(verdict.same_replica.waiters, 2);
        assert_eq!(verdict.same_replica.max_ms, 103.0);
        assert_eq!(verdict.other_replica.waiters, 3);
        assert_eq!(verdict.other_replica.p50_ms, 115.0);
        assert_eq!(verdict.other_replica.max_ms, 120.0);
        assert_eq!((verdict.polls, verdict.without_value), (0, 0));
        assert_eq!(verdict.filler.waiters, 2);
        assert_eq!(verdict.filler.max_ms, 101.0);
        // Round 0: 102 - 101; round 1: 103 - 100.
        assert_eq!(verdict.same_replica_after_fill.waiters, 2);
        assert_eq!(verdict.same_replica_after_fill.max_ms, 3.0);
        assert_eq!(verdict.same_replica_after_fill.p50_ms, 1.0);
    }

    #[test]
    fn two_computes_polls_or_a_missing_value_show() {
        let mut polled = answer(1, 300, false);
        polled.polls = 3;
        let mut failed = answer(0, 10, false);
        failed.got_value = false;
        let rounds = BTreeMap::from([(
            0,
            vec![answer(0, 100, true), answer(1, 101, true), polled, failed],
        )]);
        let verdict = Verdict::of(&rounds);
        assert!(!verdict.exactly_one_compute_per_round);
        assert_eq!(verdict.computes_per_round, BTreeMap::from([(2, 1)]));
        assert_eq!(verdict.polls, 3);
        assert_eq!(verdict.without_value, 1);
        // The failed reader is no waiter.
        assert_eq!(
            verdict.same_replica.waiters + verdict.other_replica.waiters,
            1
        );

        assert!(!Verdict::of(&BTreeMap::new()).exactly_one_compute_per_round);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = WaitLatency::of(latencies);
        assert_eq!(
            (l.waiters, l.p50_ms, l.p99_ms, l.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert_eq!(WaitLatency::of(Vec::new()), WaitLatency::default());
    }

    #[test]
    fn each_round_names_a_new_key() {
        let job = Job {
            key_prefix: "bench:1:".into(),
            value: Vec::new(),
            recompute: Duration::ZERO,
            wait_ms: 0,
            streams: 1,
            endpoints: 1,
        };
        assert_eq!(job.key(7), b"bench:1:cold:00000007");
        assert_ne!(job.key(1), job.key(2));
    }
}
