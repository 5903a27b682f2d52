//! The mint cache: validates requests, derives keys, and runs the mint protocol over a
//! [`Store`]. Pure decisions live in [`crate::core`]; this module sequences store calls, a
//! file per part:
//!
//! - `read`: `Get` and `GetMany`: the refresh election and its timeout, peeks, the hot-key
//!   cache;
//! - `wait`: reads that wait for another caller's fill instead of answering `PENDING`;
//! - `write`: `Set`, `Add`, `Delete`, `Invalidate`, `Touch`, `Increment`, `Flush` and the
//!   batched writes;
//! - `generations`: each key space's generation (what `Flush` moves on), kept per replica and
//!   renewed in the background;
//! - `batch`: batched calls, one answer per item;
//! - `error`: why a call fails.
//!
//! Time is read from the server's [`Clock`], so that tests move it; only waits for a fill use
//! tokio's clock, because the call's deadline bounds them.

mod batch;
mod error;
mod generations;
mod read;
mod wait;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub(crate) use self::error::CacheError;
use self::generations::Generations;
use self::wait::Fills;
use crate::clock::Clock;
use crate::config::CacheSettings;
use crate::core::auth::{self, DebugMode, Effect, OpKind};
use crate::core::item::{Cas, GetOpts};
use crate::core::key::{KeySpace, StoreKey};
use crate::core::mint::{Early, Lookup};
use crate::hot::HotCache;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

#[cfg(test)]
pub(crate) use self::read::fit_reads;

/// The context of one call: its key space, debug mode and consistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// Namespace and version.
    pub(crate) space: KeySpace,
    /// The per-call debug mode (admin callers only; checked before).
    pub(crate) debug: Option<DebugMode>,
    /// `x-cache-consistency: strong`: reads never use the hot-key cache.
    pub(crate) strong: bool,
}

/// How a call asks to read, beyond its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ReadArgs {
    /// Cold-miss protection (`None`: the server's default).
    pub(crate) lease_on_miss: Option<bool>,
    /// Look without taking part in the refresh election.
    pub(crate) peek: bool,
    /// β of early refresh for this call (`None`: the key space's).
    pub(crate) early_refresh_beta: Option<f64>,
    /// How long a read that would answer `PENDING` waits for the fill (zero: not at all); the
    /// service already cut it to the call's deadline.
    pub(crate) wait: Duration,
}

impl Call {
    fn effect(&self, op: OpKind) -> Effect {
        auth::effect(self.debug, op)
    }
}

/// What a read of one key runs with: the options of its first read, whether it asked for
/// cold-miss protection, early refresh's β, and whether its leases say when they were issued.
#[derive(Debug, Clone, Copy)]
struct Plan {
    opts: GetOpts,
    protect: bool,
    beta: f64,
    timed: bool,
}

impl Plan {
    /// This read's early-refresh draw, if early refresh is on for it.
    fn early(&self) -> Option<Early> {
        (self.beta > 0.0).then(|| Early::draw(self.beta, fastrand::f64()))
    }
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    /// What was found.
    pub(crate) lookup: Lookup,
    /// The backend failed and the read was answered as a miss (fail open).
    pub(crate) degraded: bool,
}

impl Read {
    /// The answer to a read under a debug mode: nothing cached, no lease.
    fn debug_miss() -> Self {
        Self {
            lookup: Lookup {
                lease: None,
                ..Lookup::miss()
            },
            degraded: false,
        }
    }
}

/// A store request, as the API gives it (0 = defaults).
#[derive(Debug, Clone, Default)]
pub(crate) struct SetArgs {
    /// The value never expires (`ttl_seconds` must be 0).
    pub(crate) no_expiry: bool,
    /// The value has no grace period (`grace_seconds` must be 0).
    pub(crate) no_grace: bool,
    /// The value is a counter's decimal digits.
    pub(crate) counter: bool,
    /// The user key.
    pub(crate) key: Bytes,
    /// The value.
    pub(crate) value: Bytes,
    /// Requested fresh seconds.
    pub(crate) ttl_seconds: i64,
    /// Requested grace seconds.
    pub(crate) grace_seconds: i64,
    /// The caller's flags.
    pub(crate) flags: u32,
    /// Lease token bytes from a `REFRESH` or `MISS` (empty: none).
    pub(crate) lease_token: Bytes,
    /// Milliseconds the caller says computing the value took (0: not said).
    pub(crate) recompute_ms: u32,
}

/// Most stale items a replica watches for a refresh winner that never stores.
const MAX_WATCHED_ELECTIONS: u64 = 100_000;

/// The versioned mint cache over a store.
pub(crate) struct MintCache<S> {
    store: Arc<S>,
    settings: CacheSettings,
    metrics: Metrics,
    clock: Clock,
    /// The generation of each key space in use.
    generations: Generations<S>,
    /// When this replica first saw each decided election (stored key, CAS value) still
    /// unanswered: the basis of the refresh timeout.
    elections_seen: moka::sync::Cache<(Bytes, Cas), Instant>,
    /// Reads waiting for a fill.
    fills: Fills,
    /// The hot-key cache, when on.
    hot: Option<HotCache>,
}

impl<S: Store> MintCache<S> {
    /// A mint cache over `store`, recording read outcomes into `metrics` and reading the time
    /// from `clock`.
    pub(crate) fn new(
        store: Arc<S>,
        settings: CacheSettings,
        metrics: Metrics,
        clock: Clock,
    ) -> Self {
        let watch = settings
            .refresh_timeout
            .map_or(Duration::from_secs(1), |t| t * 2);
        let elections_seen = moka::sync::Cache::builder()
            .max_capacity(MAX_WATCHED_ELECTIONS)
            .time_to_live(watch)
            .build();
        let hot = settings
            .hot_cache
            .as_ref()
            .map(|h| HotCache::new(h.max_staleness, h.max_bytes));
        Self {
            generations: Generations::new(store.clone(), settings.flush_sync, clock.clone()),
            fills: Fills::new(&settings),
            store,
            settings,
            metrics,
            clock,
            elections_seen,
            hot,
        }
    }

    /// Entries and bytes of the hot-key cache (zeros when it is off).
    pub(crate) fn hot_usage(&self) -> (u64, u64) {
        self.hot.as_ref().map_or((0, 0), HotCache::usage)
    }

    /// Checks a key against the limits.
    fn check_key<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], CacheError> {
        if key.is_empty() {
            return Err(CacheError::EmptyKey);
        }
        if key.len() > self.settings.max_key_bytes {
            return Err(CacheError::KeyTooLong {
                len: key.len(),
                max: self.settings.max_key_bytes,
            });
        }
        Ok(key)
    }

    /// The store key of a checked key in the call's key space, at its current generation.
    async fn store_key(&self, call: &Call, key: &[u8]) -> Result<StoreKey, StoreError> {
        let generation = self.generations.current(&call.space).await?;
        Ok(call.space.store_key_at(generation, key))
    }

    /// After a write of `key` through this replica: its hot copy is dropped.
    fn written(&self, key: &StoreKey) {
        if let Some(hot) = &self.hot {
            hot.forget(key.stored());
        }
    }
}
