//! Key-space generations: `Flush` moves a key space to a new generation on every server, so its
//! keys get new names and the old ones are never read again. Every call needs its key space's
//! current generation to name its keys; a replica keeps a copy of each, trusted for
//! `cache.flush_sync_ms` and renewed in the background before then, so that under steady
//! traffic no call waits for it. What a generation item holds, and how copies that fell behind
//! are repaired, is pure ([`crate::core::generation`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::core::generation::{generation_of, generation_repairs, generation_write};
use crate::core::item::GetOpts;
use crate::core::key::KeySpace;
use crate::store::{Store, StoreError};

/// Most key spaces a replica keeps the generation of at once.
const MAX_KEY_SPACES: u64 = 10_000;
/// How long a replica remembers the generation of a key space nobody calls.
const KNOWN_IDLE: Duration = Duration::from_secs(600);
/// Longest a key space counts as being renewed: a renewal ends within memcached's timeouts, so
/// this only matters should one never end (the runtime shutting down under it).
const RENEWAL_MARK: Duration = Duration::from_secs(60);

/// A key space's generation as this replica knows it.
#[derive(Debug, Clone, Copy)]
struct Known {
    generation: u64,
    read_at: Instant,
}

/// The generations of the key spaces in use, as this replica knows them. Clones share them.
pub(super) struct Generations<S> {
    store: Arc<S>,
    clock: Clock,
    /// How long a copy is trusted (`cache.flush_sync_ms`; zero: never).
    flush_sync: Duration,
    /// Reads of a key space's generation that calls wait for, one at a time per key space
    /// (an entry lives only until its waiters have it).
    reads: moka::future::Cache<KeySpace, u64>,
    /// The generation of each key space in use, and when it was read; trusted for
    /// `flush_sync`, then served while a read in the background renews it.
    known: moka::sync::Cache<KeySpace, Known>,
    /// Key spaces whose generation is being renewed in the background.
    renewing: moka::sync::Cache<KeySpace, ()>,
}

impl<S> Clone for Generations<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            clock: self.clock.clone(),
            flush_sync: self.flush_sync,
            reads: self.reads.clone(),
            known: self.known.clone(),
            renewing: self.renewing.clone(),
        }
    }
}

impl<S: Store> Generations<S> {
    /// The generations of key spaces stored in `store`, copies trusted for `flush_sync`.
    pub(super) fn new(store: Arc<S>, flush_sync: Duration, clock: Clock) -> Self {
        Self {
            store,
            clock,
            flush_sync,
            reads: moka::future::Cache::builder()
                .max_capacity(MAX_KEY_SPACES)
                .build(),
            known: moka::sync::Cache::builder()
                .max_capacity(MAX_KEY_SPACES)
                .time_to_idle(KNOWN_IDLE)
                .build(),
            renewing: moka::sync::Cache::builder()
                .max_capacity(MAX_KEY_SPACES)
                .time_to_live(RENEWAL_MARK)
                .build(),
        }
    }

    /// The current generation of a key space: this replica's copy while it is younger than
    /// `cache.flush_sync_ms`, else read from the backend (one read per key space at a time,
    /// however many calls wait for it). A copy past half its time is renewed by a read in the
    /// background while it goes on serving, so under steady traffic no call waits for the
    /// generation, and a server that hangs delays only that renewal (by up to
    /// `memcached.timeout_ms`), not the calls whose keys live on other servers.
    pub(super) async fn current(&self, space: &KeySpace) -> Result<u64, StoreError> {
        let sync = self.flush_sync;
        if sync.is_zero() {
            return read_generation(&*self.store, space, 0).await;
        }
        let known = self.known.get(space);
        if let Some(known) = known {
            let age = self.clock.now().saturating_duration_since(known.read_at);
            if age < sync {
                if age >= sync / 2 {
                    self.renew(space, known.generation);
                }
                return Ok(known.generation);
            }
        }
        let floor = known.map_or(0, |k| k.generation);
        self.read_shared(space, floor).await
    }

