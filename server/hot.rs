//! The hot-key cache: a replica's own copy of the values of keys memcached reports hot, so
//! that one viral key does not put all its load on the one memcached server that owns it (the
//! "probabilistic hot cache" of memcached's meta-protocol documentation; groupcache keeps hot
//! keys it does not own the same way).
//!
//! Only fresh hits go in, and only of keys that are hot: memcached reports the item read before
//! and read within its access-time resolution (`h1`, `l` at most 60: memcached refreshes an
//! item's access time at most once a minute, so `l0` alone holds only in the first second after
//! each refresh, and a key read without pause looked cold 59 seconds a minute), and this
//! replica itself read the key within the last second (the first read marks it, the next one
//! keeps its copy). A copy is served until the value's soft expiry or
//! `hot_cache.max_staleness_ms` after it was read, whichever comes first: never stale, never
//! older than the bound. Elections, leases and every write still go to memcached; a write
//! through this replica drops its copy at once, a write through another is seen within the
//! bound. Calls with `x-cache-consistency: strong` never read it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::RandomState;

use crate::core::mint::{Lookup, MintOutcome};

/// What an entry costs besides its key and value: moka's own bookkeeping, the entry, the
/// lookup's fields.
const ENTRY_OVERHEAD: u32 = 256;

/// A copy of a hot key's value.
#[derive(Debug)]
struct Copy {
    lookup: Lookup,
    /// When it was read from memcached.
    read_at: Instant,
    /// Its soft expiry (`None`: it never expires).
    fresh_until: Option<Instant>,
}

/// How recently this replica must have read a key for its next fresh hit to be kept.
const SEEN_WINDOW: Duration = Duration::from_secs(1);
/// The most keys remembered as read within [`SEEN_WINDOW`] (a key and an instant each).
const MAX_SEEN: u64 = 65_536;

/// The hot-key cache of one replica.
pub(crate) struct HotCache {
    copies: moka::sync::Cache<Bytes, Arc<Copy>, RandomState>,
    /// Keys whose fresh hit this replica read last, and when.
    seen: moka::sync::Cache<Bytes, Instant, RandomState>,
    max_staleness: Duration,
}

