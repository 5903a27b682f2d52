//! One multiplexed connection to a memcached server.
//!
//! Many callers share a connection at once, and there is no task of its own: the callers drive
//! it. A caller queues its commands, then whoever holds the connection's I/O (one caller at a
//! time) writes every command queued so far in one write and reads replies, handing each
//! waiting caller its own as they arrive, until its own are in. So on an idle connection a call
//! costs its write, one wait for memcached, and its read — no hand-off to another task — and
//! under load the commands of many callers still leave in one write (the coalescing that
//! twemproxy and mcrouter do). When the caller driving the connection has its replies, the
//! next caller waiting takes over.
//!
//! memcached answers the commands of a connection in order, so replies are matched to commands
//! in FIFO order, and each match is checked against the opaque (`O<n>`) the command carried: a
//! reply that does not belong to its command (a bug, or a peer that is not memcached) closes
//! the connection instead of reaching the wrong caller.
//!
//! A caller that gives up (deadline, cancellation) leaves its place in the queue: its commands
//! are never written if they were not yet, and if they were, their replies are read and dropped
//! as they arrive (values skipped without being buffered), so the connection stays in step and
//! no other caller can ever see them. A reply that won an election for a caller that left is
//! given back (see [`Abandon`]).
//!
//! Memory is bounded: at most `max_queued` commands wait on a connection (more fail at once,
//! [`ConnError::Full`]); reply lines are read through a buffer of a fixed size; a value is kept
//! only within its caller's budget and the server-wide reply budget, in a buffer of its own
//! (never pinning the read buffer), else skipped as it arrives ([`Reply::Skipped`]).
//!
//! When the connection breaks, commands not yet written are reported as never sent (safe to
//! retry on a new connection), commands written but unanswered as possibly applied. Dropping
//! the last handle closes the socket.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::wire::{Admit, Meta, ParseError, Reply, ReplyReader};
use crate::store::budget::{CallBudget, ReplyBudget};

/// Most buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;

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
    /// The connection has as many commands waiting as it takes: nothing was sent.
    #[error("too many commands waiting on the connection")]
    Full,
}

/// What to send when a reply reaches no caller (the caller left, or the value could not be
/// kept): `(command index, reply flags, value size, buffer, opaque)`; writes a command into the
/// buffer and says whether it did. It gives back an election the reply won, so that a caller
/// that left does not hold a refresh or a cold fill until the election times out.
pub(crate) type Abandon =
    Arc<dyn Fn(usize, &Meta, usize, &mut BytesMut, u32) -> bool + Send + Sync>;

/// Commands for one round trip: their bytes, and the opaques of the replies they expect.
#[derive(Clone)]
pub(crate) struct Batch {
    /// The commands, as buffers written back to back (values are separate buffers, so large
    /// values are not copied).
    pub(crate) bytes: Vec<Bytes>,
    /// The opaque of each command, in order: one reply per command.
    pub(crate) opaques: Vec<u32>,
    /// What the caller can take of values (shared by the batches of one call); `None`: any
    /// value within the connection's limit.
    pub(crate) budget: Option<Arc<CallBudget>>,
    /// What to send for a reply nobody takes.
    pub(crate) abandon: Option<Abandon>,
}

impl Batch {
    /// A batch of commands with no budget and nothing to give back.
    pub(crate) fn new(bytes: Vec<Bytes>, opaques: Vec<u32>) -> Self {
        Self {
            bytes,
            opaques,
            budget: None,
            abandon: None,
        }
    }
}

/// The limits of a connection.
#[derive(Clone)]
pub(crate) struct ConnLimits {
    /// Most commands queued or waiting for replies (a batch larger than this is taken when
    /// nothing else waits).
    pub(crate) max_queued: usize,
    /// The largest value kept from a reply.
    pub(crate) max_value: usize,
    /// The server-wide budget of reply values held at once.
    pub(crate) reply_budget: ReplyBudget,
}

