//! One memcached server: its address, its multiplexed connections, and its health.
//!
//! A server has a few connections ([`Conn`]), each carrying many commands at once; calls are
//! spread over them in turn. A connection that breaks is replaced on the next call; a broken
//! connection is a connection problem, not a verdict on the server. Commands that never reached
//! the server (the connection closed before they were written) are sent again on a new
//! connection.
//!
//! Each connection learns which memcached process it talks to (the *instance*: a random number
//! the first connection stores in the server, under a key no user key can take). CAS values
//! start again from 1 when memcached restarts, so a lease (a CAS value) is only honoured on a
//! connection to the instance that handed it out.
//!
//! Health follows twemproxy: after `failure_limit` consecutive failures (connect errors,
//! timeouts, replies that are not memcached's) the server is ejected for `retry_timeout`; while
//! ejected, operations fail at once and, with `ejected_keys = remap`, its keys go to the other
//! servers. The health prober tries an ejected server every second and brings it back as soon
//! as it answers. Refusals of one item (`SERVER_ERROR object too large`, out of memory) and
//! broken connections never count against the server. An outage is one ejection and a few log
//! lines, however often the server is retried meanwhile.
//!
//! At startup, and on each connection to a new memcached process, the server's settings are
//! checked over a connection of their own ([`super::check`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tracing::Instrument as _;

use super::check::ServerCheck;
use super::conn::{Batch, Conn, ConnError, ConnLimits};
use super::wire::{self, Reply};
use crate::metrics::Metrics;
use crate::resolve::Resolver;
use crate::store::budget::ReplyBudget;
use crate::store::{PoolStats, Refusal, StoreError};

/// The key under which a memcached server holds the identity of its running instance.
const INSTANCE_KEY: &[u8] = b"mintcache@instance";

/// Settings of one server.
#[derive(Debug, Clone)]
pub(crate) struct NodeSettings {
    /// Connections to the server (each carries many commands at once).
    pub(crate) connections: usize,
    /// Time to connect (name resolution, TCP, and the first command).
    pub(crate) connect_timeout: Duration,
    /// Time for one operation (a round trip on a connection).
    pub(crate) timeout: Duration,
    /// Consecutive failures before ejection (0: never).
    pub(crate) failure_limit: u32,
    /// How long an ejected server is left alone by traffic.
    pub(crate) retry_timeout: Duration,
    /// The largest value the service accepts (`limits.max_value_bytes`), which the server's
    /// item size limit must take.
    pub(crate) max_value_bytes: usize,
    /// TCP keepalive: idle time before the first probe (`None`: off).
    pub(crate) keepalive: Option<Duration>,
    /// Most commands queued or waiting on one connection.
    pub(crate) max_queued: usize,
    /// The server-wide budget of reply values held at once.
    pub(crate) reply_budget: ReplyBudget,
    /// How server names become addresses, at every connection.
    pub(crate) resolver: Resolver,
}

/// A live connection and the instance it talks to.
#[derive(Clone)]
struct Live {
    conn: Conn,
    instance: u64,
}

/// One connection slot: its live connection, if any, and a lock so that one caller at a time
/// (re)connects it.
struct Slot {
    live: Mutex<Option<Live>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Live> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.as_ref().filter(|l| !l.conn.is_closed()).cloned()
    }

    fn set(&self, live: Option<Live>) {
        *self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = live;
    }

    /// Batches on the slot's connection (0 when it has none).
    fn load(&self) -> usize {
        self.current().map_or(0, |l| l.conn.in_flight())
    }
}

/// The answer of a call: the replies, and the instance that gave them.
pub(crate) struct Answer {
    /// One reply per command, in order.
    pub(crate) replies: Vec<Reply>,
    /// The memcached instance that answered.
    pub(crate) instance: u64,
}

