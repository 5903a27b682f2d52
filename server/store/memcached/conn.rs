//! One multiplexed connection to a memcached server.
//!
//! Many callers share a connection at once, and there is no task of its own: the callers drive
//! it. A caller queues its commands, then whoever holds the connection's I/O (one caller at a
//! time) writes every command queued so far in one write and reads replies, handing each
//! waiting caller its own as they arrive, until its own are in. So on an idle connection a call
//! costs its write, one wait for memcached, and its read — no hand-off to another task — and
//! under load the commands of many callers still leave in one write (the coalescing that
//! twemproxy and mcrouter do): a caller that finds commands already waiting for replies lets
//! the other calls of the same turn of the scheduler queue theirs before it asks for a write.
//! When the caller driving the connection has its replies, the next caller waiting takes over.
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
    /// The commands were handed to the socket.
    written: AtomicBool,
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

    fn is_written(&self) -> bool {
        self.written.load(Ordering::Relaxed)
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
    /// Writes made (system calls), for the tests of coalescing.
    #[cfg(test)]
    writes: usize,
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
                if let Some(slot) = &entry.slot {
                    slot.written.store(true, Ordering::Relaxed);
                }
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
            Some(guard) => Admit::Keep(Some(guard)),
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
                    #[cfg(test)]
                    writes: 0,
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
        let busy = {
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
            !queue.waiting.is_empty()
        };
        let _leave = Leave { slot: &slot };
        if busy {
            // Under load, the calls that run in this turn of the scheduler queue their
            // commands first, and they leave in one write: fewer system calls here, and fewer
            // reads and wake-ups in memcached.
            tokio::task::yield_now().await;
        }
        if !slot.is_written() {
            // Wakes the caller driving the connection, if any, to write this batch now.
            self.shared.queued.notify_one();
        }
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
                    && let Err(e) = io.write_now()
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
            if let Err(e) = io.write_now() {
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

impl Io {
    /// Writes as much of `out` as the socket takes now, without waiting.
    fn write_now(&mut self) -> std::io::Result<()> {
        while !self.out.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .out
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            let written = match self.stream.try_write_vectored(&slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            drop(slices);
            #[cfg(test)]
            {
                self.writes += 1;
            }
            let mut left = written;
            while left > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        Ok(())
    }
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
mod tests;