/// Where a caller's replies go.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<Vec<Reply>, ConnError>>>,
    ready: Notify,
    /// The caller left: its commands are not written, its replies are dropped.
    gone: AtomicBool,
}

impl Slot {
    fn set(&self, result: Result<Vec<Reply>, ConnError>) {
        *lock(&self.result) = Some(result);
        self.ready.notify_one();
    }

    fn take(&self) -> Option<Result<Vec<Reply>, ConnError>> {
        lock(&self.result).take()
    }

    fn is_set(&self) -> bool {
        lock(&self.result).is_some()
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

/// A batch in the connection's queue.
struct Entry {
    /// The bytes still to write (emptied once handed to the writer).
    bytes: Vec<Bytes>,
    opaques: Vec<u32>,
    /// Replies received (kept in `replies` unless nobody takes them).
    answered: usize,
    replies: Vec<Reply>,
    /// `None` for a command sent on behalf of nobody (an election given back).
    slot: Option<Arc<Slot>>,
    budget: Option<Arc<CallBudget>>,
    abandon: Option<Abandon>,
}

impl Entry {
    /// The caller left before the batch was written: it is never written.
    fn withdrawn(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.is_gone())
    }

    /// Nobody takes the replies (the caller left, or there never was one).
    fn unwanted(&self) -> bool {
        self.slot.as_ref().is_none_or(|s| s.is_gone())
    }

    fn commands(&self) -> usize {
        self.opaques.len()
    }
}

/// Batches queued (not written) and written (waiting for replies).
#[derive(Default)]
struct Queue {
    pending: VecDeque<Entry>,
    waiting: VecDeque<Entry>,
    /// Commands in both.
    commands: usize,
}

/// The socket and what is buffered on it; held by the caller driving the connection.
struct Io {
    stream: TcpStream,
    reader: ReplyReader,
    /// Bytes handed to the socket, not all written yet.
    out: VecDeque<Bytes>,
}

/// State shared by the handles.
struct Shared {
    queue: Mutex<Queue>,
    io: tokio::sync::Mutex<Io>,
    /// Wakes the caller driving the connection when commands are queued, so that they leave
    /// without waiting for its replies.
    queued: Notify,
    closed: AtomicBool,
    /// Bytes read so far (a connection that reads nothing while commands wait is stalled).
    bytes_read: AtomicU64,
    /// Batches queued or waiting for replies.
    in_flight: AtomicUsize,
    limits: ConnLimits,
    /// Opaques for commands sent on behalf of nobody.
    opaques: Arc<AtomicU32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the connection: batches waiting for replies fail with `error`, batches not
    /// written fail as never sent.
    fn fail(&self, error: &ConnError) {
        let (pending, waiting) = {
            let mut queue = self.queue();
            self.closed.store(true, Ordering::Release);
            queue.commands = 0;
            (
                std::mem::take(&mut queue.pending),
                std::mem::take(&mut queue.waiting),
            )
        };
        for (entries, error) in [(pending, &ConnError::NotSent), (waiting, error)] {
            for entry in entries {
                self.finished(entry, Err(error.clone()));
            }
        }
        self.queued.notify_one();
    }

    /// Hands a batch its result.
    fn finished(&self, entry: Entry, result: Result<Vec<Reply>, ConnError>) {
        if entry.slot.is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(slot) = entry.slot {
            slot.set(result);
        }
    }

    /// Moves the batches queued since the last write to the queue of batches waiting for
    /// replies, their bytes to `out`; a batch whose caller left is dropped unwritten.
    fn take_pending(&self, out: &mut VecDeque<Bytes>) {
        let mut gone = Vec::new();
        {
            let mut queue = self.queue();
            while let Some(mut entry) = queue.pending.pop_front() {
                if entry.withdrawn() {
                    queue.commands -= entry.commands();
                    gone.push(entry);
                    continue;
                }
                out.extend(entry.bytes.drain(..).filter(|b| !b.is_empty()));
                queue.waiting.push_back(entry);
            }
        }
        for entry in gone {
            self.finished(entry, Err(ConnError::NotSent));
        }
    }

