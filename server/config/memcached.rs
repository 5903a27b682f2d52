//! The backend sections: `[memcached]` (the pool) and `[embedded]` (the in-process store used
//! when no memcached server is configured): their settings, defaults and checks.

use serde::{Deserialize, Serialize};

use super::errors::Problems;
use super::serde::{ServerSpec, servers_from_list_or_string};

/// `[memcached]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemcachedConfig {
    /// `host:port` or `host:port:weight` entries; a list, or one comma-separated string.
    #[serde(deserialize_with = "servers_from_list_or_string")]
    pub servers: Vec<ServerSpec>,
    /// Milliseconds to establish a connection.
    pub connect_timeout_ms: u64,
    /// Milliseconds for one operation.
    pub timeout_ms: u64,
    /// Connections per memcached server. Each carries many operations at once (pipelined):
    /// a few are enough.
    pub pool_size: usize,
    /// Consecutive failures after which a server is ejected (0: never eject).
    pub failure_limit: u32,
    /// Milliseconds an ejected server is left alone before it is tried again.
    pub retry_timeout_ms: u64,
    /// Where the keys of an ejected server go: `fail` (reads miss, writes fail, as if the
    /// server were down) or `remap` (onto the remaining servers, like twemproxy's
    /// `auto_eject_hosts`).
    pub ejected_keys: EjectedKeys,
    /// Milliseconds a connection may sit idle before TCP keepalive probes it (0: off). A
    /// connection to a host that went silent then fails by itself within about twice this.
    pub keepalive_ms: u64,
    /// Commands that may wait on one connection (queued or sent, unanswered); calls beyond
    /// it fail at once (reads as misses, writes with `UNAVAILABLE`) instead of queueing
    /// without bound.
    pub max_queued_commands: usize,
}

/// What happens to the keys of an ejected memcached server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EjectedKeys {
    /// Reads of its keys miss (fail open), writes fail: no other server sees them.
    Fail,
    /// Its keys are served by the remaining servers until it returns.
    Remap,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            connect_timeout_ms: 1000,
            timeout_ms: 500,
            pool_size: 2,
            failure_limit: 3,
            retry_timeout_ms: 5000,
            ejected_keys: EjectedKeys::Fail,
            keepalive_ms: 10_000,
            max_queued_commands: 8192,
        }
    }
}

/// `[embedded]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Memory budget of the embedded store, in bytes (keys and values).
    pub max_bytes: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl MemcachedConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        let at_least_one = || "must be at least 1".to_owned();
        p.check(self.pool_size > 0, "memcached.pool_size", at_least_one);
        p.check(
            self.max_queued_commands > 0,
            "memcached.max_queued_commands",
            at_least_one,
        );
        p.check(self.timeout_ms > 0, "memcached.timeout_ms", at_least_one);
        p.check(
            self.connect_timeout_ms > 0,
            "memcached.connect_timeout_ms",
            at_least_one,
        );
        p.check(
            self.retry_timeout_ms > 0,
            "memcached.retry_timeout_ms",
            at_least_one,
        );
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.servers.iter().find(|s| !seen.insert(&s.addr)) {
            p.add(
                "memcached.servers",
                format!("`{}` is listed twice", dup.addr),
            );
        }
    }
}

impl EmbeddedConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        p.check(self.max_bytes >= 1024 * 1024, "embedded.max_bytes", || {
            "must be at least 1048576".into()
        });
    }
}
