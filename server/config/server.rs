//! `[server]` (the gRPC port) and `[admin]` (the admin HTTP port): their settings, defaults and
//! checks.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::errors::Problems;
use super::serde::ListenAddr;
use super::settings::ServerSettings;

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC listener.
    pub listen: ListenAddr,
    /// Seconds in-flight calls get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Calls served at once; calls beyond it are shed at once with `RESOURCE_EXHAUSTED`.
    pub max_concurrent_calls: usize,
    /// Largest gRPC message accepted or sent, in bytes. Must leave room for the largest value.
    pub max_message_bytes: usize,
    /// Calls one HTTP/2 connection may have open at once (its `SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// a client's further calls wait in the client until one ends.
    pub max_concurrent_streams: u32,
    /// Milliseconds a call's request has to arrive in full, counted from the call's arrival;
    /// a call whose request is not complete by then is answered `DEADLINE_EXCEEDED`.
    pub request_read_timeout_ms: u64,
    /// Bytes of request messages that all calls together may hold while they are read and
    /// served; a call whose message does not fit is refused with `RESOURCE_EXHAUSTED`. At least
    /// `max_message_bytes`.
    pub max_buffered_request_bytes: usize,
    /// Bytes of values read back from memcached that all calls together may hold until their
    /// answers are sent; a value that does not fit is not read (`RESOURCE_EXHAUSTED` for its
    /// key). At least `max_message_bytes`.
    pub max_buffered_reply_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddr::new("127.0.0.1", 50051),
            shutdown_grace_seconds: 20,
            max_concurrent_calls: 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 100,
            request_read_timeout_ms: 10_000,
            max_buffered_request_bytes: 64 * 1024 * 1024,
            max_buffered_reply_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Largest `server.max_buffered_request_bytes`: 1 TiB, far beyond any machine's need (and
/// within what the budget's semaphore can count on 64-bit platforms).
const MAX_BUFFERED_REQUEST_BYTES: u64 = 1 << 40;

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub listen: ListenAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        // Not 9090: that is Prometheus's own port, often on the same host.
        Self {
            listen: ListenAddr::new("127.0.0.1", 50052),
        }
    }
}

fn resolve(addr: &ListenAddr, key: &str, p: &mut Problems) -> Option<SocketAddr> {
    addr.resolve().map_err(|e| p.add(key, e)).ok()
}

impl ServerConfig {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<ServerSettings> {
        p.check(
            self.max_concurrent_calls > 0,
            "server.max_concurrent_calls",
            || "must be at least 1".into(),
        );
        p.check(
            self.max_concurrent_streams > 0,
            "server.max_concurrent_streams",
            || "must be at least 1".into(),
        );
        p.check(
            (1..=3_600_000).contains(&self.request_read_timeout_ms),
            "server.request_read_timeout_ms",
            || "must be in 1..=3600000".into(),
        );
        let budget = self.max_buffered_request_bytes;
        p.check(
            budget >= self.max_message_bytes
                && u64::try_from(budget).is_ok_and(|b| b <= MAX_BUFFERED_REQUEST_BYTES),
            "server.max_buffered_request_bytes",
            || {
                format!(
                    "must be in {}..={MAX_BUFFERED_REQUEST_BYTES} (at least server.max_message_bytes, \
                     or a message of that size could never be read)",
                    self.max_message_bytes
                )
            },
        );
        p.check(
            self.max_buffered_reply_bytes >= self.max_message_bytes,
            "server.max_buffered_reply_bytes",
            || {
                format!(
                    "must be at least server.max_message_bytes ({}), or a full answer could never \
                     be read",
                    self.max_message_bytes
                )
            },
        );
        Some(ServerSettings {
            listen: resolve(&self.listen, "server.listen", p)?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
            max_concurrent_calls: self.max_concurrent_calls,
            max_message_bytes: self.max_message_bytes,
            max_concurrent_streams: self.max_concurrent_streams,
            request_read_timeout: Duration::from_millis(self.request_read_timeout_ms),
            max_buffered_request_bytes: self.max_buffered_request_bytes,
            max_buffered_reply_bytes: self.max_buffered_reply_bytes,
        })
    }
}

impl AdminConfig {
    pub(super) fn validate(&self, p: &mut Problems) -> Option<SocketAddr> {
        resolve(&self.listen, "admin.listen", p)
    }
}
#[cfg(test)]
mod tests {
    use crate::config::tests::load_in_jail;

    #[test]
    fn listen_addresses_may_be_host_names() {
        let s = load_in_jail(
            "[server]\nlisten = \"localhost:50061\"\n[admin]\nlisten = \"[::1]:50062\"\n",
            &[],
        )
        .expect("host names resolve");
        assert_eq!(s.grpc_listen().to_string(), "127.0.0.1:50061");
        assert_eq!(s.admin_listen().to_string(), "[::1]:50062");
        assert_eq!(s.config().server.listen.to_string(), "localhost:50061");
        let e = load_in_jail(
            "",
            &[("MINTCACHE_SERVER__LISTEN", "no-such-host.invalid:1")],
        )
        .expect_err("unresolvable");
        assert!(e.names("server.listen"), "{e}");
        assert!(e.to_string().contains("cannot resolve"), "{e}");
        // Two ephemeral ports on one address are two ports.
        let s = load_in_jail(
            "",
            &[
                ("MINTCACHE_SERVER__LISTEN", "127.0.0.1:0"),
                ("MINTCACHE_ADMIN__LISTEN", "127.0.0.1:0"),
            ],
        )
        .expect("port 0 twice");
        assert_eq!(s.grpc_listen().port(), 0);
        let e = load_in_jail("[admin]\nlisten = \"127.0.0.1:50051\"\n", &[]).expect_err("same");
        assert!(e.names("admin.listen"), "{e}");
    }
}
