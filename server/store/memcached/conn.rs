//! One multiplexed connection to a memcached server.
//!
//! Many callers share a connection at once. A writer task takes every command queued since its
//! last write and sends them in one write (the coalescing that twemproxy and mcrouter do), and a
//! reader task parses replies as they arrive and hands each caller its own. memcached answers
//! the commands of a connection in order, so replies are matched to commands in FIFO order, and
//! each match is checked against the opaque (`O<n>`) the command carried: a reply that does not
//! belong to its command (a bug, or a peer that is not memcached) closes the connection instead
//! of reaching the wrong caller.
//!
//! A caller that gives up (deadline, cancellation) only drops its receiver: the reader still
//! consumes its replies, so the connection stays in step and no other caller can ever see them.
//! When the connection breaks, commands not yet written are reported as never sent (safe to
//! retry on a new connection), commands written but unanswered as possibly applied.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};

use super::wire::{self, ParseError, Reply};

/// Most bytes of queued commands sent in one write.
const MAX_WRITE: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// Why a command got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnError {
    /// The connection was closed before the command was written: it never reached memcached.
    #[error("connection closed before the command was sent")]
    NotSent,
    /// The connection broke after the command was written: it may have been applied.
    #[error("connection lost: {0}")]
    Broken(String),
    /// The peer sent something that is not a meta-protocol reply to this command.
    #[error("{0}")]
    Protocol(String),
}

/// Commands for one round trip: their bytes, and the opaques of the replies they expect.
#[derive(Clone)]
pub(crate) struct Batch {
    /// The commands, as buffers written back to back (values are separate buffers, so large
    /// values are not copied).
    pub(crate) bytes: Vec<Bytes>,
    /// The opaque of each command, in order: one reply per command.
    pub(crate) opaques: Vec<u32>,
}

/// A batch in the queue, with where its replies go.
struct Outgoing {
    batch: Batch,
    reply: oneshot::Sender<Result<Vec<Reply>, ConnError>>,
}

/// A batch written (or being written), waiting for its replies.
struct Waiting {
    opaques: Vec<u32>,
    replies: Vec<Reply>,
    reply: oneshot::Sender<Result<Vec<Reply>, ConnError>>,
}

/// State shared by the handle and the two tasks.
struct Shared {
    waiting: Mutex<VecDeque<Waiting>>,
    closed: AtomicBool,
    close: Notify,
    /// Batches queued or waiting for replies.
    in_flight: AtomicUsize,
}

impl Shared {
    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the connection: every batch waiting for replies fails with `error`; batches
    /// still queued fail as never sent when the writer drops them.
    fn fail(&self, error: &ConnError) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_waiters();
        let failed: Vec<Waiting> = self.waiting().drain(..).collect();
        for w in failed {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = w.reply.send(Err(error.clone()));
        }
    }
}

/// A handle on a connection; cloning it shares the connection.
#[derive(Clone)]
pub(crate) struct Conn {
    queue: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Takes over a connected stream: spawns its writer and reader tasks.
    pub(crate) fn start(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        let (queue, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            waiting: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
            close: Notify::new(),
            in_flight: AtomicUsize::new(0),
        });
        tokio::spawn(write_loop(write, rx, shared.clone()));
        tokio::spawn(read_loop(read, shared.clone()));
        Self { queue, shared }
    }

    /// Whether the connection is closed (broken, or out of step).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Batches queued or waiting for replies on this connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Sends a batch and waits for its replies, one per command, in order.
    pub(crate) async fn call(&self, batch: Batch) -> Result<Vec<Reply>, ConnError> {
        if batch.opaques.is_empty() {
            // Nothing to send, nothing to wait for (and a batch without commands must never sit
            // in the queue of batches waiting for replies).
            return Ok(Vec::new());
        }
        if self.is_closed() {
            return Err(ConnError::NotSent);
        }
        let (reply, rx) = oneshot::channel();
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.queue.send(Outgoing { batch, reply }).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnError::NotSent);
        }
        // A dropped sender means the writer dropped the batch unsent (the connection closed).
        rx.await.unwrap_or(Err(ConnError::NotSent))
    }

    /// Closes the connection (its tasks end; waiting callers get an error).
    pub(crate) fn close(&self, why: &str) {
        self.shared.fail(&ConnError::Broken(why.to_owned()));
    }
}

