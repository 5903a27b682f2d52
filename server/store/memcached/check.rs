//! Checks of a memcached server over a connection of their own, outside the multiplexed
//! connections that carry calls: whether it answers at startup (one clear line per server that
//! does not), and whether its item size limit (`memcached -I`, `item_size_max` in
//! `stats settings`) takes the largest item the service may store.
//!
//! An item too large for the server is refused one by one (`SERVER_ERROR object too large`),
//! which callers see as `RESOURCE_EXHAUSTED`; the check says so once per server, with both
//! figures and the fix, before any value is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::core::envelope;
use crate::core::key::MEMCACHED_MAX_KEY;
use crate::resolve::Resolver;

/// What memcached adds to an item beyond its key and data: its item header (48 bytes on 64-bit
/// builds), the CAS value (8), the client flags (4), the key's NUL and the data's CRLF (3),
/// rounded up. memcached refuses an item whose total is over `item_size_max`.
const MEMCACHED_ITEM_HEADER: usize = 64;

/// Most bytes read of a `stats settings` answer (it is about 3 KiB).
const MAX_SETTINGS_REPLY: usize = 64 * 1024;

/// The largest item the service may ask memcached to store: the largest value, the value
/// envelope's header, the longest stored key, and memcached's own item header.
pub(crate) fn largest_item(max_value_bytes: usize) -> usize {
    max_value_bytes + envelope::MAX_HEADER_LEN + MEMCACHED_MAX_KEY + MEMCACHED_ITEM_HEADER
}

/// The checks of one server; cloning shares what was reported.
#[derive(Clone)]
pub(crate) struct ServerCheck {
    addr: String,
    resolver: Resolver,
    connect_timeout: Duration,
    timeout: Duration,
    /// The largest value the service accepts (`limits.max_value_bytes`).
    max_value_bytes: usize,
    /// The `item_size_max` last warned about (0: none), so that the same figure is reported
    /// once, however often the server reconnects.
    warned_item_size: Arc<AtomicU64>,
    /// Whether the server was reported unreachable and has not answered since: the failures
    /// and ejection that follow belong to the outage already reported.
    down_reported: Arc<AtomicBool>,
}

impl ServerCheck {
    pub(crate) fn new(
        addr: &str,
        resolver: Resolver,
        connect_timeout: Duration,
        timeout: Duration,
        max_value_bytes: usize,
    ) -> Self {
        Self {
            addr: addr.to_owned(),
            resolver,
            connect_timeout,
            timeout,
            max_value_bytes,
            warned_item_size: Arc::default(),
            down_reported: Arc::default(),
        }
    }

    /// Whether the server was reported unreachable and has not answered since.
    pub(crate) fn down_reported(&self) -> bool {
        self.down_reported.load(Ordering::Relaxed)
    }

    /// The server answered: a later outage is a new one. Whether it had been reported down.
    pub(crate) fn answered(&self) -> bool {
        self.down_reported() && self.down_reported.swap(false, Ordering::Relaxed)
    }

    /// At startup: logs one ERROR if the server cannot be reached or is not memcached, and
    /// checks its item size limit if it is.
    pub(crate) async fn at_startup(self) {
        match self.item_size_max().await {
            Ok(item_size_max) => self.compare(item_size_max),
            Err(reason) => {
                self.down_reported.store(true, Ordering::Relaxed);
                tracing::error!(
                    node = %self.addr,
                    error = %reason,
                    "memcached server unavailable at startup: calls for its keys fail until it \
                     answers; the service keeps retrying it"
                );
            }
        }
    }

    /// On a connection to a new memcached process (startup, restart): checks its item size
    /// limit. A server that does not answer here is reported by the calls that fail.
    pub(crate) async fn on_new_instance(self) {
        match self.item_size_max().await {
            Ok(item_size_max) => self.compare(item_size_max),
            Err(reason) => {
                tracing::debug!(node = %self.addr, error = %reason, "memcached settings not read");
            }
        }
    }

    /// Warns, once per figure, when the server's item size limit is below the largest item.
    fn compare(&self, item_size_max: Option<u64>) {
        let Some(item_size_max) = item_size_max else {
            tracing::debug!(node = %self.addr, "memcached reports no item_size_max");
            return;
        };
        let largest = largest_item(self.max_value_bytes);
        if item_size_max >= largest as u64 {
            return;
        }
        if self.warned_item_size.swap(item_size_max, Ordering::Relaxed) == item_size_max {
            return;
        }
        // The largest value that fits, with the longest key.
        let fits = item_size_max.saturating_sub((largest - self.max_value_bytes) as u64);
        tracing::warn!(
            node = %self.addr,
            item_size_max,
            max_value_bytes = self.max_value_bytes,
            largest_item = largest,
            "memcached's item size limit (item_size_max {item_size_max}) is below the largest \
             item the service may store ({largest} bytes for limits.max_value_bytes = {}): \
             larger values will be refused with RESOURCE_EXHAUSTED. Raise memcached -I to at \
             least {largest} bytes, or lower limits.max_value_bytes to {fits}",
            self.max_value_bytes,
        );
    }