impl HotCache {
    /// A cache holding at most `max_bytes`, serving copies at most `max_staleness` old.
    pub(crate) fn new(max_staleness: Duration, max_bytes: u64) -> Self {
        let copies = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Bytes, copy: &Arc<Copy>| {
                let len = key.len() + copy.lookup.value.len();
                u32::try_from(len)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .time_to_live(max_staleness)
            // foldhash, seeded per process (keys come from clients, so not a hash they can aim
            // collisions at), rather than SipHash: every read of the cache hashes its key.
            .build_with_hasher(RandomState::default());
        let seen = moka::sync::Cache::builder()
            .max_capacity(MAX_SEEN)
            .time_to_live(SEEN_WINDOW)
            .build_with_hasher(RandomState::default());
        Self {
            copies,
            seen,
            max_staleness,
        }
    }

    /// The copy of `key` at `now`, if there is one still fresh and within the bound: a hit
    /// whose fresh time left is counted from now.
    pub(crate) fn get(&self, key: &Bytes, now: Instant) -> Option<Lookup> {
        let copy = self.copies.get(key)?;
        if now.saturating_duration_since(copy.read_at) >= self.max_staleness {
            return None;
        }
        let mut lookup = copy.lookup.clone();
        if let Some(fresh_until) = copy.fresh_until {
            let left = fresh_until.checked_duration_since(now)?;
            if left.is_zero() {
                return None;
            }
            lookup.ttl_seconds = left.as_secs().max(1);
        }
        Some(lookup)
    }

    /// Keeps a copy of a fresh hit of a key memcached reports hot, read from memcached at
    /// `now`, when this replica read it within the last second too (else it only notes the
    /// read).
    pub(crate) fn keep(&self, key: &Bytes, lookup: &Lookup, now: Instant) {
        if lookup.outcome != MintOutcome::Hit || lookup.lease.is_some() || lookup.counter {
            return;
        }
        let seen = self.seen.get(key);
        if seen.is_none_or(|at| now.saturating_duration_since(at) >= SEEN_WINDOW) {
            self.seen.insert(key.clone(), now);
            return;
        }
        let fresh_until = if lookup.no_expiry {
            None
        } else {
            // memcached counts whole seconds: the value may be fresh for a little less than
            // it said; the copy is kept for what it said less one second.
            if lookup.ttl_seconds <= 1 {
                return;
            }
            Some(now + Duration::from_secs(lookup.ttl_seconds - 1))
        };
        let copy = Copy {
            lookup: lookup.clone(),
            read_at: now,
            fresh_until,
        };
        self.copies.insert(key.clone(), Arc::new(copy));
    }

    /// Drops the copy of `key` (a write through this replica).
    pub(crate) fn forget(&self, key: &Bytes) {
        self.copies.invalidate(key);
    }

    /// Entries and the bytes they are counted at.
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.copies.run_pending_tasks();
        (self.copies.entry_count(), self.copies.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ttl_seconds: u64) -> Lookup {
        Lookup {
            outcome: MintOutcome::Hit,
            value: Bytes::from_static(b"v"),
            ttl_seconds,
            grace_seconds: 30,
            ..Lookup::miss()
        }
    }

    /// Two fresh hits read by this replica: the first marks the key, the second keeps it.
    fn keep(hot: &HotCache, key: &Bytes, lookup: &Lookup, now: Instant) {
        hot.keep(key, lookup, now);
        hot.keep(key, lookup, now);
    }

    #[test]
    fn a_key_is_kept_once_this_replica_read_it_twice_within_a_second() {
        let hot = HotCache::new(Duration::from_millis(500), 1 << 20);
        let key = Bytes::from_static(b"k");
        let t0 = Instant::now();
        hot.keep(&key, &hit(60), t0);
        assert!(hot.get(&key, t0).is_none(), "read once");
        hot.keep(&key, &hit(60), t0 + Duration::from_millis(1500));
        assert!(hot.get(&key, t0).is_none(), "read again after the window");
        hot.keep(&key, &hit(60), t0 + Duration::from_millis(1900));
        assert!(hot.get(&key, t0 + Duration::from_millis(1900)).is_some());
    }

    #[test]
    fn copies_are_served_within_the_bound_and_before_the_soft_expiry() {
        let hot = HotCache::new(Duration::from_millis(500), 1 << 20);
        let key = Bytes::from_static(b"k");
        let t0 = Instant::now();
        keep(&hot, &key, &hit(60), t0);
        let served = hot
            .get(&key, t0 + Duration::from_millis(100))
            .expect("a copy");
        assert_eq!(served.outcome, MintOutcome::Hit);
        assert_eq!(served.ttl_seconds, 58);
        assert!(
            hot.get(&key, t0 + Duration::from_millis(500)).is_none(),
            "past the bound"
        );
        // A value about to go stale is never served past its soft expiry.
        let soon = Bytes::from_static(b"soon");
        keep(&hot, &soon, &hit(2), t0);
        assert!(hot.get(&soon, t0 + Duration::from_millis(400)).is_some());
        let short = HotCache::new(Duration::from_secs(10), 1 << 20);
        keep(&short, &soon, &hit(2), t0);
        assert!(short.get(&soon, t0 + Duration::from_millis(1001)).is_none());
        // Only fresh hits without a lease go in.
        let mut refresh = hit(60);
        refresh.outcome = MintOutcome::Refresh;
        keep(&hot, &Bytes::from_static(b"r"), &refresh, t0);
        assert!(hot.get(&Bytes::from_static(b"r"), t0).is_none());
        keep(&hot, &Bytes::from_static(b"one"), &hit(1), t0);
        assert!(hot.get(&Bytes::from_static(b"one"), t0).is_none());
    }

    #[test]
    fn a_write_drops_the_copy() {
        let hot = HotCache::new(Duration::from_secs(1), 1 << 20);
        let key = Bytes::from_static(b"k");
        let t0 = Instant::now();
        keep(&hot, &key, &hit(60), t0);
        hot.forget(&key);
        assert!(hot.get(&key, t0).is_none());
    }

    #[test]
    fn the_memory_stays_within_the_budget() {
        let hot = HotCache::new(Duration::from_secs(10), 1 << 20);
        let t0 = Instant::now();
        let mut big = hit(60);
        big.value = Bytes::from(vec![0u8; 10_000]);
        for i in 0..1000u32 {
            keep(&hot, &Bytes::from(i.to_string()), &big, t0);
        }
        let (entries, bytes) = hot.usage();
        assert!(bytes <= 1 << 20, "{bytes}");
        assert!(entries < 110, "{entries}");
    }
}
