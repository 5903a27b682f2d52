//! The workloads over gRPC: connections (one HTTP/2 connection each, spread over the
//! endpoints), the prefill, and the call streams of the get/set mix, over the lean client of
//! [`super::wire`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastrand::Rng;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use mintcache_client::code_name;
use mintcache_client::proto::{
    self, GetManyRequest, GetManyResponse, GetRequest, GetResponse, KeyError, SetManyItem,
    SetManyRequest, SetManyResponse, SetRequest, SetResponse,
};
use tonic::Status;

use super::control::{Limiter, Live, Phase, join_tasks};
use super::error::BenchError;
use super::options::{GrpcTarget, Mix};
use super::record::{Op, Outcome, Recorder, Tally, unwrap_recorders};
use super::wire::{self, Conn, Driver, Endpoint};

/// Keys per SetMany of the prefill (fewer when values are large, to stay far below the
/// server's 4 MiB message limit).
const PREFILL_CHUNK: usize = 100;
const PREFILL_CHUNK_BYTES: usize = 1 << 20;
/// Prefill connections, and calls in flight on each.
const PREFILL_CONNECTIONS: usize = 4;
const PREFILL_STREAMS: usize = 4;

/// Opens `connections` HTTP/2 connections, spread over the endpoints in turn.
pub(crate) async fn connect(
    target: &GrpcTarget,
    connections: usize,
    timeout: Duration,
) -> Result<Vec<(Conn, Driver)>, BenchError> {
    let endpoints = target
        .endpoints
        .iter()
        .map(|uri| Endpoint::new(uri, target).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        conns.push(wire::connect(endpoints[i % endpoints.len()].clone(), timeout).await?);
    }
    Ok(conns)
}