    /// `item_size_max` of `stats settings` (`None` when the server does not report it).
    async fn item_size_max(&self) -> Result<Option<u64>, String> {
        let reply = self.stats("stats settings").await?;
        Ok(stat(&reply, "item_size_max"))
    }

    /// The identity of the memcached process: its pid and start time (`time - uptime` of
    /// `stats`), the same through every connection and new with every restart.
    pub(crate) async fn process_identity(&self) -> Result<u64, String> {
        let reply = self.stats("stats").await?;
        identity(&reply).ok_or_else(|| "memcached `stats` has no pid, time or uptime".to_owned())
    }

    /// Sends a `stats` command on a connection of its own and reads the answer.
    async fn stats(&self, command: &str) -> Result<String, String> {
        let mut stream = tokio::time::timeout(
            self.connect_timeout,
            super::node::connect_to(&self.resolver, &self.addr),
        )
        .await
        .map_err(|_| format!("cannot connect: timed out after {:?}", self.connect_timeout))?
        .map_err(|e| format!("cannot connect: {e}"))?;
        tokio::time::timeout(self.timeout, stats(&mut stream, command))
            .await
            .map_err(|_| format!("no answer to `{command}` within {:?}", self.timeout))?
    }
}

/// Sends a `stats` command and reads the answer up to its `END`.
async fn stats(stream: &mut TcpStream, command: &str) -> Result<String, String> {
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .map_err(|e| format!("connection lost: {e}"))?;
    let mut reply = Vec::with_capacity(4096);
    loop {
        if reply.len() > MAX_SETTINGS_REPLY {
            return Err(format!(
                "not a memcached server: endless answer to `{command}`"
            ));
        }
        let n = stream
            .read_buf(&mut reply)
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        // Every complete line so far must be one of memcached's.
        let complete = reply
            .rsplit(|&b| b == b'\n')
            .next()
            .map_or(0, |tail| reply.len() - tail.len());
        if let Some(line) = reply[..complete].split(|&b| b == b'\n').find(|line| {
            !(line.starts_with(b"STAT ") || line.starts_with(b"END") || line.is_empty())
        }) {
            return Err(format!(
                "not a memcached server: it answered {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)]).trim_end()
            ));
        }
        if reply.ends_with(b"END\r\n") {
            return Ok(String::from_utf8_lossy(&reply).into_owned());
        }
        if n == 0 {
            return Err("closed by the server before answering".to_owned());
        }
    }
}

/// A number of a `stats` answer.
fn stat(reply: &str, name: &str) -> Option<u64> {
    reply.lines().find_map(|line| {
        line.strip_prefix("STAT ")?
            .strip_prefix(name)?
            .strip_prefix(' ')
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A memcached process's identity from its `stats`: pid and start time, never 0.
fn identity(reply: &str) -> Option<u64> {
    let pid = stat(reply, "pid")?;
    // memcached reports `time` as its start time plus its clock and `uptime` as its clock
    // (less a constant): the difference is the same at every read of one process.
    let started = stat(reply, "time")?.checked_sub(stat(reply, "uptime")?)?;
    Some(((pid << 40) ^ started).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_VALUE_BYTES;

    #[test]
    fn the_default_value_limit_fits_memcacheds_default_item_size() {
        assert!(largest_item(DEFAULT_MAX_VALUE_BYTES) <= 1024 * 1024);
        assert!(largest_item(1024 * 1024) > 1024 * 1024);
    }

    #[test]
    fn item_size_max_is_read_from_stats_settings() {
        let reply = "STAT maxbytes 67108864\r\nSTAT item_size_max 524288\r\nSTAT slab_chunk_max 262144\r\nEND\r\n";
        assert_eq!(stat(reply, "item_size_max"), Some(524_288));
        assert_eq!(
            stat("STAT maxbytes 67108864\r\nEND\r\n", "item_size_max"),
            None
        );
    }

    #[test]
    fn a_process_is_known_by_its_pid_and_start_time() {
        let at = |pid: u64, time: u64, uptime: u64| {
            identity(&format!(
                "STAT pid {pid}\r\nSTAT uptime {uptime}\r\nSTAT time {time}\r\nEND\r\n"
            ))
        };
        let first = at(42, 1_800_000_100, 100).expect("identity");
        assert_eq!(
            at(42, 1_800_000_200, 200),
            Some(first),
            "later, same process"
        );
        assert_ne!(at(42, 1_800_000_200, 10), Some(first), "restarted");
        assert_ne!(at(43, 1_800_000_100, 100), Some(first), "another process");
        assert_eq!(identity("STAT pid 1\r\nEND\r\n"), None);
    }
}