    /// Renews a key space's generation in the background, once at a time per key space.
    /// This replica's copy counts as one more copy of the generation: servers that lost it
    /// (all of them, after a restart) get it back, so replicas keep agreeing.
    fn renew(&self, space: &KeySpace, floor: u64) {
        if !self.renewing.entry(space.clone()).or_insert(()).is_fresh() {
            return;
        }
        let generations = self.clone();
        let space = space.clone();
        tokio::spawn(async move {
            // A call that finds the copy expired meanwhile waits for this same read.
            if let Err(e) = generations.read_shared(&space, floor).await {
                // The copy keeps serving until it expires; a later call tries again.
                tracing::debug!(error = %e, "cannot renew a key space generation");
            }
            generations.renewing.invalidate(&space);
        });
    }

    /// Reads a key space's generation for everyone who needs it now: the calls that wait, and
    /// the background renewal, share one read per key space; then this replica knows it.
    async fn read_shared(&self, space: &KeySpace, floor: u64) -> Result<u64, StoreError> {
        let generation = self
            .reads
            .try_get_with(space.clone(), read_generation(&*self.store, space, floor))
            .await
            .map_err(|e| (*e).clone())?;
        let generation = self.remember(space, generation);
        // Known now: the next read is a new one.
        self.reads.invalidate(space).await;
        Ok(generation)
    }

    /// Records a generation read for a key space, never going back to an older one (a read that
    /// started before a `Flush` of this replica may end after it), and returns the one now
    /// known.
    fn remember(&self, space: &KeySpace, generation: u64) -> u64 {
        let read_at = self.clock.now();
        let entry = self.known.entry(space.clone()).and_compute_with(|current| {
            let generation =
                current.map_or(generation, |c| c.into_value().generation.max(generation));
            moka::ops::compute::Op::Put(Known {
                generation,
                read_at,
            })
        });
        match entry {
            moka::ops::compute::CompResult::Inserted(e)
            | moka::ops::compute::CompResult::ReplacedWith(e) => e.into_value().generation,
            _ => generation,
        }
    }

    /// Moves a key space to a new generation on every server. This replica uses it at once
    /// if any server took it; others within `cache.flush_sync_ms`. An error if some server did
    /// not take it: those that did already hide the old keys from every replica (replicas take
    /// the highest generation they find), and the caller retries.
    pub(super) async fn advance(&self, space: &KeySpace) -> Result<(), StoreError> {
        let current = read_generation(&*self.store, space, 0).await?;
        let next = current.saturating_add(1).max(self.clock.unix_ms());
        let results = self
            .store
            .set_replicated(&space.generation_key(), &generation_write(next))
            .await;
        let mut failure = None;
        let mut stored = false;
        for result in results {
            match result {
                Ok(_) => stored = true,
                Err(e) => failure = Some(e),
            }
        }
        if stored {
            self.remember(space, next);
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Reads a key space's generation from every server and takes the highest (and `floor`, a
/// copy this replica holds): a `Flush` that reached only some servers still counts, and a
/// server that lost its copy (restart, eviction) or missed a flush is given the current one
/// back.
async fn read_generation<S: Store>(
    store: &S,
    space: &KeySpace,
    floor: u64,
) -> Result<u64, StoreError> {
    let key = space.generation_key();
    let answers = store.get_replicated(&key, GetOpts::default()).await;
    let mut seen = Vec::with_capacity(answers.len());
    let mut failure = None;
    for answer in &answers {
        match answer {
            Ok(view) => seen.push(view.as_ref().map_or(0, generation_of)),
            Err(e) => failure = Some(e.clone()),
        }
    }
    let Some(current) = seen.iter().copied().max().map(|g| g.max(floor)) else {
        return Err(failure.unwrap_or_else(|| StoreError::Protocol {
            node: "-".to_owned(),
            reason: "no server to read a generation from".to_owned(),
        }));
    };
    let repairs = generation_repairs(&answers, current);
    if repairs.iter().any(Option::is_some) {
        // Best effort: the next reader repairs what this one could not.
        let done = store.set_each(&key, &repairs).await;
        if let Some(Some(Err(e))) = done.into_iter().find(|r| matches!(r, Some(Err(_)))) {
            tracing::debug!(error = %e, "cannot repair a key space generation");
        }
    }
    Ok(current)
}