/// One memcached server.
pub(crate) struct Node {
    addr: String,
    /// `addr` as the `node` label of its metrics.
    label: opentelemetry::KeyValue,
    slots: Vec<Slot>,
    next_slot: AtomicUsize,
    /// Opaques of this server's commands, shared with its connections.
    next_opaque: Arc<AtomicU32>,
    settings: NodeSettings,
    metrics: Metrics,
    failures: AtomicU32,
    /// Until when the server is ejected. A std mutex: it is held for a few instructions and
    /// never across an await.
    ejected_until: Mutex<Option<Instant>>,
    /// Failed calls not logged since the last log line (logs are rate-limited).
    unlogged_failures: AtomicU64,
    last_failure_log: Mutex<Option<Instant>>,
    /// Checks over a connection of their own (reachability at startup, item size limit).
    check: ServerCheck,
    /// The memcached instance whose settings were last checked.
    checked_instance: AtomicU64,
    /// The server refused to keep the instance marker once: identities come from its process.
    marker_refused: AtomicBool,
}

/// At most one log line per server per this long about failing calls.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Probes after the keepalive idle time, and between them.
const KEEPALIVE_PROBES: u32 = 3;

impl Node {
    /// A server at `addr` (`host:port`). Connections are made on first use.
    pub(crate) fn new(addr: &str, settings: NodeSettings, metrics: Metrics) -> Self {
        Self::with_first_opaque(addr, settings, metrics, 1)
    }

    /// As [`Node::new`], numbering commands from `first_opaque`.
    pub(crate) fn with_first_opaque(
        addr: &str,
        settings: NodeSettings,
        metrics: Metrics,
        first_opaque: u32,
    ) -> Self {
        let slots = (0..settings.connections.max(1))
            .map(|_| Slot {
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        let check = ServerCheck::new(
            addr,
            settings.resolver.clone(),
            settings.connect_timeout,
            settings.timeout,
            settings.max_value_bytes,
        );
        Self {
            addr: addr.to_owned(),
            label: Metrics::node_label(addr),
            slots,
            next_slot: AtomicUsize::new(0),
            next_opaque: Arc::new(AtomicU32::new(first_opaque)),
            settings,
            metrics,
            failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
            unlogged_failures: AtomicU64::new(0),
            last_failure_log: Mutex::new(None),
            check,
            checked_instance: AtomicU64::new(0),
            marker_refused: AtomicBool::new(false),
        }
    }

    /// The server's address as configured (`host:port`).
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The checks to run at startup, on a connection of their own: an ERROR line if the server
    /// cannot be reached, a WARN if its item size limit is too small.
    pub(crate) fn startup_check(&self) -> impl Future<Output = ()> + Send + 'static {
        self.check.clone().at_startup()
    }

    /// `n` opaques for the commands of one batch, in order; they wrap around past `u32::MAX`.
    pub(crate) fn opaques(&self, n: usize) -> Vec<u32> {
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        let first = self.next_opaque.fetch_add(count, Ordering::Relaxed);
        (0..count).map(|i| first.wrapping_add(i)).collect()
    }

    /// Whether the server is ejected now.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejection().is_some_and(|until| Instant::now() < until)
    }

