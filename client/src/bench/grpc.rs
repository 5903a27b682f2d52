//! The workloads over gRPC: connections (one HTTP/2 connection per tonic channel), call
//! metadata, the prefill, and the call streams of the get/set mix. Calls go through the raw
//! generated client, so that what is measured is the service and gRPC, not a wrapper's retries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fastrand::Rng;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::BenchError;
use super::control::{Limiter, Live, Phase};
use super::options::{GrpcTarget, Mix};
use super::record::{Op, Outcome, Recorder, Tally, code_name};
use crate::proto::{
    self, GetManyRequest, GetRequest, KeyError, SetManyItem, SetManyRequest, SetRequest,
};
use crate::{AUTHORIZATION_HEADER, CacheClient, NAMESPACE_HEADER, VERSION_HEADER};

/// HTTP/2 flow-control windows of the client: large enough that a batch reply never waits for
/// a window update, as with h2load's defaults; the server's windows are its own.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;
/// Keys per SetMany of the prefill (fewer when values are large, to stay far below the
/// server's 4 MiB message limit).
const PREFILL_CHUNK: usize = 100;
const PREFILL_CHUNK_BYTES: usize = 1 << 20;
/// Prefill calls in flight per connection.
const PREFILL_STREAMS: usize = 4;

/// The metadata every call carries.
#[derive(Clone)]
pub(crate) struct Meta {
    version: tonic::metadata::AsciiMetadataValue,
    namespace: Option<tonic::metadata::AsciiMetadataValue>,
    authorization: Option<tonic::metadata::AsciiMetadataValue>,
}

impl Meta {
    pub(crate) fn new(target: &GrpcTarget) -> Self {
        Self {
            version: target.version.clone(),
            namespace: target.namespace.clone(),
            authorization: target.authorization.clone(),
        }
    }

    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(VERSION_HEADER, self.version.clone());
        if let Some(namespace) = &self.namespace {
            metadata.insert(NAMESPACE_HEADER, namespace.clone());
        }
        if let Some(authorization) = &self.authorization {
            metadata.insert(AUTHORIZATION_HEADER, authorization.clone());
        }
        request
    }
}

/// Opens `connections` HTTP/2 connections, spread over the endpoints in turn.
pub(crate) async fn connect(
    target: &GrpcTarget,
    connections: usize,
    timeout: Duration,
) -> Result<Vec<CacheClient<Channel>>, BenchError> {
    let mut clients = Vec::with_capacity(connections);
    for i in 0..connections {
        let uri = &target.endpoints[i % target.endpoints.len()];
        let fail = |reason: String| BenchError::Connect {
            target: uri.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| fail(super::error_chain(&e)))?
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if uri.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_enabled_roots())
                .map_err(|e| fail(super::error_chain(&e)))?;
        }
        // Each `connect` opens its own connection, so C channels are C HTTP/2 connections.
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| fail(super::error_chain(&e)))?;
        clients.push(CacheClient::new(channel));
    }
    Ok(clients)
}