    /// Decides whether the data of a value for the batch at the front of the queue is kept.
    fn admit(&self, size: usize) -> Admit {
        let queue = self.queue();
        let Some(front) = queue.waiting.front() else {
            // A reply nobody asked for: the delivery closes the connection.
            return Admit::Skip;
        };
        if front.unwanted() || size > self.limits.max_value {
            return Admit::Skip;
        }
        let budget = front.budget.clone();
        drop(queue);
        if let Some(budget) = &budget
            && !budget.take(size)
        {
            return Admit::Skip;
        }
        if size == 0 {
            return Admit::Keep(None);
        }
        match self.limits.reply_budget.take(size) {
            Some(guard) => Admit::Keep(Some(Box::new(guard))),
            None => {
                if let Some(budget) = &budget {
                    budget.give_back(size);
                }
                Admit::Skip
            }
        }
    }

    /// Gives a reply to the batch at the front of the queue; hands the batch its replies once
    /// it has them all. A reply nobody takes is counted and dropped.
    fn deliver(&self, reply: Reply) -> Result<(), ConnError> {
        let mut queue = self.queue();
        let (give_back, done) = {
            let Some(front) = queue.waiting.front_mut() else {
                return Err(ConnError::Protocol(format!(
                    "a reply nobody asked for: {}",
                    describe(&reply)
                )));
            };
            let index = front.answered;
            let Some(&expected) = front.opaques.get(index) else {
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
            front.answered += 1;
            let unwanted = front.unwanted();
            // A reply whose caller will not see its value: what it won is given back.
            let give_back = if unwanted || matches!(reply, Reply::Skipped(..)) {
                front
                    .abandon
                    .clone()
                    .map(|abandon| (abandon, index, meta_and_size(&reply)))
            } else {
                None
            };
            if !unwanted {
                front.replies.push(reply);
            }
            (give_back, front.answered == front.opaques.len())
        };
        if let Some((abandon, index, (meta, size))) = give_back {
            let opaque = self.opaques.fetch_add(1, Ordering::Relaxed);
            let mut bytes = BytesMut::new();
            if abandon(index, &meta, size, &mut bytes, opaque) {
                queue.commands += 1;
                queue.pending.push_back(Entry {
                    bytes: vec![bytes.freeze()],
                    opaques: vec![opaque],
                    answered: 0,
                    replies: Vec::new(),
                    slot: None,
                    budget: None,
                    abandon: None,
                });
                self.queued.notify_one();
            }
        }
        if done && let Some(mut entry) = queue.waiting.pop_front() {
            queue.commands -= entry.commands();
            drop(queue);
            let replies = std::mem::take(&mut entry.replies);
            self.finished(entry, Ok(replies));
        }
        Ok(())
    }
}

/// The flags of a reply and the size of its value (0 for replies without one).
fn meta_and_size(reply: &Reply) -> (Meta, usize) {
    match reply {
        Reply::Value(meta, data) => (*meta, data.len()),
        Reply::Skipped(meta, size) => (*meta, *size),
        Reply::Done(meta)
        | Reply::Miss(meta)
        | Reply::NotFound(meta)
        | Reply::NotStored(meta)
        | Reply::Exists(meta)
        | Reply::NoOp(meta) => (*meta, 0),
        Reply::Version(_) | Reply::ClientError(_) | Reply::ServerError(_) | Reply::Error => {
            (Meta::default(), 0)
        }
    }
}

/// A handle on a connection; cloning it shares the connection.
#[derive(Clone)]
pub(crate) struct Conn {
    shared: Arc<Shared>,
}

/// Removes a caller from the queue when its call is dropped before it has its replies.
struct Leave<'a> {
    slot: &'a Slot,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if !self.slot.is_set() {
            // Had it been driving the connection, the next caller waiting for the
            // connection's I/O takes over as the caller's guard is dropped.
            self.slot.gone.store(true, Ordering::Relaxed);
        }
    }
}