    fn ejection(&self) -> Option<Instant> {
        *self
            .ejected_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_ejection(&self, until: Option<Instant>) {
        *self
            .ejected_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = until;
    }

    /// Connection usage: connections carrying calls, idle connections, calls in flight.
    pub(crate) fn pool_stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            node: self.addr.clone(),
            in_use: 0,
            idle: 0,
            waiting: 0,
        };
        for live in self.slots.iter().filter_map(Slot::current) {
            let in_flight = live.conn.in_flight();
            if in_flight > 0 {
                stats.in_use += 1;
            } else {
                stats.idle += 1;
            }
            stats.waiting += in_flight;
        }
        stats
    }

    /// Sends commands in one round trip, within the operation timeout; fails at once while the
    /// server is ejected. With `instance`, only on a connection to that memcached instance:
    /// `Ok(None)` when the server is now another instance (it restarted).
    pub(crate) async fn call(
        &self,
        batch: Batch,
        instance: Option<u64>,
    ) -> Result<Option<Answer>, StoreError> {
        if self.is_ejected() {
            self.metrics
                .backend(&self.label, Duration::ZERO, Some("ejected"));
            return Err(StoreError::Ejected {
                node: self.addr.clone(),
            });
        }
        // A client span per round trip of a call (probes have none): free unless a trace
        // exporter consumes it (fields are only evaluated for enabled spans, and log lines
        // carry no spans).
        let span = tracing::info_span!(
            "memcached",
            otel.kind = "client",
            db.system = "memcached",
            node = %self.addr
        );
        self.attempt(batch, instance).instrument(span).await
    }

    /// Checks that the server answers (`version`), ejected or not: an ejected server that
    /// answers is back at once. Whether it answered.
    pub(crate) async fn probe(&self) -> bool {
        let mut bytes = BytesMut::new();
        wire::version(&mut bytes);
        let batch = Batch::new(vec![bytes.freeze()], vec![0]);
        match self.attempt(batch, None).await {
            Ok(Some(answer)) => matches!(answer.replies.first(), Some(Reply::Version(_))),
            _ => false,
        }
    }

    async fn attempt(
        &self,
        batch: Batch,
        instance: Option<u64>,
    ) -> Result<Option<Answer>, StoreError> {
        let started = Instant::now();
        let result = self.send(batch, instance).await;
        self.metrics.backend(
            &self.label,
            started.elapsed(),
            result.as_ref().err().map(StoreError::kind),
        );
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) if e.counts_against_server() => self.failed(e),
            Err(e) => self.log_failure(e),
        }
        result
    }

    /// The slot a call goes to: an idle one if there is one (taken in turn), else the least
    /// busy, so that a huge batch on one connection does not hold up the calls behind it.
    fn pick_slot(&self) -> &Slot {
        let n = self.slots.len();
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let mut best = &self.slots[start % n];
        let mut best_load = best.load();
        for i in 1..n {
            if best_load == 0 {
                break;
            }
            let slot = &self.slots[(start + i) % n];
            let load = slot.load();
            if load < best_load {
                best = slot;
                best_load = load;
            }
        }
        best
    }

    /// Sends a batch on a connection; again on a new connection if it was never written. A
    /// round trip that gets nothing back within the operation timeout closes its connection
    /// if the connection read nothing meanwhile (the server hung, or its host went silent):
    /// the next call connects again, resolving the name again.
    async fn send(
        &self,
        batch: Batch,
        instance: Option<u64>,
    ) -> Result<Option<Answer>, StoreError> {
        let node = || self.addr.clone();
        let mut tries = 0;
        loop {
            tries += 1;
            let live = self.live(self.pick_slot()).await?;
            if instance.is_some_and(|i| i != live.instance) {
                return Ok(None);
            }
            let mark = live.conn.read_mark();
            let answered =
                tokio::time::timeout(self.settings.timeout, live.conn.call(batch.clone())).await;
            let error = match answered {
                Ok(Ok(replies)) => {
                    return Ok(Some(Answer {
                        replies,
                        instance: live.instance,
                    }));
                }
                Err(_) if live.conn.read_since(mark) => StoreError::Timeout {
                    node: node(),
                    stalled: false,
                },
                Err(_) => {
                    live.conn.close("no reply within memcached.timeout_ms");
                    StoreError::Timeout {
                        node: node(),
                        stalled: true,
                    }
                }
                Ok(Err(ConnError::NotSent)) if tries < 3 => continue,
                Ok(Err(ConnError::NotSent)) => StoreError::Broken {
                    node: node(),
                    reason: "connection closed before the command was sent".to_owned(),
                },
                Ok(Err(ConnError::Broken(reason))) => StoreError::Broken {
                    node: node(),
                    reason,
                },
                Ok(Err(ConnError::Protocol(reason))) => StoreError::Protocol {
                    node: node(),
                    reason,
                },
                Ok(Err(ConnError::Full)) => StoreError::Overloaded { node: node() },
            };
            return Err(error);
        }
    }

    /// The slot's live connection, connecting it if needed (one caller at a time), within the
    /// connect timeout.
    async fn live(&self, slot: &Slot) -> Result<Live, StoreError> {
        if let Some(live) = slot.current() {
            return Ok(live);
        }
        let connect = async {
            let _connecting = slot.connecting.lock().await;
            if let Some(live) = slot.current() {
                return Ok(live);
            }
            let live = self.connect().await?;
            slot.set(Some(live.clone()));
            Ok(live)
        };
        tokio::time::timeout(self.settings.connect_timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Connect {
                    node: self.addr.clone(),
                    reason: format!(
                        "timed out after {} ms (memcached.connect_timeout_ms)",
                        self.settings.connect_timeout.as_millis()
                    ),
                })
            })
    }

    /// Opens a connection (resolving the server's name again) and learns the instance it
    /// talks to. A connection that fails its first command is closed at once.
    async fn connect(&self) -> Result<Live, StoreError> {
        let connect_error = |reason: String| StoreError::Connect {
            node: self.addr.clone(),
            reason,
        };
        let stream = connect_to(&self.settings.resolver, &self.addr)
            .await
            .map_err(connect_error)?;
        configure(&stream, self.settings.keepalive).map_err(|e| connect_error(e.to_string()))?;
        let limits = ConnLimits {
            max_queued: self.settings.max_queued,
            max_value: crate::store::memcached::check::largest_item(self.settings.max_value_bytes),
            reply_budget: self.settings.reply_budget.clone(),
        };
        let conn = Conn::start(stream, limits, self.next_opaque.clone());
        match self.instance(&conn).await {
            Ok(instance) => {
                // A new memcached process (or the first): its settings may differ.
                if self.checked_instance.swap(instance, Ordering::Relaxed) != instance {
                    tokio::spawn(self.check.clone().on_new_instance());
                }
                Ok(Live { conn, instance })
            }
            Err(e) => {
                conn.close("handshake failed");
                Err(match e {
                    ConnError::Protocol(reason) => StoreError::Protocol {
                        node: self.addr.clone(),
                        reason: format!(
                            "not a memcached server speaking the meta protocol: {reason}"
                        ),
                    },
                    other => connect_error(other.to_string()),
                })
            }
        }
    }

    /// Reads the instance marker of the server, creating it if the server has none (a new or
    /// restarted server): whoever creates it first wins, everyone reads the same. A server
    /// that cannot keep it (out of memory, `-M`) is known by its process instead (its pid and
    /// start time, from `stats`), which every connection reads the same; once that happened,
    /// a marker created later is created with the process identity too, so that connections
    /// made before and after agree.
    async fn instance(&self, conn: &Conn) -> Result<u64, ConnError> {
        let candidate = if self.marker_refused.load(Ordering::Relaxed) {
            self.check
                .process_identity()
                .await
                .unwrap_or_else(|_| fresh_instance())
        } else {
            fresh_instance()
        };
        let opaque = self.opaques(1)[0];
        let mut bytes = BytesMut::new();
        wire::instance_marker(&mut bytes, INSTANCE_KEY, candidate, opaque);
        let replies = conn
            .call(Batch::new(vec![bytes.freeze()], vec![opaque]))
            .await?;
        match replies.first() {
            Some(Reply::Value(_, digits)) => std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ConnError::Protocol("instance marker is not a number".to_owned())),
            Some(Reply::ServerError(_)) => {
                tracing::debug!(node = %self.addr, "memcached keeps no instance marker: using its process identity");
                self.marker_refused.store(true, Ordering::Relaxed);
                self.check
                    .process_identity()
                    .await
                    .map_err(ConnError::Broken)
            }
            _ => Err(ConnError::Protocol(
                "unexpected answer to the instance marker".to_owned(),
            )),
        }
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let reported_down = self.check.answered();
        if self.ejection().is_some() || reported_down {
            self.set_ejection(None);
            let suppressed = self.unlogged_failures.swap(0, Ordering::Relaxed);
            tracing::info!(node = %self.addr, failed_calls = suppressed, "memcached server is back");
        }
    }

    fn failed(&self, e: &StoreError) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.settings.failure_limit;
        if limit == 0 || failures < limit {
            self.log_failure(e);
            return;
        }
        self.failures.store(0, Ordering::Relaxed);
        let was_ejected = self.ejection().is_some();
        self.set_ejection(Some(Instant::now() + self.settings.retry_timeout));
        if was_ejected {
            // Still down after a retry: the same outage, not a new ejection.
            self.log_failure(e);
            return;
        }
        self.metrics.ejection(&self.addr);
        let retry_in_ms = self.settings.retry_timeout.as_millis() as u64;
        if self.check.down_reported() {
            // Unreachable since startup, which was said at ERROR then: one ERROR per outage.
            tracing::warn!(node = %self.addr, error = %e, retry_in_ms, "memcached server ejected after {failures} consecutive failures");
        } else {
            tracing::error!(node = %self.addr, error = %e, retry_in_ms, "memcached server ejected after {failures} consecutive failures");
        }
    }

    /// Logs a failed call, at most once per [`FAILURE_LOG_INTERVAL`] per server (with how many
    /// went unlogged), so that an outage does not flood the logs.
    fn log_failure(&self, e: &StoreError) {
        let now = Instant::now();
        let mut last = self
            .last_failure_log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL) {
            self.unlogged_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        let suppressed = self.unlogged_failures.swap(0, Ordering::Relaxed);
        tracing::warn!(node = %self.addr, error = %e, similar_since_last_report = suppressed, "memcached call failed");
    }

    /// The error of a reply that arrived in its place (its opaque matched) but is not an
    /// answer to its command: counted as a protocol error and logged (rate-limited), though
    /// not held against the server, whose round trip went well.
    pub(crate) fn out_of_place(&self, what: &str) -> StoreError {
        let e = StoreError::Protocol {
            node: self.addr.clone(),
            reason: what.to_owned(),
        };
        self.metrics.backend_error(&self.addr, e.kind());
        self.log_failure(&e);
        e
    }

    /// Maps a refusal reply of one command to its error (`None`: not a refusal).
    pub(crate) fn refusal(&self, reply: &Reply) -> Option<StoreError> {
        let refusal = match reply {
            Reply::ServerError(msg) if msg.contains("too large") => Refusal::TooLarge,
            Reply::ServerError(msg) if msg.contains("out of memory") => Refusal::OutOfMemory,
            Reply::ServerError(msg) | Reply::ClientError(msg) => Refusal::Other(msg.clone()),
            Reply::Error => Refusal::Other("unknown command".to_owned()),
            _ => return None,
        };
        let refused = StoreError::Refused {
            node: self.addr.clone(),
            refusal,
        };
        // The round trip went well (and was counted as such): only the refusal is counted here.
        self.metrics.backend_error(&self.addr, refused.kind());
        Some(refused)
    }
}