/// Writes every queued batch, coalescing what has queued up since the last write.
async fn write_loop(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut bufs: Vec<Bytes> = Vec::new();
    loop {
        let closing = shared.close.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if shared.closed.load(Ordering::Acquire) {
            break;
        }
        // When every handle is gone the queue ends, and so does the connection.
        let first = tokio::select! {
            biased;
            () = &mut closing => break,
            next = rx.recv() => match next {
                Some(outgoing) => outgoing,
                None => break,
            },
        };
        if shared.closed.load(Ordering::Acquire) {
            not_sent(&shared, first);
            break;
        }
        // Let the calls that are ready to run queue their commands too, so that they leave in
        // this write: one write (and one wake-up of memcached) for many commands.
        tokio::task::yield_now().await;
        let mut size = 0;
        let mut batches = vec![first];
        while size < MAX_WRITE {
            match rx.try_recv() {
                Ok(next) => {
                    size += next.batch.bytes.iter().map(Bytes::len).sum::<usize>();
                    batches.push(next);
                }
                Err(_) => break,
            }
        }
        {
            // Registered before writing: a reply can arrive before the write returns.
            let mut waiting = shared.waiting();
            // Under the lock: a connection that closed since (the reader saw the peer go) has
            // already failed what was waiting, and nobody would answer these.
            if shared.closed.load(Ordering::Acquire) {
                drop(waiting);
                for outgoing in batches {
                    not_sent(&shared, outgoing);
                }
                break;
            }
            for outgoing in batches {
                let Batch { bytes, opaques } = outgoing.batch;
                bufs.extend(bytes);
                waiting.push_back(Waiting {
                    replies: Vec::with_capacity(opaques.len()),
                    opaques,
                    reply: outgoing.reply,
                });
            }
        }
        if let Err(e) = write_all(&mut write, &bufs).await {
            shared.fail(&ConnError::Broken(e.to_string()));
            break;
        }
        bufs.clear();
    }
    // Batches still queued were never written.
    rx.close();
    while let Ok(outgoing) = rx.try_recv() {
        not_sent(&shared, outgoing);
    }
    let _ = write.shutdown().await;
}

fn not_sent(shared: &Shared, outgoing: Outgoing) {
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    let _ = outgoing.reply.send(Err(ConnError::NotSent));
}