/// Runs the call streams of one connection and the connection's I/O in one task, as an
/// event-loop load generator (h2load) does: when replies arrive, every stream they complete
/// makes its next call before the connection is polled again, so the new requests leave in
/// one write instead of one write each. Ends when every stream has, or with the first error.
pub(crate) async fn drive<F>(
    driver: Driver,
    streams: impl IntoIterator<Item = F>,
) -> Result<(), BenchError>
where
    F: Future<Output = Result<(), BenchError>>,
{
    let mut streams: FuturesUnordered<F> = streams.into_iter().collect();
    let mut driver = driver;
    let mut connected = true;
    loop {
        tokio::select! {
            biased;
            next = streams.next() => match next {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            // A connection that ended fails the calls still on it (UNAVAILABLE); the streams
            // go on until the run ends, so the failures are counted.
            () = &mut driver, if connected => connected = false,
        }
    }
}

/// Stores the first `filled` keys with SetMany calls, on connections of its own.
pub(crate) async fn prefill(
    target: &GrpcTarget,
    connections: usize,
    timeout: Duration,
    mix: &Arc<Mix>,
    value: &Arc<Vec<u8>>,
) -> Result<(), BenchError> {
    if mix.keys.filled() == 0 {
        return Ok(());
    }
    // Connections of their own, closed when the prefill is done: the run's connections are
    // driven by the run's tasks.
    let mut conns = Vec::new();
    for (conn, driver) in connect(target, connections.min(PREFILL_CONNECTIONS), timeout).await? {
        wire::spawn(driver);
        conns.push(conn);
    }
    let per_call = (PREFILL_CHUNK_BYTES / (value.len() + 64)).clamp(1, PREFILL_CHUNK) as u64;
    let filled = mix.keys.filled();
    let chunks = filled.div_ceil(per_call);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for conn in &conns {
        for _ in 0..PREFILL_STREAMS {
            let (conn, mix, value, next) = (conn.clone(), mix.clone(), value.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let chunk = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if chunk >= chunks {
                        return Ok(());
                    }
                    let start = chunk * per_call;
                    let items: Vec<SetManyItem> = (start..(start + per_call).min(filled))
                        .map(|i| SetManyItem {
                            key: mix.keys.key(i),
                            value: value.to_vec(),
                            ttl_seconds: i64::from(mix.ttl),
                            ..SetManyItem::default()
                        })
                        .collect();
                    let n = items.len();
                    let response: SetManyResponse = conn
                        .call(Op::SetMany, &SetManyRequest { items })
                        .await
                        .map_err(|s| BenchError::Prefill(status_text(&s)))?;
                    let stored = response
                        .results
                        .iter()
                        .filter(|r| r.error.is_none() && r.stored)
                        .count();
                    if stored != n {
                        let first_error = response
                            .results
                            .iter()
                            .find_map(|r| r.error.as_ref())
                            .map(|e| format!(": {}", e.message))
                            .unwrap_or_default();
                        return Err(BenchError::Prefill(format!(
                            "the server stored {stored} of {n} keys{first_error}"
                        )));
                    }
                }
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Internal(format!("prefill task: {e}")))??;
    }
    Ok(())
}

/// What every call stream of a run shares.
pub(crate) struct Job {
    pub(crate) mix: Arc<Mix>,
    pub(crate) value: Arc<Vec<u8>>,
    pub(crate) streams: usize,
    pub(crate) seed: u64,
}

/// Runs `streams` call streams on every connection until the limiter stops them.
pub(crate) async fn run(
    job: &Job,
    conns: Vec<(Conn, Driver)>,
    limiter: Arc<Limiter>,
    live: Arc<Live>,
) -> Result<Vec<Recorder>, BenchError> {
    let mut recorders = Vec::with_capacity(conns.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (c, (conn, driver)) in conns.into_iter().enumerate() {
        let recorder = Arc::new(Mutex::new(Recorder::new(&job.mix.ops(), live.clone())?));
        recorders.push(recorder.clone());
        let streams: Vec<CallStream> = (0..job.streams)
            .map(|s| CallStream {
                conn: conn.clone(),
                mix: job.mix.clone(),
                value: job.value.clone(),
                recorder: recorder.clone(),
                rng: Rng::with_seed(job.seed.wrapping_add((c * job.streams + s) as u64)),
            })
            .collect();
        let limiter = limiter.clone();
        tasks.spawn(async move {
            let result = drive(driver, streams.into_iter().map(|s| s.run(&limiter))).await;
            if result.is_err() {
                limiter.stop();
            }
            result
        });
    }
    join_tasks(tasks, &limiter).await?;
    unwrap_recorders(recorders)
}

/// One call in flight at a time, on a shared connection.
struct CallStream {
    conn: Conn,
    mix: Arc<Mix>,
    value: Arc<Vec<u8>>,
    recorder: Arc<Mutex<Recorder>>,
    rng: Rng,
}

impl CallStream {
    async fn run(mut self, limiter: &Limiter) -> Result<(), BenchError> {
        let k = self.mix.keys_per_call() as usize;
        let mut indices = Vec::with_capacity(k);
        loop {
            let phase = limiter.next(Instant::now());
            if phase == Phase::Stop {
                return Ok(());
            }
            let op = self.mix.pick(&mut self.rng);
            let read = matches!(op, Op::Get | Op::GetMany);
            self.mix.keys.draw(read, k, &mut self.rng, &mut indices);
            let (started, result) = self.call(op, &indices).await;
            let done = Instant::now();
            if phase == Phase::Measure {
                let mut recorder = self
                    .recorder
                    .lock()
                    .map_err(|_| BenchError::Internal("recorder lock poisoned".into()))?;
                match result {
                    Ok(tally) => recorder.success(op, done - started, done, &tally)?,
                    Err(status) => recorder.failure(op, code_name(status.code()), done)?,
                }
            }
        }
    }

    /// Makes one call; the clock starts once the request is built.
    async fn call(&mut self, op: Op, indices: &[u64]) -> (Instant, Result<Tally, Status>) {
        let keys = &self.mix.keys;
        let ttl_seconds = i64::from(self.mix.ttl);
        match op {
            Op::Get => {
                let request = GetRequest {
                    key: keys.key(indices[0]),
                    ..GetRequest::default()
                };
                let started = Instant::now();
                let result: Result<GetResponse, _> = self.conn.call(op, &request).await;
                (started, result.map(|r| tally_one(r.outcome)))
            }
            Op::Set => {
                let request = SetRequest {
                    key: keys.key(indices[0]),
                    value: self.value.to_vec(),
                    ttl_seconds,
                    ..SetRequest::default()
                };
                let started = Instant::now();
                let result: Result<SetResponse, _> = self.conn.call(op, &request).await;
                (started, result.map(|r| stored(r.stored)))
            }
            Op::GetMany => {
                let request = GetManyRequest {
                    keys: indices.iter().map(|i| keys.key(*i)).collect(),
                    ..GetManyRequest::default()
                };
                let started = Instant::now();
                let result: Result<GetManyResponse, _> = self.conn.call(op, &request).await;
                let tally = result.map(|r| {
                    let mut tally = Tally::default();
                    for result in &r.results {
                        match &result.error {
                            Some(error) => tally.key_error(key_error_code(error), 1),
                            None => add_outcome(&mut tally, result.outcome),
                        }
                    }
                    tally
                });
                (started, tally)
            }
            Op::SetMany => {
                let items = indices
                    .iter()
                    .map(|i| SetManyItem {
                        key: keys.key(*i),
                        value: self.value.to_vec(),
                        ttl_seconds,
                        ..SetManyItem::default()
                    })
                    .collect();
                let request = SetManyRequest { items };
                let started = Instant::now();
                let result: Result<SetManyResponse, _> = self.conn.call(op, &request).await;
                let tally = result.map(|r| {
                    let mut tally = Tally::default();
                    for result in &r.results {
                        match &result.error {
                            Some(error) => tally.key_error(key_error_code(error), 1),
                            None if result.stored => tally.add(Outcome::Stored, 1),
                            None => tally.add(Outcome::NotStored, 1),
                        }
                    }
                    tally
                });
                (started, tally)
            }
        }
    }
}

/// The outcome of a read as the bench counts it; `None` for a value the API never sends.
pub(crate) fn outcome(value: i32) -> Option<Outcome> {
    match proto::Outcome::try_from(value).ok()? {
        proto::Outcome::Hit => Some(Outcome::Hit),
        proto::Outcome::Stale => Some(Outcome::Stale),
        proto::Outcome::Refresh => Some(Outcome::Refresh),
        proto::Outcome::Miss => Some(Outcome::Miss),
        proto::Outcome::Pending => Some(Outcome::Pending),
        proto::Outcome::Unspecified => None,
    }
}

/// A read answer with an outcome the API does not define counts as a per-key error.
const BAD_OUTCOME: &str = "BAD_OUTCOME";

fn add_outcome(tally: &mut Tally, value: i32) {
    match outcome(value) {
        Some(outcome) => tally.add(outcome, 1),
        None => tally.key_error(BAD_OUTCOME, 1),
    }
}

fn tally_one(value: i32) -> Tally {
    let mut tally = Tally::default();
    add_outcome(&mut tally, value);
    tally
}

fn stored(stored: bool) -> Tally {
    Tally::one(if stored {
        Outcome::Stored
    } else {
        Outcome::NotStored
    })
}

fn key_error_code(error: &KeyError) -> &'static str {
    code_name(tonic::Code::from_i32(error.code))
}

/// A status for an error message: its code name and message.
pub(crate) fn status_text(status: &Status) -> String {
    format!("{} ({})", code_name(status.code()), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_from_the_api() {
        assert_eq!(outcome(proto::Outcome::Hit as i32), Some(Outcome::Hit));
        assert_eq!(outcome(proto::Outcome::Stale as i32), Some(Outcome::Stale));
        assert_eq!(
            outcome(proto::Outcome::Refresh as i32),
            Some(Outcome::Refresh)
        );
        assert_eq!(outcome(proto::Outcome::Miss as i32), Some(Outcome::Miss));
        assert_eq!(
            outcome(proto::Outcome::Pending as i32),
            Some(Outcome::Pending)
        );
        assert_eq!(outcome(0), None);
        assert_eq!(outcome(99), None);
        let tally = tally_one(99);
        assert_eq!(tally.key_errors_total(), 1);
    }

    #[test]
    fn key_error_codes_are_named() {
        let error = KeyError {
            code: 14,
            message: "down".into(),
        };
        assert_eq!(key_error_code(&error), "UNAVAILABLE");
        assert_eq!(
            status_text(&Status::invalid_argument("empty key")),
            "INVALID_ARGUMENT (empty key)"
        );
    }
}
