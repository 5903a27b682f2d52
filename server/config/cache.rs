//! The cache's sections: `[cache]` (semantics: key space, ttl, grace, elections, early refresh,
//! waits), `[limits]` (key and value sizes) and `[hot_cache]`: their settings, defaults and
//! checks, and the [`CacheSettings`] the mint cache runs with.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Config;
use super::errors::Problems;
use super::serde::string_whatever_it_looks_like;
use super::settings::{CacheSettings, HotCacheSettings};
use crate::core::envelope::MAX_GRACE_SECONDS;
use crate::core::key::{KeySpace, validate_label};
use crate::core::ttl::MAX_TTL_SECONDS;

/// `[cache]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Version used when a call has no `x-cache-version`.
    #[serde(deserialize_with = "string_whatever_it_looks_like")]
    pub default_version: String,
    /// Namespace used when a call has no `x-cache-namespace` (may be empty).
    #[serde(deserialize_with = "string_whatever_it_looks_like")]
    pub namespace: String,
    /// Fresh seconds when a write asks for 0.
    pub default_ttl_seconds: u64,
    /// Grace seconds when a write asks for 0.
    pub grace_seconds: u64,
    /// Cold-miss protection when a read does not say.
    pub lease_on_miss: bool,
    /// Seconds a cold-miss placeholder waits for its filler before the next caller may try.
    pub fill_timeout_seconds: u64,
    /// Answer reads as `MISS` when the backend fails (true), or fail them with `UNAVAILABLE`.
    pub fail_open: bool,
    /// Seconds a `REFRESH` winner has to store a new value; after that the refresh election
    /// reopens and a later reader gets `REFRESH` (0: never reopen).
    pub refresh_timeout_seconds: u64,
    /// Milliseconds a replica trusts its copy of a key space's generation: after a `Flush`
    /// through another replica, this one stops serving the flushed keys within this delay
    /// (0: read the generation from the backend on every call).
    pub flush_sync_ms: u64,
    /// β of early refresh: a read of a fresh value asks to refresh it with a probability that
    /// rises as its soft expiry nears and with the time its last recomputation took (0: only
    /// after the soft expiry, as before; also keeps values in the value format and leases in
    /// the token formats of versions without early refresh, for rolling upgrades).
    pub early_refresh_beta: f64,
    /// β per namespace (`{ shop = 2.0 }`), over `early_refresh_beta`.
    pub early_refresh_beta_by_namespace: BTreeMap<String, f64>,
    /// Longest a read may wait for another caller's fill (`GetRequest.wait_ms` is cut to it).
    pub max_wait_ms: u64,
    /// How often a waiting read looks for the fill in memcached when it is stored through
    /// another replica (through this one, the read is answered at once).
    pub wait_poll_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            default_version: "1".to_owned(),
            namespace: String::new(),
            default_ttl_seconds: 300,
            grace_seconds: 30,
            lease_on_miss: false,
            fill_timeout_seconds: 5,
            fail_open: true,
            refresh_timeout_seconds: 10,
            flush_sync_ms: 1000,
            early_refresh_beta: 1.0,
            early_refresh_beta_by_namespace: BTreeMap::new(),
            max_wait_ms: 10_000,
            wait_poll_ms: 10,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest accepted key, in bytes.
    pub max_key_bytes: usize,
    /// Longest accepted value, in bytes. The default leaves room, within memcached's default
    /// 1 MiB item size, for the key, memcached's item header and mintcache's 8-byte envelope.
    pub max_value_bytes: usize,
}

/// Default `limits.max_value_bytes`: 1 MiB minus 1 KiB of overhead.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024 - 1024;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// `[hot_cache]`: a per-replica cache of keys memcached reports hot, so that one viral key
/// does not put all its load on one memcached server. Off unless `max_staleness_ms` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotCacheConfig {
    /// Longest a replica serves a hot key's value from its own memory without asking memcached
    /// (0: no hot cache). Writes through other replicas are seen within this delay; writes
    /// through this one at once.
    pub max_staleness_ms: u64,
    /// Memory the hot cache may hold (values and keys, at their cost).
    pub max_bytes: u64,
}

