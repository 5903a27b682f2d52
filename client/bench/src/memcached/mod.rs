//! `--memcached` mode: the same workload, concurrency and key distribution sent directly to
//! memcached (or to a proxy such as twemproxy), for ratios measured side by side.
//!
//! Each connection keeps `streams` requests in flight, pipelined: a writer sends a new request
//! whenever a reply has come back (every free slot at once, in one write), and a reader parses
//! the replies in order (memcached answers a connection's requests in the order they came).
//! That is the memcached equivalent of `streams` concurrent calls on one HTTP/2 connection.

pub(crate) mod proto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf as _, BytesMut};
use fastrand::Rng;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use self::proto::{ProtocolError, Reply};
use super::args::Protocol;
use super::control::{Limiter, Live, Phase, join_tasks};
use super::error::BenchError;
use super::options::Mix;
use super::record::{Op, Outcome, Recorder};

/// Keys per pipelined write of the prefill.
const PREFILL_CHUNK: u64 = 100;
/// Initial read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;

/// What every connection of a run shares.
pub(crate) struct Job {
    pub(crate) addr: String,
    pub(crate) protocol: Protocol,
    pub(crate) mix: Arc<Mix>,
    pub(crate) value: Vec<u8>,
    pub(crate) streams: usize,
    pub(crate) timeout: Duration,
}

