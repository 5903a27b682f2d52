//! The embedded store: an in-process cache (moka) with memcached's item semantics.
//!
//! It lets a fresh machine run the service with no memcached, and it is not shared between
//! replicas. Each operation runs [`crate::core::item`]'s rules inside moka's per-key atomic
//! `and_compute_with`, so concurrent readers of one key see the same single election that
//! memcached would hold.
//!
//! Time comes from a [`Clock`]: the item rules decide what has expired at the clock's `now`,
//! and moka only reclaims the memory of expired items.
//!
//! Memory: each entry weighs what it really costs ([`weight`]: its key and value as the
//! allocator lays them out, plus a measured constant for the item and moka's own bookkeeping),
//! so that `embedded.max_bytes` bounds the process's memory and not just the payload. (That the
//! memory of evicted entries goes back to the system at once is the allocator's part: see the
//! jemalloc settings in `.cargo/config.toml`.) Eviction is plain LRU, as in
//! memcached: moka's default admission policy (TinyLFU) would turn away new keys when the
//! store is full, and a value just stored (`stored = true`) would then read as a miss.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;

use super::{Store, StoreError};
use crate::clock::Clock;
use crate::core::item::{
    self, Cas, Change, Create, GetOpts, IncrStatus, Item, ItemView, Write, WriteStatus,
};
use crate::core::key::StoreKey;
use crate::metrics::EmbeddedUsage;

/// Bytes an entry costs beyond the allocations of its key and value: the `Item` behind its
/// `Arc`, the `Bytes` handles and shared headers, and moka's per-entry bookkeeping (hash table
/// bucket, entry info, LRU and timer wheel nodes). Measured as the growth of the server's
/// resident memory per entry stored, with small keys and values (see docs/OPERATIONS.md,
/// "Embedded store memory").
const ENTRY_OVERHEAD: usize = 600;

/// Up to this size, jemalloc's size classes are multiples of 16 bytes (its quantum).
const QUANTUM_MAX: usize = 128;