/// Writes buffers back to back with vectored writes.
async fn write_all(write: &mut OwnedWriteHalf, bufs: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs
        .iter()
        .filter(|b| !b.is_empty())
        .map(|b| IoSlice::new(b))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = write.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Parses replies and hands them to the batches waiting for them, in order.
async fn read_loop(mut read: OwnedReadHalf, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            match wire::parse(&mut buf) {
                Ok(Some(reply)) => {
                    if let Err(e) = deliver(&shared, reply) {
                        shared.fail(&e);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared.fail(&ConnError::Protocol(e.to_string()));
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let closing = shared.close.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let read_result = tokio::select! {
            biased;
            () = &mut closing => return,
            r = read.read_buf(&mut buf) => r,
        };
        match read_result {
            Ok(0) => {
                shared.fail(&ConnError::Broken("closed by the server".to_owned()));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.fail(&ConnError::Broken(e.to_string()));
                return;
            }
        }
    }
}

/// Gives a reply to the batch at the front of the queue; sends the batch its replies once it
/// has them all.
fn deliver(shared: &Shared, reply: Reply) -> Result<(), ConnError> {
    let mut waiting = shared.waiting();
    let Some(front) = waiting.front_mut() else {
        return Err(ConnError::Protocol(format!(
            "a reply nobody asked for: {}",
            describe(&reply)
        )));
    };
    let Some(&expected) = front.opaques.get(front.replies.len()) else {
        return Err(ConnError::Protocol(
            "a reply beyond what the command asked for".to_owned(),
        ));
    };
    if let Some(opaque) = reply.opaque()
        && opaque != expected
    {
        return Err(ConnError::Protocol(format!(
            "reply out of step (opaque {opaque}, expected {expected})"
        )));
    }
    front.replies.push(reply);
    if front.replies.len() == front.opaques.len()
        && let Some(done) = waiting.pop_front()
    {
        drop(waiting);
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        // The caller may be gone (deadline, cancellation): its replies are dropped here.
        let _ = done.reply.send(Ok(done.replies));
    }
    Ok(())
}

/// A short description of a reply for errors (never a value).
fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Value(..) => "VA".to_owned(),
        Reply::Done(_) => "HD".to_owned(),
        Reply::Miss(_) => "EN".to_owned(),
        Reply::NotFound(_) => "NF".to_owned(),
        Reply::NotStored(_) => "NS".to_owned(),
        Reply::Exists(_) => "EX".to_owned(),
        Reply::NoOp(_) => "MN".to_owned(),
        Reply::Version(v) => format!("VERSION {v}"),
        Reply::ClientError(m) => format!("CLIENT_ERROR {m}"),
        Reply::ServerError(m) => format!("SERVER_ERROR {m}"),
        Reply::Error => "ERROR".to_owned(),
    }
}

impl From<ParseError> for ConnError {
    fn from(e: ParseError) -> Self {
        Self::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    //! The connection's own rules against a scripted peer on loopback (memcached itself is
    //! exercised by the end-to-end tests).
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A peer on loopback that answers each command line with what `replies` says (nothing
    /// for `None`).
    async fn peer(replies: impl Fn(&str) -> Option<String> + Send + 'static) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(reply) = replies(&line)
                    && write.write_all(reply.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        });
        TcpStream::connect(addr).await.expect("connect")
    }

    fn opaque_of(line: &str) -> String {
        line.split(' ')
            .find_map(|t| t.strip_prefix('O'))
            .unwrap_or("0")
            .to_owned()
    }

    fn echo(line: &str) -> Option<String> {
        let key = line.split(' ').nth(1).unwrap_or("");
        Some(format!(
            "VA {} O{}\r\n{key}\r\n",
            key.len(),
            opaque_of(line)
        ))
    }

    fn get(key: &str, opaque: u32) -> Batch {
        Batch {
            bytes: vec![Bytes::from(format!("mg {key} v O{opaque}\r\n"))],
            opaques: vec![opaque],
        }
    }

    #[tokio::test]
    async fn concurrent_callers_each_get_their_own_reply() {
        let conn = Conn::start(peer(echo).await);
        let calls = (0..200u32).map(|i| {
            let conn = conn.clone();
            async move { (i, conn.call(get(&format!("k{i}"), i + 1)).await) }
        });
        for (i, replies) in futures_util::future::join_all(calls).await {
            let replies = replies.expect("answered");
            assert_eq!(
                replies,
                vec![Reply::Value(
                    wire::Meta {
                        opaque: Some(i + 1),
                        ..wire::Meta::default()
                    },
                    Bytes::from(format!("k{i}"))
                )]
            );
        }
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_connection_in_step() {
        // The peer answers `slow` only after the next command arrives.
        let held = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let conn = Conn::start(
            peer(move |line| {
                let mut held = held.lock().expect("lock");
                if line.contains(" slow ") {
                    *held = echo(line);
                    return None;
                }
                let earlier = held.take().unwrap_or_default();
                Some(earlier + &echo(line).unwrap_or_default())
            })
            .await,
        );
        let gave_up =
            tokio::time::timeout(Duration::from_millis(50), conn.call(get("slow", 1))).await;
        assert!(gave_up.is_err(), "the slow call is still waiting");
        // Its late reply is consumed and dropped; the next caller gets its own.
        let replies = conn.call(get("next", 2)).await.expect("answered");
        assert!(
            matches!(&replies[..], [Reply::Value(meta, data)] if meta.opaque == Some(2) && &data[..] == b"next"),
            "{replies:?}"
        );
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn a_reply_out_of_step_closes_the_connection() {
        let conn = Conn::start(peer(|_| Some("HD O999\r\n".to_owned())).await);
        let e = conn.call(get("k", 1)).await.expect_err("refused");
        assert!(matches!(e, ConnError::Protocol(_)), "{e:?}");
        assert!(conn.is_closed());
        assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
    }

    #[tokio::test]
    async fn a_peer_that_is_not_memcached_closes_the_connection() {
        let conn = Conn::start(peer(|_| Some("HTTP/1.1 400 Bad Request\r\n".to_owned())).await);
        let e = conn.call(get("k", 1)).await.expect_err("refused");
        assert!(
            matches!(e, ConnError::Protocol(ref m) if m.contains("not a memcached")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_closed_peer_fails_what_was_sent_and_refuses_what_was_not() {
        // The peer hangs up at the first command without answering.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut lines = BufReader::new(stream).lines();
            let _ = lines.next_line().await;
        });
        let conn = Conn::start(TcpStream::connect(addr).await.expect("connect"));
        let e = conn.call(get("k", 1)).await.expect_err("lost");
        assert!(matches!(e, ConnError::Broken(_)), "{e:?}");
        assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_empty_batch_is_answered_at_once_and_keeps_the_connection_in_step() {
        let conn = Conn::start(peer(echo).await);
        let empty = Batch {
            bytes: Vec::new(),
            opaques: Vec::new(),
        };
        assert_eq!(conn.call(empty).await, Ok(Vec::new()));
        let replies = conn.call(get("k", 1)).await.expect("answered");
        assert!(matches!(&replies[..], [Reply::Value(meta, _)] if meta.opaque == Some(1)));
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn batches_get_all_their_replies_in_order() {
        let conn = Conn::start(peer(echo).await);
        let batch = Batch {
            bytes: vec![Bytes::from_static(
                b"mg a v O7\r\nmg bb v O8\r\nmg ccc v O9\r\n",
            )],
            opaques: vec![7, 8, 9],
        };
        let replies = conn.call(batch).await.expect("answered");
        let values: Vec<&[u8]> = replies
            .iter()
            .map(|r| match r {
                Reply::Value(_, data) => &data[..],
                _ => &b"?"[..],
            })
            .collect();
        assert_eq!(values, [&b"a"[..], b"bb", b"ccc"]);
    }
}