impl Default for HotCacheConfig {
    fn default() -> Self {
        Self {
            max_staleness_ms: 0,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Largest β of early refresh: far beyond any use (β = 1 is the paper's choice).
pub const MAX_BETA: f64 = 1000.0;

impl CacheConfig {
    /// Whether the default key space is valid (other problems are recorded too).
    pub(super) fn validate(&self, p: &mut Problems) -> bool {
        let label = |key: &str, value: &str, allow_empty: bool, p: &mut Problems| {
            validate_label(value.as_bytes(), allow_empty)
                .map_err(|e| p.add(key, e.to_string()))
                .is_ok()
        };
        let version_ok = label("cache.default_version", &self.default_version, false, p);
        let namespace_ok = label("cache.namespace", &self.namespace, true, p);
        let ttl_range = 1..=MAX_TTL_SECONDS;
        p.check(
            ttl_range.contains(&self.default_ttl_seconds),
            "cache.default_ttl_seconds",
            || format!("must be in {ttl_range:?}"),
        );
        p.check(
            self.grace_seconds <= MAX_GRACE_SECONDS,
            "cache.grace_seconds",
            || format!("must be at most {MAX_GRACE_SECONDS}"),
        );
        p.check(
            (1..=3600).contains(&self.fill_timeout_seconds),
            "cache.fill_timeout_seconds",
            || "must be in 1..=3600".into(),
        );
        p.check(
            self.refresh_timeout_seconds <= 3600,
            "cache.refresh_timeout_seconds",
            || "must be in 0..=3600 (0: never reopen a refresh election)".into(),
        );
        p.check(self.flush_sync_ms <= 60_000, "cache.flush_sync_ms", || {
            "must be in 0..=60000".into()
        });
        let beta_ok = |beta: f64| beta.is_finite() && (0.0..=MAX_BETA).contains(&beta);
        p.check(
            beta_ok(self.early_refresh_beta),
            "cache.early_refresh_beta",
            || format!("must be a number in 0..={MAX_BETA} (0: no early refresh)"),
        );
        for (namespace, beta) in &self.early_refresh_beta_by_namespace {
            let key = format!("cache.early_refresh_beta_by_namespace.{namespace}");
            if let Err(e) = validate_label(namespace.as_bytes(), false) {
                p.add(&key, format!("not a namespace: {e}"));
            }
            p.check(beta_ok(*beta), &key, || {
                format!("must be a number in 0..={MAX_BETA} (0: no early refresh)")
            });
        }
        p.check(self.max_wait_ms <= 600_000, "cache.max_wait_ms", || {
            "must be in 0..=600000".into()
        });
        p.check(
            (1..=10_000).contains(&self.wait_poll_ms),
            "cache.wait_poll_ms",
            || "must be in 1..=10000".into(),
        );
        version_ok && namespace_ok
    }
}

impl LimitsConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=1 << 20).contains(&self.max_key_bytes),
            "limits.max_key_bytes",
            || "must be in 1..=1048576".into(),
        );
        p.check(
            (1..=1 << 30).contains(&self.max_value_bytes),
            "limits.max_value_bytes",
            || "must be in 1..=1073741824".into(),
        );
    }
}

impl HotCacheConfig {
    pub(super) fn validate(&self, p: &mut Problems) {
        p.check(
            self.max_staleness_ms <= 60_000,
            "hot_cache.max_staleness_ms",
            || "must be in 0..=60000 (0: no hot cache)".into(),
        );
        p.check(self.max_bytes >= 1024 * 1024, "hot_cache.max_bytes", || {
            "must be at least 1048576".into()
        });
    }
}

impl CacheSettings {
    /// The settings of two checked sections (`None` if the key space is not valid).
    pub(super) fn new(config: &Config) -> Option<Self> {
        let Config {
            cache,
            limits,
            server,
            hot_cache,
            ..
        } = config;
        Some(Self {
            default_space: KeySpace::new(&cache.namespace, &cache.default_version).ok()?,
            default_ttl_seconds: cache.default_ttl_seconds,
            default_grace_seconds: cache.grace_seconds,
            lease_on_miss: cache.lease_on_miss,
            fill_timeout_seconds: cache.fill_timeout_seconds,
            fail_open: cache.fail_open,
            refresh_timeout: (cache.refresh_timeout_seconds > 0)
                .then(|| Duration::from_secs(cache.refresh_timeout_seconds)),
            flush_sync: Duration::from_millis(cache.flush_sync_ms),
            max_key_bytes: limits.max_key_bytes,
            max_value_bytes: limits.max_value_bytes,
            max_message_bytes: server.max_message_bytes,
            early_refresh_beta: cache.early_refresh_beta,
            early_refresh_beta_by_namespace: cache.early_refresh_beta_by_namespace.clone(),
            max_wait: Duration::from_millis(cache.max_wait_ms),
            wait_poll: Duration::from_millis(cache.wait_poll_ms),
            hot_cache: (hot_cache.max_staleness_ms > 0).then(|| HotCacheSettings {
                max_staleness: Duration::from_millis(hot_cache.max_staleness_ms),
                max_bytes: hot_cache.max_bytes,
            }),
        })
    }
}
