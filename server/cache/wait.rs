//! Reads that wait for a fill (`GetRequest.wait_ms`): a read that would answer `PENDING` is
//! held until the value another caller is computing lands, told at once when it is stored
//! through this replica, else seen by a look at the store shared by the key's waiters. A
//! filler that gives up passes its lease to one waiter; a failed fill is never a value.
//!
//! Waits are measured on tokio's clock, not the server's [`Clock`](crate::clock::Clock): the
//! call's deadline bounds them, and a wait must end with it even when a test holds the
//! server's clock still.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{CacheError, MintCache, Plan, Read};
use crate::config::CacheSettings;
use crate::core::item::{GetOpts, ItemView};
use crate::core::key::StoreKey;
use crate::core::mint::{self, Lookup, MintOutcome, Step};
use crate::core::write::is_fill_under_way;
use crate::store::{Store, StoreError};

/// Most keys with readers waiting for their fill at once.
const MAX_WAITED_FILLS: u64 = 100_000;

/// What a fill brought to readers waiting on this replica.
#[derive(Debug, Clone)]
pub(super) enum FillEvent {
    /// The value was stored through this replica, as this item.
    Stored(ItemView),
    /// The filler gave its lease up: one waiter may fill instead.
    Released,
}

/// The readers waiting for fills on this replica.
pub(super) struct Fills {
    /// Reads waiting for a fill, by stored key: told at once when it lands through here.
    watchers: moka::sync::Cache<Bytes, Arc<watch::Sender<Option<FillEvent>>>>,
    /// The last look at the store of a key being waited for, shared by its waiters.
    polls: moka::future::Cache<Bytes, Arc<Result<Option<ItemView>, StoreError>>>,
}

impl Fills {
    /// Room for the waiters of `settings`: a key's watch lives while it is waited for, a
    /// look at the store for `cache.wait_poll_ms`.
    pub(super) fn new(settings: &CacheSettings) -> Self {
        Self {
            watchers: moka::sync::Cache::builder()
                .max_capacity(MAX_WAITED_FILLS)
                .time_to_idle(settings.max_wait.max(Duration::from_secs(1)) * 2)
                .build(),
            polls: moka::future::Cache::builder()
                .max_capacity(MAX_WAITED_FILLS)
                .time_to_live(settings.wait_poll)
                .build(),
        }
    }

    /// Tells readers waiting on this replica for `key`'s fill what happened to it.
    pub(super) fn tell(&self, key: &StoreKey, event: FillEvent) {
        if let Some(watch) = self.watchers.get(key.stored()) {
            watch.send_replace(Some(event));
        }
    }
}

impl<S: Store> MintCache<S> {
    /// Holds a read that would answer `PENDING` until the fill lands (told at once when it is
    /// stored through this replica; else seen by a look at the store every
    /// `cache.wait_poll_ms`, shared by the waiters of the key), or for `wait`. If the filler
    /// gives up, each waiter reads again: the store elects one to fill (`MISS` with a lease),
    /// the others go on waiting. A failed fill is never a value: only what was stored is.
    pub(super) async fn wait_for_fill(
        &self,
        key: &StoreKey,
        plan: Plan,
        wait: Duration,
    ) -> Result<Read, CacheError> {
        let until = Instant::now() + wait;
        let watch = self
            .fills
            .watchers
            .get_with(key.stored().clone(), || Arc::new(watch::channel(None).0));
        let mut events = watch.subscribe();
        let pending = || {
            self.metrics.mint_outcome(MintOutcome::Pending);
            Ok(Read {
                lookup: Lookup::pending(),
                degraded: false,
            })
        };
        loop {
            let now = Instant::now();
            if now >= until {
                return pending();
            }
            let look_at = (now + self.settings.wait_poll).min(until);
            let event = match tokio::time::timeout_at(look_at, events.changed()).await {
                Ok(Ok(())) => events.borrow_and_update().clone(),
                _ => None,
            };
            let released = matches!(event, Some(FillEvent::Released));
            if let Some(FillEvent::Stored(view)) = event
                && let Step::Done(lookup) = mint::decide_with(Some(view), false, plan.protect, None)
                && lookup.outcome == MintOutcome::Hit
            {
                self.metrics.mint_outcome(lookup.outcome);
                return Ok(Read {
                    lookup,
                    degraded: false,
                });
            }
            if Instant::now() >= until {
                return pending();
            }
            // A look at the store (shared with the key's other waiters here): while the fill
            // is still under way there is nothing to do; else this waiter reads for itself.
            let seen = self
                .fills
                .polls
                .get_with(key.stored().clone(), async {
                    Arc::new(self.store.get(key, GetOpts::default()).await)
                })
                .await;
            let filling = matches!(&*seen, Ok(Some(view)) if is_fill_under_way(view));
            if filling && !released {
                continue;
            }
            let again = self.store.get(key, plan.opts).await;
            let read = self.finish_read(key, again, plan).await?;
            if read.lookup.outcome != MintOutcome::Pending || read.degraded {
                return Ok(read);
            }
        }
    }
}