/// How often an idle store catches up with its pending work (see
/// [`EmbeddedStore::spawn_housekeeping`]).
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// What an entry counts against the budget: its real cost in memory, as closely as it can be
/// known without asking the allocator.
fn weight(key: &bytes::Bytes, item: &Item) -> u32 {
    let bytes = resident(key.len()) + resident(item.value.len()) + ENTRY_OVERHEAD;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The memory an allocation of `len` bytes takes with jemalloc: its size class (8, 16, then
/// multiples of 16 up to 128, then four classes per doubling: a 1,028-byte value, 1 KiB and
/// its envelope's header, takes 1,280 bytes; 65,540 bytes take 80 KiB). All of it is resident
/// when the allocation reuses memory freed by another (pages the allocator kept), as it does
/// under a steady stream of writes into a full store.
fn resident(len: usize) -> usize {
    match len {
        0 => 0,
        1..=8 => 8,
        9..=QUANTUM_MAX => len.next_multiple_of(16),
        _ => {
            let log2 = usize::BITS - 1 - (len - 1).leading_zeros();
            len.next_multiple_of(1 << (log2 - 2))
        }
    }
}

/// The in-process store.
#[derive(Clone)]
pub(crate) struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    items: Cache<bytes::Bytes, Arc<Item>>,
    epoch: Instant,
    clock: Clock,
    cas: AtomicU64,
    /// This store's identity in CAS values (see [`Cas`]): a new one each time the process
    /// starts, as a restarted memcached would have.
    instance: u64,
}

/// Reclaims each entry at its own `expires_at`.
struct ItemExpiry {
    epoch: Instant,
    /// A manual clock's time is not moka's (which is the system's): entries are then only
    /// evicted for space, never early by moka's reckoning; the item rules hide expired ones.
    manual: bool,
}

impl ItemExpiry {
    fn until(&self, item: &Item, at: Instant) -> Option<Duration> {
        if self.manual {
            return None;
        }
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
    /// A store using about `max_bytes` of memory for its entries, reading time from `clock`.
    pub(crate) fn new(max_bytes: u64, clock: Clock) -> Self {
        let epoch = Instant::now();
        let manual = matches!(clock, Clock::Manual(_));
        let items = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &bytes::Bytes, v: &Arc<Item>| weight(k, v))
            // Every write is admitted and the least recently used entries make room for it.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ItemExpiry { epoch, manual })
            .build();
        let store = Self {
            inner: Arc::new(Inner {
                items,
                epoch,
                clock,
                cas: AtomicU64::new(1),
                instance: fastrand::u64(1..),
            }),
        };
        store.spawn_housekeeping();
        store
    }

    /// moka applies writes, evictions and expirations in batches, when later operations come;
    /// an idle store would hold expired entries and show stale counts for as long as it stays
    /// idle. This task does that work every [`HOUSEKEEPING_INTERVAL`] until the store is
    /// dropped. (Outside a runtime, as in some tests, nothing is spawned.)
    fn spawn_housekeeping(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(HOUSEKEEPING_INTERVAL).await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                inner.items.run_pending_tasks().await;
            }
        });
    }

    /// Entries held and bytes counted against the budget. moka applies writes and evictions
    /// in batches, so these trail the latest writes by a moment.
    pub(crate) fn usage(&self) -> EmbeddedUsage {
        EmbeddedUsage {
            entries: self.inner.items.entry_count(),
            bytes: self.inner.items.weighted_size(),
        }
    }

    /// Milliseconds since the store was made, by its clock.
    fn now(&self) -> u64 {
        match &self.inner.clock {
            Clock::System => {
                u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
            }
            Clock::Manual(clock) => clock.elapsed_ms(),
        }
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
    async fn probe(&self) -> bool {
        true
    }

    async fn get(&self, key: &StoreKey, opts: GetOpts) -> Result<Option<ItemView>, StoreError> {
        // Most reads change nothing (a hit outside any election): those need no per-key lock.
        // The item is read as one `Arc`, so such a read answers what a locked read would have
        // answered at that instant; a read that would change the item (an election, a touch,
        // a placeholder, removing an expired item) runs again under the lock.
        let current = self.inner.items.get(key.stored()).await;
        let (view, change) = item::get(current.as_deref(), opts, self.now(), 0);
        let view = match change {
            Change::Keep => view,
            Change::Put(_) | Change::Remove => {
                self.apply(key, |it, now, cas| item::get(it, opts, now, cas))
                    .await
            }
        };
        Ok(view.map(|view| ItemView {
            instance: self.inner.instance,
            ..view
        }))
    }

    async fn set(&self, key: &StoreKey, write: &Write) -> Result<WriteStatus, StoreError> {
        if write
            .cas
            .is_some_and(|cas| cas.instance != self.inner.instance)
        {
            // A lease from another instance (an earlier process) matches nothing here.
            return Ok(WriteStatus::Exists);
        }
        Ok(self
            .apply(key, |it, now, cas| item::set(it, write, now, cas))
            .await)
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        Ok(self.apply(key, |it, now, _| item::delete(it, now)).await)
    }

    async fn set_cas(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> Result<(WriteStatus, Option<Cas>), StoreError> {
        if write
            .cas
            .is_some_and(|cas| cas.instance != self.inner.instance)
        {
            return Ok((WriteStatus::Exists, None));
        }
        let instance = self.inner.instance;
        Ok(self
            .apply(key, |it, now, cas| {
                let (status, change) = item::set(it, write, now, cas);
                let stored = (status == WriteStatus::Stored).then_some(Cas {
                    instance,
                    value: cas,
                });
                ((status, stored), change)
            })
            .await)
    }

    async fn delete_if(&self, key: &StoreKey, cas: Cas) -> Result<bool, StoreError> {
        if cas.instance != self.inner.instance {
            return Ok(false);
        }
        Ok(self
            .apply(key, |it, now, _| item::delete_if(it, cas.value, now))
            .await)
    }

    async fn invalidate(
        &self,
        key: &StoreKey,
        stale_ttl: u64,
        cas: Option<Cas>,
    ) -> Result<bool, StoreError> {
        if cas.is_some_and(|cas| cas.instance != self.inner.instance) {
            return Ok(false);
        }
        let cas = cas.map(|cas| cas.value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::item::WriteMode;
    use crate::core::key::KeySpace;
    use crate::core::ttl::Expiry;

    fn write(value: &[u8]) -> Write {
        Write {
            value: bytes::Bytes::copy_from_slice(value),
            client_flags: 0,
            ttl: Expiry::Never,
            mode: WriteMode::Set,
            cas: None,
        }
    }

    #[test]
    fn an_entry_weighs_its_bytes_and_its_overhead() {
        let key = bytes::Bytes::from_static(b":1:key");
        let item = Item {
            value: bytes::Bytes::from_static(b"twelve bytes"),
            client_flags: 0,
            expires_at: None,
            cas: 1,
            stale: false,
            token_sent: false,
        };
        assert_eq!(weight(&key, &item) as usize, 8 + 16 + ENTRY_OVERHEAD);
    }

    #[test]
    fn allocations_are_weighed_at_jemallocs_size_classes() {
        let classes = [
            (0, 0),
            (1, 8),
            (9, 16),
            (17, 32),
            (20, 32),
            (100, 112),
            (128, 128),
            (129, 160),
            (1024, 1024),
            (1028, 1280),
            (1281, 1536),
            (4097, 5120),
            (14337, 16384),
            (16384, 16384),
            (16385, 20480),
            (65540, 81920),
            (1 << 20, 1 << 20),
        ];
        for (len, resident_len) in classes {
            assert_eq!(resident(len), resident_len, "{len} bytes");
        }
    }

    #[tokio::test]
    async fn a_full_store_admits_every_write_and_evicts_the_oldest() {
        let budget = 1 << 20;
        let store = EmbeddedStore::new(budget, Clock::System);
        let space = KeySpace::new("", "1").expect("key space");
        let key = |n: usize| space.store_key(format!("key-{n}").as_bytes());
        // Ten times what the budget holds.
        let written = 10 * budget as usize / ENTRY_OVERHEAD;
        for n in 0..written {
            let status = store.set(&key(n), &write(b"value")).await.expect("set");
            assert_eq!(status, WriteStatus::Stored);
            // A value just stored reads back, however full the store is.
            let read = store.get(&key(n), GetOpts::default()).await.expect("get");
            assert!(read.is_some(), "entry {n} gone right after it was stored");
        }
        store.inner.items.run_pending_tasks().await;
        let usage = store.usage();
        assert!(usage.bytes <= budget, "{usage:?}");
        assert!(usage.entries * 9 < written as u64, "{usage:?}");
        // Least recently used first: the oldest are gone, the newest are all there.
        assert!(
            store
                .get(&key(0), GetOpts::default())
                .await
                .expect("get")
                .is_none()
        );
        for n in written - 100..written {
            assert!(
                store
                    .get(&key(n), GetOpts::default())
                    .await
                    .expect("get")
                    .is_some(),
                "recent entry {n} evicted"
            );
        }
    }
}