/// Connects to the first address of `addr` that takes the connection.
pub(crate) async fn connect_to(resolver: &Resolver, addr: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = resolver
        .resolve(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last = format!("{addr} resolves to no address");
    for to in addrs {
        match TcpStream::connect(to).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("{to}: {e}"),
        }
    }
    Err(last)
}

/// Socket options of a connection to memcached: no Nagle delay (commands are small and
/// latency-bound), and TCP keepalive with a user timeout, so that a connection to a host that
/// went silent (no RST: a rescheduled pod, a dead machine) fails by itself even while idle.
fn configure(stream: &TcpStream, keepalive: Option<Duration>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let Some(idle) = keepalive else {
        return Ok(());
    };
    let interval = (idle / 4).max(Duration::from_secs(1));
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    // Data unacknowledged for as long as keepalive takes to give up fails the connection too.
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(Some(idle + interval * KEEPALIVE_PROBES))?;
    Ok(())
}

/// A new instance identity: random, never 0.
fn fresh_instance() -> u64 {
    loop {
        let n = fastrand::u64(..);
        if n != 0 {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memcached::conn::Batch;
    use bytes::Bytes;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn settings(resolver: Resolver) -> NodeSettings {
        NodeSettings {
            connections: 1,
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_millis(2000),
            failure_limit: 0,
            retry_timeout: Duration::from_secs(1),
            max_value_bytes: 1024,
            keepalive: Some(Duration::from_secs(10)),
            max_queued: 100,
            reply_budget: ReplyBudget::new(1 << 20),
            resolver,
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(&opentelemetry::global::meter("node-tests"))
    }

    /// A memcached stand-in: answers the instance marker with `7`, every `mg` with its key,
    /// echoing the opaque.
    async fn echo_peer() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let opaque = line
                            .split(' ')
                            .find_map(|t| t.strip_prefix('O'))
                            .unwrap_or("0")
                            .to_owned();
                        let key = line.split(' ').nth(1).unwrap_or("");
                        let reply = if line.starts_with("ma ") {
                            format!("VA 1 O{opaque}\r\n7\r\n")
                        } else {
                            format!("VA {} O{opaque}\r\n{key}\r\n", key.len())
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn opaques_wrap_around_without_losing_a_command() {
        let node = Node::with_first_opaque(
            "127.0.0.1:1",
            settings(Resolver::system()),
            metrics(),
            u32::MAX - 1,
        );
        assert_eq!(node.opaques(4), [u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(node.opaques(1), [2]);
    }

    #[tokio::test]
    async fn a_batch_across_the_opaque_wrap_gets_every_reply() {
        let addr = echo_peer().await;
        let node = Node::with_first_opaque(
            &addr.to_string(),
            settings(Resolver::system()),
            metrics(),
            u32::MAX - 3,
        );
        // The handshake takes one opaque; this batch's run from u32::MAX - 2 to 1.
        let keys = ["a", "b", "c", "d", "e"];
        let mut answered = 0;
        for round in 0..2 {
            let opaques = node.opaques(keys.len());
            let bytes: Vec<Bytes> = keys
                .iter()
                .zip(&opaques)
                .map(|(k, o)| Bytes::from(format!("mg {k}{round} v O{o}\r\n")))
                .collect();
            let answer = node
                .call(Batch::new(bytes, opaques), None)
                .await
                .expect("answered")
                .expect("same instance");
            assert_eq!(answer.instance, 7);
            for (reply, key) in answer.replies.iter().zip(keys) {
                assert!(
                    matches!(reply, Reply::Value(_, v) if v[..] == *format!("{key}{round}").as_bytes()),
                    "{reply:?}"
                );
                answered += 1;
            }
        }
        assert_eq!(answered, 10);
    }

    /// Connecting has its own timeout: a connection that cannot be made within
    /// `connect_timeout` fails as a connect error after it, whatever the operation timeout.
    #[tokio::test]
    async fn connecting_has_its_own_timeout() {
        // A listener whose backlog is full: further connections are never accepted (their
        // SYNs are dropped), so connecting hangs.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        socket.listen(0).expect("listen");
        let addr = socket
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await
            {
                fillers.push(s);
            }
        }
        let mut s = settings(Resolver::system());
        s.timeout = Duration::from_millis(20);
        s.connect_timeout = Duration::from_millis(400);
        let node = Node::new(&addr.to_string(), s, metrics());
        let started = Instant::now();
        let e = node
            .call(
                Batch::new(vec![Bytes::from_static(b"mg k v O1\r\n")], vec![1]),
                None,
            )
            .await
            .err()
            .expect("no connection");
        assert!(
            matches!(&e, StoreError::Connect { reason, .. } if reason.contains("connect_timeout_ms")),
            "{e:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(400), "{e:?}");
        drop(socket);
    }
}