/// A mark of how much a connection had read when a call was queued (see
/// [`Conn::read_since`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadMark(u64);

impl Conn {
    /// Takes over a connected stream.
    pub(crate) fn start(stream: TcpStream, limits: ConnLimits, opaques: Arc<AtomicU32>) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                io: tokio::sync::Mutex::new(Io {
                    stream,
                    reader: ReplyReader::new(),
                    out: VecDeque::new(),
                }),
                queued: Notify::new(),
                closed: AtomicBool::new(false),
                bytes_read: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                limits,
                opaques,
            }),
        }
    }

    /// Whether the connection is closed (broken, or out of step).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Batches queued or waiting for replies on this connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// How much the connection has read so far.
    pub(crate) fn read_mark(&self) -> ReadMark {
        ReadMark(self.shared.bytes_read.load(Ordering::Relaxed))
    }

    /// Whether the connection read anything since `mark`: a connection that read nothing
    /// while a call waited for the whole operation timeout is stalled (its server hung, or its
    /// host went silent), not just busy.
    pub(crate) fn read_since(&self, mark: ReadMark) -> bool {
        self.shared.bytes_read.load(Ordering::Relaxed) != mark.0
    }

    /// Sends a batch and waits for its replies, one per command, in order.
    pub(crate) async fn call(&self, batch: Batch) -> Result<Vec<Reply>, ConnError> {
        if batch.opaques.is_empty() {
            // Nothing to send, nothing to wait for (and a batch without commands must never sit
            // in the queue of batches waiting for replies).
            return Ok(Vec::new());
        }
        let slot = Arc::new(Slot::default());
        {
            let mut queue = self.shared.queue();
            if self.is_closed() {
                return Err(ConnError::NotSent);
            }
            let commands = batch.opaques.len();
            if queue.commands > 0 && queue.commands + commands > self.shared.limits.max_queued {
                return Err(ConnError::Full);
            }
            queue.commands += commands;
            self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
            queue.pending.push_back(Entry {
                bytes: batch.bytes,
                answered: 0,
                replies: Vec::with_capacity(commands),
                opaques: batch.opaques,
                slot: Some(slot.clone()),
                budget: batch.budget,
                abandon: batch.abandon,
            });
        }
        // Wakes the caller driving the connection, if any, to write this batch now.
        self.shared.queued.notify_one();
        let _leave = Leave { slot: &slot };
        loop {
            if let Some(result) = slot.take() {
                return result;
            }
            tokio::select! {
                biased;
                () = slot.ready.notified() => {}
                mut io = self.shared.io.lock() => self.drive(&mut io, &slot).await,
            }
        }
    }

    /// Drives the connection until `mine` has its result: writes what is queued, reads and
    /// hands out replies.
    async fn drive(&self, io: &mut Io, mine: &Slot) {
        let shared = &*self.shared;
        let mut idle_checked = false;
        loop {
            if shared.is_closed() || mine.is_set() {
                // Leave nothing unwritten that can go now (an election given back).
                shared.take_pending(&mut io.out);
                if !shared.is_closed()
                    && let Err(e) = write_now(&io.stream, &mut io.out)
                {
                    shared.fail(&ConnError::Broken(e.to_string()));
                }
                return;
            }
            if !idle_checked {
                idle_checked = true;
                // A connection that sat idle may have been closed by the server meanwhile:
                // find out before writing, so that the commands count as never sent.
                let idle = shared.queue().waiting.is_empty() && io.out.is_empty();
                if idle && let Err(e) = self.read_now(io) {
                    shared.fail(&e);
                    return;
                }
            }
            shared.take_pending(&mut io.out);
            if let Err(e) = write_now(&io.stream, &mut io.out) {
                shared.fail(&ConnError::Broken(e.to_string()));
                return;
            }
            if mine.is_set() {
                continue;
            }
            let interest = if io.out.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let ready = tokio::select! {
                biased;
                ready = io.stream.ready(interest) => ready,
                () = shared.queued.notified() => continue,
            };
            match ready {
                Ok(ready) if ready.is_readable() || ready.is_read_closed() => {
                    if let Err(e) = self.read_now(io) {
                        shared.fail(&e);
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    shared.fail(&ConnError::Broken(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Reads what the socket holds without waiting, and hands out every whole reply.
    fn read_now(&self, io: &mut Io) -> Result<(), ConnError> {
        let shared = &*self.shared;
        loop {
            let target = io.reader.read_buf();
            let room = target.room;
            let mut limited = target.buf.limit(room);
            match io.stream.try_read_buf(&mut limited) {
                Ok(0) => return Err(ConnError::Broken("closed by the server".to_owned())),
                Ok(n) => {
                    shared.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    let mut admit = |_: &Meta, size: usize| shared.admit(size);
                    while let Some(reply) = io.reader.next(&mut admit)? {
                        shared.deliver(reply)?;
                    }
                    if n < room {
                        io.reader.shrink_if_idle();
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(ConnError::Broken(e.to_string())),
            }
        }
    }

    /// Closes the connection (waiting callers get an error; the socket closes when the last
    /// handle is dropped).
    pub(crate) fn close(&self, why: &str) {
        self.shared.fail(&ConnError::Broken(why.to_owned()));
    }
}

/// Writes as much of `out` as the socket takes now, without waiting.
fn write_now(stream: &TcpStream, out: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !out.is_empty() {
        let slices: Vec<IoSlice<'_>> = out
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let written = match stream.try_write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        drop(slices);
        let mut left = written;
        while left > 0 {
            let Some(front) = out.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                out.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(())
}

/// A short description of a reply for errors (never a value).
fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Value(..) | Reply::Skipped(..) => "VA".to_owned(),
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
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    fn limits(max_queued: usize) -> ConnLimits {
        ConnLimits {
            max_queued,
            max_value: 1 << 20,
            reply_budget: ReplyBudget::new(8 << 20),
        }
    }

    fn start(stream: TcpStream) -> Conn {
        Conn::start(stream, limits(1000), Arc::new(AtomicU32::new(1_000_000)))
    }

    /// A peer on loopback that answers each command line with what `replies` says (nothing
    /// for `None`), and reports every line it reads.
    async fn peer_seeing(
        replies: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> (TcpStream, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (seen, lines_seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = seen.send(line.clone());
                if let Some(reply) = replies(&line)
                    && write.write_all(reply.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        });
        (TcpStream::connect(addr).await.expect("connect"), lines_seen)
    }

    async fn peer(replies: impl Fn(&str) -> Option<String> + Send + 'static) -> TcpStream {
        peer_seeing(replies).await.0
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
        Batch::new(
            vec![Bytes::from(format!("mg {key} v O{opaque}\r\n"))],
            vec![opaque],
        )
    }

    /// A peer that holds back its reply to `slow` until the next command arrives.
    fn holding_slow() -> impl Fn(&str) -> Option<String> + Send + 'static {
        let held = Arc::new(Mutex::new(None::<String>));
        move |line| {
            let mut held = lock(&held);
            if line.contains(" slow ") {
                *held = echo(line);
                return None;
            }
            let earlier = held.take().unwrap_or_default();
            Some(earlier + &echo(line).unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn concurrent_callers_each_get_their_own_reply() {
        let conn = start(peer(echo).await);
        let calls = (0..200u32).map(|i| {
            let conn = conn.clone();
            async move { (i, conn.call(get(&format!("k{i}"), i + 1)).await) }
        });
        for (i, replies) in futures_util::future::join_all(calls).await {
            let replies = replies.expect("answered");
            assert_eq!(
                replies,
                vec![Reply::Value(
                    Meta {
                        opaque: Some(i + 1),
                        ..Meta::default()
                    },
                    Bytes::from(format!("k{i}"))
                )]
            );
        }
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_on_many_tasks_each_get_their_own_reply() {
        let conn = start(peer(echo).await);
        let tasks: Vec<_> = (0..400u32)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { (i, conn.call(get(&format!("k{i}"), i + 1)).await) })
            })
            .collect();
        for task in tasks {
            let (i, replies) = task.await.expect("task");
            let replies = replies.expect("answered");
            assert!(
                matches!(&replies[..], [Reply::Value(m, d)] if m.opaque == Some(i + 1) && d[..] == *format!("k{i}").as_bytes()),
                "{replies:?}"
            );
        }
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_connection_in_step() {
        let conn = start(peer(holding_slow()).await);
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
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_command_whose_caller_left_before_it_was_written_is_never_written() {
        let (stream, mut seen) = peer_seeing(holding_slow()).await;
        let conn = start(stream);
        // The first caller drives the connection, waiting for `slow`.
        let first = tokio::spawn({
            let conn = conn.clone();
            async move { conn.call(get("slow", 1)).await }
        });
        assert_eq!(seen.recv().await.as_deref(), Some("mg slow v O1"));
        // A second caller queues behind it and gives up before it is written: polled once (it
        // queues its command and wakes the driver), then dropped before the driver runs.
        let second = futures_util::FutureExt::now_or_never(conn.call(get("left", 2)));
        assert!(second.is_none(), "{second:?}");
        // A third goes through, and frees the first.
        let third = conn.call(get("third", 3)).await.expect("answered");
        assert!(matches!(&third[..], [Reply::Value(m, _)] if m.opaque == Some(3)));
        let first = first.await.expect("task").expect("answered");
        assert!(matches!(&first[..], [Reply::Value(m, _)] if m.opaque == Some(1)));
        assert_eq!(seen.recv().await.as_deref(), Some("mg third v O3"));
        assert!(seen.try_recv().is_err(), "nothing else was written");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_sends_nothing() {
        let (stream, mut seen) = peer_seeing(|_| None).await;
        let conn = Conn::start(stream, limits(2), Arc::new(AtomicU32::new(1)));
        let waiting: Vec<_> = (1..=2u32)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { conn.call(get("k", i)).await })
            })
            .collect();
        for _ in 0..2 {
            assert!(seen.recv().await.is_some());
        }
        assert_eq!(conn.call(get("k", 3)).await, Err(ConnError::Full));
        assert!(!conn.is_closed(), "a full queue is not a broken connection");
        conn.close("test over");
        for call in waiting {
            assert!(matches!(
                call.await.expect("task"),
                Err(ConnError::Broken(_))
            ));
        }
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closed_reports_its_commands_as_never_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            drop(stream);
        });
        let conn = start(TcpStream::connect(addr).await.expect("connect"));
        server.await.expect("closed");
        // The close has reached this side by the time the peer task ended; give the kernel a
        // moment to deliver the FIN.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(conn.call(get("k", 1)).await, Err(ConnError::NotSent));
        assert!(conn.is_closed());
    }

    #[tokio::test]
    async fn a_reply_out_of_step_closes_the_connection() {
        let conn = start(peer(|_| Some("HD O999\r\n".to_owned())).await);
        let e = conn.call(get("k", 1)).await.expect_err("refused");
        assert!(matches!(e, ConnError::Protocol(_)), "{e:?}");
        assert!(conn.is_closed());
        assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
    }

    #[tokio::test]
    async fn a_peer_that_is_not_memcached_closes_the_connection() {
        let conn = start(peer(|_| Some("HTTP/1.1 400 Bad Request\r\n".to_owned())).await);
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
        let conn = start(TcpStream::connect(addr).await.expect("connect"));
        let e = conn.call(get("k", 1)).await.expect_err("lost");
        assert!(matches!(e, ConnError::Broken(_)), "{e:?}");
        assert_eq!(conn.call(get("k", 2)).await, Err(ConnError::NotSent));
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_empty_batch_is_answered_at_once_and_keeps_the_connection_in_step() {
        let conn = start(peer(echo).await);
        let empty = Batch::new(Vec::new(), Vec::new());
        assert_eq!(conn.call(empty).await, Ok(Vec::new()));
        let replies = conn.call(get("k", 1)).await.expect("answered");
        assert!(matches!(&replies[..], [Reply::Value(meta, _)] if meta.opaque == Some(1)));
        assert_eq!(conn.in_flight(), 0);
    }

    #[tokio::test]
    async fn batches_get_all_their_replies_in_order() {
        let conn = start(peer(echo).await);
        let batch = Batch::new(
            vec![Bytes::from_static(
                b"mg a v O7\r\nmg bb v O8\r\nmg ccc v O9\r\n",
            )],
            vec![7, 8, 9],
        );
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

    #[tokio::test]
    async fn values_beyond_the_call_budget_are_skipped_and_the_rest_kept() {
        let conn = start(peer(echo).await);
        let mut batch = Batch::new(
            vec![Bytes::from_static(
                b"mg aaaa v O1\r\nmg bbbbbb v O2\r\nmg cc v O3\r\n",
            )],
            vec![1, 2, 3],
        );
        batch.budget = Some(CallBudget::new(6));
        let replies = conn.call(batch).await.expect("answered");
        assert!(matches!(&replies[0], Reply::Value(_, d) if &d[..] == b"aaaa"));
        assert!(matches!(&replies[1], Reply::Skipped(m, 6) if m.opaque == Some(2)));
        assert!(matches!(&replies[2], Reply::Value(_, d) if &d[..] == b"cc"));
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn the_reply_budget_is_held_as_long_as_a_value_lives() {
        let reply_budget = ReplyBudget::new(10);
        let conn = Conn::start(
            peer(echo).await,
            ConnLimits {
                max_queued: 10,
                max_value: 100,
                reply_budget: reply_budget.clone(),
            },
            Arc::new(AtomicU32::new(1)),
        );
        let held = conn.call(get("eightchr", 1)).await.expect("answered");
        assert_eq!(reply_budget.held(), 8);
        // No room for another 8 bytes while the first value lives.
        let refused = conn.call(get("87654321", 2)).await.expect("answered");
        assert!(
            matches!(&refused[..], [Reply::Skipped(_, 8)]),
            "{refused:?}"
        );
        drop(held);
        assert_eq!(reply_budget.held(), 0);
        let kept = conn.call(get("87654321", 3)).await.expect("answered");
        assert!(matches!(&kept[..], [Reply::Value(_, d)] if &d[..] == b"87654321"));
    }

    #[tokio::test]
    async fn an_election_won_for_a_caller_that_left_is_given_back() {
        // The peer answers `slow` (a win) only after the next command arrives.
        let held = Arc::new(Mutex::new(None::<String>));
        let (stream, mut seen) = peer_seeing(move |line| {
            let mut held = lock(&held);
            if line.contains(" slow ") {
                *held = Some(format!("VA 1 c42 t30 O{} W X\r\nv\r\n", opaque_of(line)));
                return None;
            }
            let earlier = held.take().unwrap_or_default();
            if line.starts_with("md ") {
                return Some(format!("HD O{}\r\n", opaque_of(line)));
            }
            Some(earlier + &echo(line).unwrap_or_default())
        })
        .await;
        let conn = Conn::start(stream, limits(100), Arc::new(AtomicU32::new(500)));
        let mut won = get("slow", 1);
        won.abandon = Some(Arc::new(|index, meta, _, buf, opaque| {
            assert_eq!(index, 0);
            assert!(meta.won && meta.stale);
            buf.put_slice(
                format!("md slow I T30 C{} O{opaque}\r\n", meta.cas.unwrap_or(0)).as_bytes(),
            );
            true
        }));
        let gave_up = tokio::time::timeout(Duration::from_millis(50), conn.call(won)).await;
        assert!(gave_up.is_err());
        assert_eq!(seen.recv().await.as_deref(), Some("mg slow v O1"));
        conn.call(get("next", 2)).await.expect("answered");
        assert_eq!(seen.recv().await.as_deref(), Some("mg next v O2"));
        assert_eq!(seen.recv().await.as_deref(), Some("md slow I T30 C42 O500"));
        // Its reply is consumed by the next caller; the connection stays in step.
        conn.call(get("after", 3)).await.expect("answered");
        assert!(!conn.is_closed());
    }

    #[tokio::test]
    async fn a_stalled_connection_is_told_apart_from_a_busy_one() {
        let conn = start(peer(|_| None).await);
        let mark = conn.read_mark();
        let _ = tokio::time::timeout(Duration::from_millis(30), conn.call(get("k", 1))).await;
        assert!(!conn.read_since(mark), "nothing came back");
        let conn = start(peer(echo).await);
        let mark = conn.read_mark();
        conn.call(get("k", 1)).await.expect("answered");
        assert!(conn.read_since(mark));
    }

    /// Whatever a peer sends back, cut however it arrives, no caller ever gets a reply carrying
    /// another command's opaque: each gets its own replies, or an error.
    #[test]
    fn no_reply_ever_reaches_the_wrong_caller() {
        use proptest::prelude::*;
        let reply = prop_oneof![
            // The right reply for the next command (the common case).
            Just(None),
            // A reply with another opaque.
            any::<u32>().prop_map(Some),
        ];
        let config = ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        };
        proptest!(config, |(
            plan in proptest::collection::vec((reply, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))), 1..12),
            garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
            chunk in 1usize..50,
        )| {
            // The stream: for command i (opaque 100 + i), a value reply with either its own
            // opaque or another one; maybe garbage somewhere.
            let mut stream = Vec::new();
            for (i, (other, value)) in plan.iter().enumerate() {
                let opaque = other.unwrap_or(100 + i as u32);
                match value {
                    Some(v) => {
                        stream.extend_from_slice(format!("VA {} O{opaque}\r\n", v.len()).as_bytes());
                        stream.extend_from_slice(v);
                        stream.extend_from_slice(b"\r\n");
                    }
                    None => stream.extend_from_slice(format!("HD O{opaque}\r\n").as_bytes()),
                }
                if i == plan.len() / 2 && let Some(g) = &garbage {
                    stream.extend_from_slice(g);
                }
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let commands = plan.len();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                tokio::spawn(async move {
                    let (mut stream_out, _) = listener.accept().await.expect("accept");
                    for part in stream.chunks(chunk) {
                        if stream_out.write_all(part).await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                    // Then stay silent (the test ends by closing).
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
                let conn = start(TcpStream::connect(addr).await.expect("connect"));
                let calls = (0..commands as u32).map(|i| {
                    let conn = conn.clone();
                    async move {
                        let call = conn.call(get("k", 100 + i));
                        (i, tokio::time::timeout(Duration::from_millis(500), call).await)
                    }
                });
                for (i, result) in futures_util::future::join_all(calls).await {
                    if let Ok(Ok(replies)) = result {
                        for reply in replies {
                            assert!(
                                reply.opaque().is_none_or(|o| o == 100 + i),
                                "caller {} got {reply:?}", 100 + i
                            );
                        }
                    }
                }
                conn.close("case over");
            });
        });
    }
}