/// Stores the first `filled` keys with SetMany calls over every connection.
pub(crate) async fn prefill(
    clients: &[CacheClient<Channel>],
    meta: &Meta,
    mix: &Arc<Mix>,
    value: &Arc<Vec<u8>>,
) -> Result<(), BenchError> {
    let per_call = (PREFILL_CHUNK_BYTES / (value.len() + 64)).clamp(1, PREFILL_CHUNK) as u64;
    let filled = mix.keys.filled();
    let chunks = filled.div_ceil(per_call);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        for _ in 0..PREFILL_STREAMS {
            let (mut client, meta, mix, value, next) = (
                client.clone(),
                meta.clone(),
                mix.clone(),
                value.clone(),
                next.clone(),
            );
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
                    let response = client
                        .set_many(meta.request(SetManyRequest { items }))
                        .await
                        .map_err(|s| BenchError::Prefill(status_text(&s)))?;
                    let stored = response
                        .get_ref()
                        .results
                        .iter()
                        .filter(|r| r.error.is_none() && r.stored)
                        .count();
                    if stored != n {
                        let first_error = response
                            .get_ref()
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
    pub(crate) meta: Meta,
    pub(crate) mix: Arc<Mix>,
    pub(crate) value: Arc<Vec<u8>>,
    pub(crate) streams: usize,
    pub(crate) seed: u64,
}

/// Runs `streams` call streams on every connection until the limiter stops them.
pub(crate) async fn run(
    job: &Job,
    clients: Vec<CacheClient<Channel>>,
    limiter: Arc<Limiter>,
    live: Arc<Live>,
) -> Result<Vec<Recorder>, BenchError> {
    let mut recorders = Vec::with_capacity(clients.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (c, client) in clients.into_iter().enumerate() {
        let recorder = Arc::new(Mutex::new(Recorder::new(&job.mix.ops(), live.clone())?));
        recorders.push(recorder.clone());
        for s in 0..job.streams {
            let stream = CallStream {
                client: client.clone(),
                meta: job.meta.clone(),
                mix: job.mix.clone(),
                value: job.value.clone(),
                recorder: recorder.clone(),
                rng: Rng::with_seed(job.seed.wrapping_add((c * job.streams + s) as u64)),
            };
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let result = stream.run(&limiter).await;
                if result.is_err() {
                    limiter.stop();
                }
                result
            });
        }
    }
    super::join_tasks(tasks, &limiter).await?;
    super::unwrap_recorders(recorders)
}

/// One call in flight at a time, on a shared connection.
struct CallStream {
    client: CacheClient<Channel>,
    meta: Meta,
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
        match op {
            Op::Get => {
                let request = self.meta.request(GetRequest {
                    key: keys.key(indices[0]),
                    ..GetRequest::default()
                });
                let started = Instant::now();
                let result = self.client.get(request).await;
                (started, result.map(|r| tally_one(r.get_ref().outcome)))
            }
            Op::Set => {
                let request = self.meta.request(SetRequest {
                    key: keys.key(indices[0]),
                    value: self.value.to_vec(),
                    ttl_seconds: i64::from(self.mix.ttl),
                    ..SetRequest::default()
                });
                let started = Instant::now();
                let result = self.client.set(request).await;
                (started, result.map(|r| stored(r.get_ref().stored)))
            }
            Op::GetMany => {
                let request = self.meta.request(GetManyRequest {
                    keys: indices.iter().map(|i| keys.key(*i)).collect(),
                    ..GetManyRequest::default()
                });
                let started = Instant::now();
                let result = self.client.get_many(request).await;
                let tally = result.map(|r| {
                    let mut tally = Tally::default();
                    for result in &r.get_ref().results {
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
                        ttl_seconds: i64::from(self.mix.ttl),
                        ..SetManyItem::default()
                    })
                    .collect();
                let request = self.meta.request(SetManyRequest { items });
                let started = Instant::now();
                let result = self.client.set_many(request).await;
                let tally = result.map(|r| {
                    let mut tally = Tally::default();
                    for result in &r.get_ref().results {
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
    fn metadata_goes_on_every_request() {
        let target = GrpcTarget {
            endpoints: vec!["http://127.0.0.1:1".into()],
            version: "v7".parse().expect("ascii"),
            namespace: Some("shop".parse().expect("ascii")),
            authorization: Some("Bearer t".parse().expect("ascii")),
        };
        let request = Meta::new(&target).request(());
        let metadata = request.metadata();
        assert_eq!(metadata.get(VERSION_HEADER).expect("version"), "v7");
        assert_eq!(metadata.get(NAMESPACE_HEADER).expect("namespace"), "shop");
        assert_eq!(
            metadata.get(AUTHORIZATION_HEADER).expect("authorization"),
            "Bearer t"
        );
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
