//! The embedded store: an in-process cache (moka) with memcached's item semantics.
//!
//! It lets a fresh machine run the service with no memcached, and it is not shared between
//! replicas. Each operation runs [`crate::core::item`]'s rules inside moka's per-key atomic
//! `and_compute_with`, so concurrent readers of one key see the same single election that
//! memcached would hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;

use super::{Store, StoreError};
use crate::core::item::{
    self, Change, Create, GetOpts, IncrStatus, Item, ItemView, Write, WriteStatus,
};
use crate::core::key::StoreKey;

/// Bytes counted per entry on top of key and value, for moka's weigher.
const ENTRY_OVERHEAD: u32 = 64;

/// The in-process store.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    items: Cache<bytes::Bytes, Arc<Item>>,
    epoch: Instant,
    cas: AtomicU64,
}

/// Expires each entry at its own `expires_at`.
struct ItemExpiry {
    epoch: Instant,
}

impl ItemExpiry {
    fn until(&self, item: &Item, at: Instant) -> Option<Duration> {
        let expires_at = item.expires_at?;
        let now_ms =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(expires_at.saturating_sub(now_ms)))
    }
}

impl Expiry<bytes::Bytes, Arc<Item>> for ItemExpiry {
    fn expire_after_create(
        &self,
        _key: &bytes::Bytes,
        value: &Arc<Item>,
        created_at: Instant,
    ) -> Option<Duration> {
        self.until(value, created_at)
    }

    fn expire_after_update(
        &self,
        _key: &bytes::Bytes,
        value: &Arc<Item>,
        updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.until(value, updated_at)
    }
}

impl EmbeddedStore {
    /// A store holding at most about `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> Self {
        let epoch = Instant::now();
        let items = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &bytes::Bytes, v: &Arc<Item>| {
                let len = k.len() + v.value.len();
                u32::try_from(len)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .expire_after(ItemExpiry { epoch })
            .build();
        Self {
            inner: Arc::new(Inner {
                items,
                epoch,
                cas: AtomicU64::new(1),
            }),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn next_cas(&self) -> u64 {
        self.inner.cas.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs one of `core::item`'s operations atomically on `key`.
    async fn apply<R: Send + 'static>(
        &self,
        key: &StoreKey,
        op: impl FnOnce(Option<&Item>, u64, u64) -> (R, Change) + Send,
    ) -> R {
        let now = self.now();
        let cas = self.next_cas();
        let mut out = None;
        self.inner
            .items
            .entry(key.stored().clone())
            .and_compute_with(|entry| {
                let current = entry.map(|e| e.into_value());
                let (result, change) = op(current.as_deref(), now, cas);
                out = Some(result);
                let op = match change {
                    Change::Keep => Op::Nop,
                    Change::Put(item) => Op::Put(Arc::new(item)),
                    Change::Remove => Op::Remove,
                };
                std::future::ready(op)
            })
            .await;
        out.unwrap_or_else(|| unreachable!("and_compute_with always runs its closure"))
    }
}

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn probe(&self) -> bool {
        true
    }

    async fn get(&self, key: &StoreKey, opts: GetOpts) -> Result<Option<ItemView>, StoreError> {
        Ok(self
            .apply(key, |it, now, cas| item::get(it, opts, now, cas))
            .await)
    }

    async fn set(&self, key: &StoreKey, write: &Write) -> Result<WriteStatus, StoreError> {
        Ok(self
            .apply(key, |it, now, cas| item::set(it, write, now, cas))
            .await)
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(self.apply(key, |it, now, _| item::delete(it, now)).await)
    }

    async fn invalidate(
        &self,
        key: &StoreKey,
        stale_ttl: u64,
        cas: Option<u64>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .apply(key, |it, now, new_cas| {
                item::invalidate(it, stale_ttl, cas, now, new_cas)
            })
            .await)
    }

    async fn incr(
        &self,
        key: &StoreKey,
        delta: i64,
        create: Option<Create>,
    ) -> Result<IncrStatus, StoreError> {
        Ok(self
            .apply(key, |it, now, cas| item::incr(it, delta, create, now, cas))
            .await)
    }
}