impl Job {
    fn error(&self, reason: impl std::fmt::Display) -> BenchError {
        BenchError::Memcached {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Opens `connections` TCP connections (TCP_NODELAY, as memcached clients do).
pub(crate) async fn connect(
    addr: &str,
    connections: usize,
    timeout: Duration,
) -> Result<Vec<TcpStream>, BenchError> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let fail = |reason: String| BenchError::Connect {
            target: format!("memcached {addr}"),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| fail(format!("no connection within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Stores the first `filled` keys before the run, in pipelined chunks on one connection
/// (10,000 keys take a hundred round trips).
pub(crate) async fn prefill(job: &Job, stream: &mut TcpStream) -> Result<(), BenchError> {
    let keys = &job.mix.keys;
    let mut indices = Vec::new();
    let mut out = Vec::new();
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    let mut start = 0;
    while start < keys.filled() {
        let end = (start + PREFILL_CHUNK).min(keys.filled());
        indices.clear();
        indices.extend(start..end);
        out.clear();
        proto::encode(
            job.protocol,
            Op::SetMany,
            keys,
            &indices,
            &job.value,
            job.mix.ttl,
            &mut out,
        );
        write(stream, &out, job).await?;
        let n = end - start;
        match read_reply(stream, &mut buf, job, Op::SetMany, n).await? {
            Reply::Done(tally) if tally.count(Outcome::Stored) == n => {}
            Reply::Done(tally) => {
                return Err(BenchError::Prefill(format!(
                    "memcached {} stored {} of {n} keys (not stored: {}, errors: {})",
                    job.addr,
                    tally.count(Outcome::Stored),
                    tally.count(Outcome::NotStored),
                    tally.key_errors_total()
                )));
            }
            Reply::Failed(code) => {
                return Err(BenchError::Prefill(format!(
                    "memcached {} answered {code}",
                    job.addr
                )));
            }
        }
        start = end;
    }
    Ok(())
}

/// Runs every connection until the limiter stops them; one recorder per connection.
pub(crate) async fn run(
    job: Arc<Job>,
    streams: Vec<TcpStream>,
    limiter: Arc<Limiter>,
    live: Arc<Live>,
    seed: u64,
) -> Result<Vec<Recorder>, BenchError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let recorder = Recorder::new(&job.mix.ops(), live.clone())?;
        let rng = Rng::with_seed(seed.wrapping_add(i as u64));
        let (job, limiter) = (job.clone(), limiter.clone());
        tasks.spawn(async move {
            let result = drive(&job, stream, &limiter, recorder, rng).await;
            if result.is_err() {
                limiter.stop();
            }
            result
        });
    }
    join_tasks(tasks, &limiter).await
}

/// A request on the wire whose reply has not been read yet.
struct Pending {
    op: Op,
    keys: u64,
    started: Instant,
    measured: bool,
}

/// One connection: the writer and the reader run side by side in this task.
async fn drive(
    job: &Job,
    stream: TcpStream,
    limiter: &Limiter,
    recorder: Recorder,
    rng: Rng,
) -> Result<Recorder, BenchError> {
    let (reader, writer) = stream.into_split();
    // Free slots go from the reader to the writer; requests on the wire from the writer to
    // the reader, in the order they were written.
    let (free_tx, free_rx) = mpsc::unbounded_channel::<()>();
    let (sent_tx, sent_rx) = mpsc::unbounded_channel::<Pending>();
    for _ in 0..job.streams {
        let _ = free_tx.send(());
    }
    let ((), recorder) = tokio::try_join!(
        write_loop(job, writer, limiter, rng, free_rx, sent_tx),
        read_loop(job, reader, recorder, free_tx, sent_rx),
    )?;
    Ok(recorder)
}

async fn write_loop(
    job: &Job,
    mut writer: OwnedWriteHalf,
    limiter: &Limiter,
    mut rng: Rng,
    mut free: mpsc::UnboundedReceiver<()>,
    sent: mpsc::UnboundedSender<Pending>,
) -> Result<(), BenchError> {
    let mix = &job.mix;
    let k = mix.keys_per_call() as usize;
    let mut out = Vec::with_capacity(READ_BUFFER);
    let mut indices = Vec::with_capacity(k);
    // The reader ends (dropping its sender) only after an error, which try_join! reports.
    while free.recv().await.is_some() {
        let mut slots = 1;
        while free.try_recv().is_ok() {
            slots += 1;
        }
        out.clear();
        let now = Instant::now();
        let mut stop = false;
        for _ in 0..slots {
            let phase = limiter.next(now);
            if phase == Phase::Stop {
                stop = true;
                break;
            }
            let op = mix.pick(&mut rng);
            mix.keys.draw(
                matches!(op, Op::Get | Op::GetMany),
                k,
                &mut rng,
                &mut indices,
            );
            proto::encode(
                job.protocol,
                op,
                &mix.keys,
                &indices,
                &job.value,
                mix.ttl,
                &mut out,
            );
            let pending = Pending {
                op,
                keys: k as u64,
                started: now,
                measured: phase == Phase::Measure,
            };
            if sent.send(pending).is_err() {
                return Ok(());
            }
        }
        if !out.is_empty() {
            write(&mut writer, &out, job).await?;
        }
        if stop {
            break;
        }
    }
    // Dropping `sent` tells the reader that nothing more is coming.
    Ok(())
}

async fn read_loop(
    job: &Job,
    mut reader: OwnedReadHalf,
    mut recorder: Recorder,
    free: mpsc::UnboundedSender<()>,
    mut sent: mpsc::UnboundedReceiver<Pending>,
) -> Result<Recorder, BenchError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    while let Some(pending) = sent.recv().await {
        let reply = read_reply(&mut reader, &mut buf, job, pending.op, pending.keys).await?;
        let done = Instant::now();
        if pending.measured {
            let latency = done.saturating_duration_since(pending.started);
            match reply {
                Reply::Done(tally) => recorder.success(pending.op, latency, done, &tally)?,
                Reply::Failed(code) => recorder.failure(pending.op, code, done)?,
            }
        }
        // The writer may have stopped already; then the slot is simply not reused.
        let _ = free.send(());
    }
    if !buf.is_empty() {
        return Err(job.error(ProtocolError::trailing(&buf)));
    }
    Ok(recorder)
}

/// Reads until the reply to one request is complete, and takes it out of `buf`.
async fn read_reply<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    job: &Job,
    op: Op,
    keys: u64,
) -> Result<Reply, BenchError> {
    loop {
        if let Some((reply, used)) =
            proto::parse(job.protocol, op, keys, buf).map_err(|e| job.error(e))?
        {
            buf.advance(used);
            return Ok(reply);
        }
        let read = tokio::time::timeout(job.timeout, reader.read_buf(buf))
            .await
            .map_err(|_| job.error(format!("no reply within {:?}", job.timeout)))?
            .map_err(|e| job.error(e))?;
        if read == 0 {
            return Err(job.error("connection closed by the server"));
        }
    }
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    job: &Job,
) -> Result<(), BenchError> {
    tokio::time::timeout(job.timeout, writer.write_all(bytes))
        .await
        .map_err(|_| job.error(format!("write blocked for {:?}", job.timeout)))?
        .map_err(|e| job.error(e))
}
