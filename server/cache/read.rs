//! The read path: `Get` and `GetMany`. A read plans its first look at the store (cold-miss
//! protection, early refresh, the hot-key cache), asks the store, and decides from what it
//! finds ([`crate::core::mint`]); only a read that must hold the refresh election, or check an
//! election whose winner never stored (the refresh timeout), asks again. A peek only looks,
//! and gives back an election memcached handed it.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use super::batch::Batch;
use super::{CacheError, Call, MintCache, Plan, Read, ReadArgs};
use crate::config::MAX_BETA;
use crate::core::auth::{Effect, OpKind};
use crate::core::batch::{self as batched, answer_room, distinct_keys};
use crate::core::item::{Cas, GetOpts, ItemView, Win};
use crate::core::key::StoreKey;
use crate::core::mint::{self, Lookup, MintOutcome, Step};
use crate::store::budget::CallBudget;
use crate::store::{Store, StoreError};

impl<S: Store> MintCache<S> {
    /// The plan of a read in `call` with `args` (refused: a β out of range).
    fn plan(&self, call: &Call, args: &ReadArgs) -> Result<Plan, CacheError> {
        let protect = args.lease_on_miss.unwrap_or(self.settings.lease_on_miss);
        let space_beta = self.settings.beta(&call.space);
        let beta = match args.early_refresh_beta {
            None => space_beta,
            Some(beta) if beta.is_finite() && (0.0..=MAX_BETA).contains(&beta) => beta,
            Some(_) => return Err(CacheError::BadBeta),
        };
        let opts = GetOpts {
            vivify_for: protect.then_some(self.settings.fill_timeout_seconds),
            hot: self.hot.is_some() && !call.strong,
            ..GetOpts::default()
        };
        Ok(Plan {
            opts,
            protect,
            beta,
            timed: space_beta > 0.0,
        })
    }

    /// Reads a key, running the mint protocol; or, with `peek`, only looks at it.
    pub(crate) async fn get(
        &self,
        call: &Call,
        key: &[u8],
        args: ReadArgs,
    ) -> Result<Read, CacheError> {
        let key = self.check_key(key)?;
        let plan = self.plan(call, &args)?;
        if call.effect(OpKind::Read) == Effect::Miss {
            return Ok(Read::debug_miss());
        }
        let key = match self.store_key(call, key).await {
            Ok(key) => key,
            Err(e) => return self.read_failed(e),
        };
        if args.peek {
            let first = self.store.get(&key, GetOpts::default()).await;
            return self.finish_peek(&key, first).await;
        }
        if plan.opts.hot
            && let Some(hot) = &self.hot
            && let Some(lookup) = hot.get(key.stored(), self.clock.now())
        {
            self.metrics.hot_hit();
            self.metrics.mint_outcome(lookup.outcome);
            return Ok(Read {
                lookup,
                degraded: false,
            });
        }
        let first = self.store.get(&key, plan.opts).await;
        let read = self.finish_read(&key, first, plan).await?;
        if read.lookup.outcome == MintOutcome::Pending && !args.wait.is_zero() {
            let wait = args.wait.min(self.settings.max_wait);
            return self.wait_for_fill(&key, plan, wait).await;
        }
        Ok(read)
    }

    /// Turns a plain read into a peek's answer, giving back an election the read took.
    async fn finish_peek(
        &self,
        key: &StoreKey,
        first: Result<Option<ItemView>, StoreError>,
    ) -> Result<Read, CacheError> {
        let view = match first {
            Ok(view) => view,
            Err(e) => return self.read_failed(e),
        };
        let peek = mint::peek(view);
        if let Some(give_back) = peek.give_back {
            // Should this fail, the refresh timeout reopens the election later.
            if let Err(e) = self
                .store
                .invalidate(key, give_back.stale_ttl, Some(give_back.cas))
                .await
            {
                tracing::debug!(error = %e, "a peek cannot give back a refresh election");
            }
        }
        self.metrics.peek_outcome(peek.lookup.outcome);
        Ok(Read {
            lookup: peek.lookup,
            degraded: false,
        })
    }

