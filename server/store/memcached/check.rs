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

/// What memcached adds to an item beyond its key and data: its item header (48 bytes on 64-bit
/// builds), the CAS value (8), the client flags (4), the key's NUL and the data's CRLF (3),
/// rounded up. memcached refuses an item whose total is over `item_size_max`.
const MEMCACHED_ITEM_HEADER: usize = 64;

/// Most bytes read of a `stats settings` answer (it is about 3 KiB).
const MAX_SETTINGS_REPLY: usize = 64 * 1024;

/// The largest item the service may ask memcached to store: the largest value, the value
/// envelope's header, the longest stored key, and memcached's own item header.
pub(crate) fn largest_item(max_value_bytes: usize) -> usize {
    max_value_bytes + envelope::HEADER_LEN + MEMCACHED_MAX_KEY + MEMCACHED_ITEM_HEADER
}

/// The checks of one server; cloning shares what was reported.
#[derive(Clone)]
pub(crate) struct ServerCheck {
    addr: String,
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
        connect_timeout: Duration,
        timeout: Duration,
        max_value_bytes: usize,
    ) -> Self {
        Self {
            addr: addr.to_owned(),
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
        let mut stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| format!("cannot connect: timed out after {:?}", self.connect_timeout))?
            .map_err(|e| format!("cannot connect: {e}"))?;
        let reply = tokio::time::timeout(self.timeout, stats_settings(&mut stream))
            .await
            .map_err(|_| format!("no answer to `stats settings` within {:?}", self.timeout))??;
        Ok(item_size_max(&reply))
    }
}

/// Sends `stats settings` and reads the answer up to its `END`.
async fn stats_settings(stream: &mut TcpStream) -> Result<String, String> {
    stream
        .write_all(b"stats settings\r\n")
        .await
        .map_err(|e| format!("connection lost: {e}"))?;
    let mut reply = Vec::with_capacity(4096);
    loop {
        if reply.len() > MAX_SETTINGS_REPLY {
            return Err("not a memcached server: endless answer to `stats settings`".to_owned());
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

/// The `item_size_max` of a `stats settings` answer.
fn item_size_max(reply: &str) -> Option<u64> {
    reply.lines().find_map(|line| {
        line.strip_prefix("STAT item_size_max ")
            .and_then(|v| v.trim().parse().ok())
    })
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
        assert_eq!(item_size_max(reply), Some(524_288));
        assert_eq!(item_size_max("STAT maxbytes 67108864\r\nEND\r\n"), None);
    }
}