    /// Turns a first read into an answer, holding the refresh election when it is needed.
    pub(super) async fn finish_read(
        &self,
        key: &StoreKey,
        first: Result<Option<ItemView>, StoreError>,
        plan: Plan,
    ) -> Result<Read, CacheError> {
        let view = match first {
            Ok(view) => view,
            Err(e) => return self.read_failed(e),
        };
        let mut decided = Decided::of(view.as_ref());
        let hot = view.as_ref().is_some_and(|v| v.hot);
        let mut lookup = match mint::decide_with(view, false, plan.protect, plan.early()) {
            Step::Done(lookup) => lookup,
            Step::Elect { recache_below } => {
                let elect = GetOpts {
                    recache_below: Some(recache_below),
                    ..plan.opts
                };
                let view = match self.store.get(key, elect).await {
                    Ok(view) => view,
                    Err(e) => return self.read_failed(e),
                };
                decided = Decided::of(view.as_ref());
                elected(view, plan.protect)
            }
        };
        if lookup.outcome == MintOutcome::Stale
            && let Some(reopened) = self.reopen_if_abandoned(key, decided, plan).await
        {
            lookup = reopened;
        }
        Ok(self.answer(key, lookup, plan, hot))
    }

    /// The answer of a read decided from the store: its lease says when it was issued, a
    /// fresh hit of a hot key is kept in the hot-key cache, and the outcome is counted.
    fn answer(&self, key: &StoreKey, mut lookup: Lookup, plan: Plan, hot: bool) -> Read {
        if plan.timed && lookup.lease.is_some() {
            lookup.issued_at_ms = Some(self.clock.unix_ms());
        }
        if hot
            && plan.opts.hot
            && let Some(cache) = &self.hot
        {
            cache.keep(key.stored(), &lookup, self.clock.now());
        }
        self.metrics.mint_outcome(lookup.outcome);
        Read {
            lookup,
            degraded: false,
        }
    }

    /// The refresh timeout: a stale value whose election was won by a caller that has not
    /// stored anything for `cache.refresh_timeout_seconds` (counted from when this replica
    /// first saw the election decided) gets a new election. The reopening is itself atomic in
    /// the store (an invalidation only if the item still has the CAS value seen), so across
    /// the fleet one reader reopens, and the store then elects one new winner. The answer to
    /// this read, if it took part in the new election.
    async fn reopen_if_abandoned(
        &self,
        key: &StoreKey,
        decided: Option<Decided>,
        plan: Plan,
    ) -> Option<Lookup> {
        let timeout = self.settings.refresh_timeout?;
        let decided = decided.filter(|d| d.won_by_another)?;
        let watched = (key.stored().clone(), decided.cas);
        let now = self.clock.now();
        let first_seen = self.elections_seen.get_with(watched.clone(), || now);
        if now.saturating_duration_since(first_seen) < timeout {
            return None;
        }
        self.elections_seen.invalidate(&watched);
        let stale_ttl = decided.ttl_remaining.unwrap_or(1).max(1);
        match self
            .store
            .invalidate(key, stale_ttl, Some(decided.cas))
            .await
        {
            Ok(true) => {
                tracing::debug!("refresh winner did not store in time: election reopened");
                let view = self.store.get(key, plan.opts).await.ok()?;
                Some(elected(view, plan.protect))
            }
            // Someone stored, or reopened it first.
            Ok(false) => None,
            Err(e) => {
                tracing::debug!(error = %e, "cannot reopen a refresh election");
                None
            }
        }
    }

    /// Reads many keys; one answer per key, in order. A bad key fails only itself. Each
    /// distinct key is read once, and the answer is built within one message
    /// (`server.max_message_bytes`): a value that does not fit fails its key alone
    /// ([`CacheError::NoRoom`]), and memcached's replies beyond what fits are never held.
    pub(crate) async fn get_many(
        &self,
        call: &Call,
        keys: &[Bytes],
        args: ReadArgs,
    ) -> Vec<Result<Read, CacheError>> {
        let plan = match self.plan(call, &args) {
            Ok(plan) => plan,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        let batch = Batch::new(keys, |key| self.check_key(key));
        if call.effect(OpKind::Read) == Effect::Miss {
            return batch.answer_all(|| Ok(Read::debug_miss()));
        }
        let generation = match self.generations.current(&call.space).await {
            Ok(generation) => generation,
            Err(e) => return batch.answer_all(|| self.read_failed(e.clone())),
        };
        let (distinct, of_position) = distinct_keys(batch.prepared().copied());
        let store_keys: Vec<StoreKey> = distinct
            .iter()
            .map(|key| call.space.store_key_at(generation, key))
            .collect();
        let room = answer_room(self.settings.max_message_bytes, keys);
        let budget = CallBudget::new(room);
        let answers = self.read_many(&store_keys, plan, args.peek, budget).await;
        batch.answer(fit_reads(&answers, &of_position, room))
    }

    /// Reads distinct store keys (see [`Self::get_many`]); one answer per key.
    async fn read_many(
        &self,
        store_keys: &[StoreKey],
        plan: Plan,
        peek: bool,
        budget: Arc<CallBudget>,
    ) -> Vec<Result<Read, CacheError>> {
        // A batch neither reads nor fills the hot-key cache.
        let plan = Plan {
            opts: GetOpts {
                hot: false,
                ..plan.opts
            },
            ..plan
        };
        if peek {
            let firsts = self
                .store
                .get_many(store_keys, GetOpts::default(), Some(budget))
                .await;
            return join_all(
                store_keys
                    .iter()
                    .zip(firsts)
                    .map(|(key, first)| self.finish_peek(key, first)),
            )
            .await;
        }
        let firsts = self
            .store
            .get_many(store_keys, plan.opts, Some(budget))
            .await;
        // Most answers need nothing more from the store: decide them here, and hold elections
        // (or check abandoned ones) only for the keys that need them.
        let mut answers = Vec::with_capacity(firsts.len());
        let mut later = Vec::new();
        for (i, first) in firsts.into_iter().enumerate() {
            match self.decide_at_once(&store_keys[i], first, plan) {
                Ok(read) => answers.push(Some(read)),
                Err(first) => {
                    answers.push(None);
                    later.push((i, first));
                }
            }
        }
        let finished = join_all(later.into_iter().map(|(i, first)| async move {
            (i, self.finish_read(&store_keys[i], first, plan).await)
        }))
        .await;
        for (i, read) in finished {
            answers[i] = Some(read);
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Ok(Read::debug_miss())))
            .collect()
    }

    /// The answer to a first read when it needs nothing more from the store (no election to
    /// hold, no abandoned one to check); else the read back, for [`Self::finish_read`].
    #[allow(clippy::result_large_err)]
    fn decide_at_once(
        &self,
        key: &StoreKey,
        first: Result<Option<ItemView>, StoreError>,
        plan: Plan,
    ) -> Result<Result<Read, CacheError>, Result<Option<ItemView>, StoreError>> {
        let view = match first {
            Ok(view) => view,
            Err(e) => return Ok(self.read_failed(e)),
        };
        let lost = view.as_ref().is_some_and(|v| v.win == Some(Win::Lost));
        match mint::decide_with(view.clone(), false, plan.protect, plan.early()) {
            Step::Done(lookup)
                if !(lookup.outcome == MintOutcome::Stale
                    && lost
                    && self.settings.refresh_timeout.is_some()) =>
            {
                Ok(Ok(self.answer(key, lookup, plan, false)))
            }
            _ => Err(Ok(view)),
        }
    }

    fn read_failed(&self, e: StoreError) -> Result<Read, CacheError> {
        if matches!(e, StoreError::NotKept { .. }) {
            // The value is there: never answered as a miss because the answer had no room.
            return Err(CacheError::from(e));
        }
        if self.settings.fail_open {
            self.metrics.degraded_read();
            // The memcached server logs its failures, rate-limited; one line per call would
            // flood the logs during an outage.
            tracing::debug!(error = %e, "read failed, answering as a miss");
            Ok(Read {
                lookup: Lookup::miss(),
                degraded: true,
            })
        } else {
            Err(CacheError::from(e))
        }
    }
}

/// The election state of a read that was decided: enough to reopen it later.
#[derive(Debug, Clone, Copy)]
struct Decided {
    cas: Cas,
    ttl_remaining: Option<u64>,
    /// Another reader holds the election (`Z`).
    won_by_another: bool,
}

impl Decided {
    fn of(view: Option<&ItemView>) -> Option<Self> {
        view.map(|v| Self {
            cas: Cas {
                instance: v.instance,
                value: v.cas,
            },
            ttl_remaining: v.ttl_remaining,
            won_by_another: v.win == Some(Win::Lost),
        })
    }
}

/// The answer to a read that held an election: final.
fn elected(view: Option<ItemView>, protect: bool) -> Lookup {
    match mint::decide(view, true, protect) {
        Step::Done(lookup) => lookup,
        // `decide` always answers an elected read.
        Step::Elect { .. } => Lookup::miss(),
    }
}

/// The answers of a batch's positions from those of its distinct keys, within `room` bytes
/// of values (see [`batched::fit_answers`]).
pub(crate) fn fit_reads(
    answers: &[Result<Read, CacheError>],
    of_position: &[usize],
    room: usize,
) -> Vec<Result<Read, CacheError>> {
    batched::fit_answers(
        answers,
        of_position,
        room,
        |read| read.lookup.value.len(),
        |size| CacheError::NoRoom { size },
    )
}
