//! The mint cache: validates requests, derives keys, and runs the mint protocol over a
//! [`Store`]. Pure decisions live in [`crate::core`]; this module only sequences store calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::sync::watch;

use crate::config::CacheSettings;
use crate::metrics::Metrics;

use crate::core::auth::{self, DebugMode, Effect, OpKind};
use crate::core::envelope;
use crate::core::item::{
    Cas, Create, GetOpts, IncrStatus, ItemView, Win, Write, WriteMode, WriteStatus,
};
use crate::core::key::{KeySpace, StoreKey};
use crate::core::lease::{LeaseToken, LeaseTokenError};
use crate::core::mint::{self, Early, Lookup, MintOutcome, Step};
use crate::core::ttl::{self, Expiry, TtlError};
use crate::hot::HotCache;
use crate::store::budget::CallBudget;
use crate::store::{Refusal, Store, StoreError};

/// Why a cache call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CacheError {
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is longer than `limits.max_key_bytes`.
    #[error("key is {len} bytes, the limit is {max} (limits.max_key_bytes)")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than `limits.max_value_bytes`.
    #[error("value is {len} bytes, the limit is {max} (limits.max_value_bytes)")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A ttl or grace is out of range.
    #[error("{field} {source}")]
    Ttl {
        /// `ttl_seconds` or `grace_seconds`.
        field: &'static str,
        /// What is wrong.
        source: TtlError,
    },
    /// A lease token is malformed.
    #[error(transparent)]
    Lease(#[from] LeaseTokenError),
    /// `early_refresh_beta` is not a number in range.
    #[error("early_refresh_beta must be a number in 0..={max}", max = crate::config::MAX_BETA)]
    BadBeta,
    /// A field does not go with the others.
    #[error("`{field}` {reason}")]
    Field {
        /// The request field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `Increment` on a missing counter without an initial value.
    #[error("counter does not exist (pass initial_value to create it)")]
    NoCounter,
    /// `Increment` on a value that is not a counter.
    #[error("the key holds a value that is not a counter")]
    NotACounter,
    /// `Increment` while the cache is off for the call.
    #[error("the cache is off for this call (x-cache-debug: off): Increment cannot answer")]
    CacheOff,
    /// The backend failed a write (or a read, when reads fail closed).
    #[error("cache backend unavailable")]
    Unavailable(#[source] StoreError),
    /// A value was not read: the answer would not fit in one message, or every answer being
    /// sent at once already holds what the server allows. (Short: a batch may repeat it for
    /// thousands of keys, and the answer must still fit in one message.)
    #[error(
        "{size}-byte value not sent: no room left (server.max_message_bytes, \
         server.max_buffered_reply_bytes); retry it alone or in a smaller batch"
    )]
    NoRoom {
        /// The value's size.
        size: usize,
    },
    /// A memcached server refused this one item or command; it is up and serves other keys.
    #[error("memcached {node} refused the command: {refusal}")]
    Refused {
        /// The server's address.
        node: String,
        /// What it refused.
        refusal: Refusal,
    },
}

impl From<StoreError> for CacheError {
    /// A refusal of one command is the item's problem, not the backend's; every other failure
    /// makes the backend unavailable for the call.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused { node, refusal } => Self::Refused { node, refusal },
            StoreError::NotKept { size, .. } => Self::NoRoom { size },
            other => Self::Unavailable(other),
        }
    }
}

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

/// What a fill brought to readers waiting on this replica.
#[derive(Debug, Clone)]
enum FillEvent {
    /// The value was stored through this replica, as this item.
    Stored(ItemView),
    /// The filler gave its lease up: one waiter may fill instead.
    Released,
}

impl Call {
    fn effect(&self, op: OpKind) -> Effect {
        auth::effect(self.debug, op)
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

/// A batched call split in two: the items that passed validation (with their positions), and
/// one answer slot per item, already holding the error of each item that did not. One bad item
/// fails only itself.
struct Batch<P, T> {
    slots: Vec<Option<Result<T, CacheError>>>,
    valid: Vec<(usize, P)>,
}

impl<P, T> Batch<P, T> {
    fn new<I>(
        items: impl IntoIterator<Item = I>,
        mut prepare: impl FnMut(I) -> Result<P, CacheError>,
    ) -> Self {
        let mut batch = Self {
            slots: Vec::new(),
            valid: Vec::new(),
        };
        for item in items {
            match prepare(item) {
                Ok(prepared) => {
                    batch.valid.push((batch.slots.len(), prepared));
                    batch.slots.push(None);
                }
                Err(e) => batch.slots.push(Some(Err(e))),
            }
        }
        batch
    }

    /// The prepared items, in order.
    fn prepared(&self) -> impl Iterator<Item = &P> {
        self.valid.iter().map(|(_, p)| p)
    }

    /// Answers the valid items, in order.
    fn answer(
        mut self,
        answers: impl IntoIterator<Item = Result<T, CacheError>>,
    ) -> Vec<Result<T, CacheError>> {
        for ((pos, _), answer) in self.valid.iter().zip(answers) {
            self.slots[*pos] = Some(answer);
        }
        self.slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| unreachable!("every valid item gets an answer")))
            .collect()
    }

    /// Answers every valid item the same way (debug modes).
    fn answer_all(self, answer: impl Fn() -> Result<T, CacheError>) -> Vec<Result<T, CacheError>> {
        let answers: Vec<_> = self.valid.iter().map(|_| answer()).collect();
        self.answer(answers)
    }
}

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
/// Most stale items a replica watches for a refresh winner that never stores.
const MAX_WATCHED_ELECTIONS: u64 = 100_000;

/// The versioned mint cache over a store.
pub(crate) struct MintCache<S> {
    store: Arc<S>,
    settings: CacheSettings,
    metrics: Metrics,
    /// Reads of a key space's generation that calls wait for, one at a time per key space
    /// (an entry lives only until its waiters have it).
    generations: moka::future::Cache<KeySpace, u64>,
    /// The generation of each key space in use, and when it was read; trusted for
    /// `settings.flush_sync`, then served while a read in the background renews it.
    known: moka::sync::Cache<KeySpace, Known>,
    /// Key spaces whose generation is being renewed in the background.
    renewing: moka::sync::Cache<KeySpace, ()>,
    /// When this replica first saw each decided election (stored key, CAS value) still
    /// unanswered: the basis of the refresh timeout.
    elections_seen: moka::sync::Cache<(Bytes, Cas), Instant>,
    /// Reads waiting for a fill, by stored key: told at once when it lands through here.
    fills: moka::sync::Cache<Bytes, Arc<watch::Sender<Option<FillEvent>>>>,
    /// The last look at the store of a key being waited for, shared by its waiters.
    fill_polls: moka::future::Cache<Bytes, Arc<Result<Option<ItemView>, StoreError>>>,
    /// The hot-key cache, when on.
    hot: Option<HotCache>,
}

/// Most keys with readers waiting for their fill at once.
const MAX_WAITED_FILLS: u64 = 100_000;

impl<S: Store> MintCache<S> {
    /// A mint cache over `store`, recording read outcomes into `metrics`.
    pub(crate) fn new(store: Arc<S>, settings: CacheSettings, metrics: Metrics) -> Self {
        let generations = moka::future::Cache::builder()
            .max_capacity(MAX_KEY_SPACES)
            .build();
        let watch = settings
            .refresh_timeout
            .map_or(Duration::from_secs(1), |t| t * 2);
        let elections_seen = moka::sync::Cache::builder()
            .max_capacity(MAX_WATCHED_ELECTIONS)
            .time_to_live(watch)
            .build();
        let known = moka::sync::Cache::builder()
            .max_capacity(MAX_KEY_SPACES)
            .time_to_idle(KNOWN_IDLE)
            .build();
        let renewing = moka::sync::Cache::builder()
            .max_capacity(MAX_KEY_SPACES)
            .time_to_live(RENEWAL_MARK)
            .build();
        let fills = moka::sync::Cache::builder()
            .max_capacity(MAX_WAITED_FILLS)
            .time_to_idle(settings.max_wait.max(Duration::from_secs(1)) * 2)
            .build();
        let fill_polls = moka::future::Cache::builder()
            .max_capacity(MAX_WAITED_FILLS)
            .time_to_live(settings.wait_poll)
            .build();
        let hot = settings
            .hot_cache
            .as_ref()
            .map(|h| HotCache::new(h.max_staleness, h.max_bytes));
        Self {
            store,
            settings,
            metrics,
            generations,
            known,
            renewing,
            elections_seen,
            fills,
            fill_polls,
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

    /// The current generation of a key space: this replica's copy while it is younger than
    /// `cache.flush_sync_ms`, else read from the backend (one read per key space at a time,
    /// however many calls wait for it). A copy past half its time is renewed by a read in the
    /// background while it goes on serving, so under steady traffic no call waits for the
    /// generation, and a server that hangs delays only that renewal (by up to
    /// `memcached.timeout_ms`), not the calls whose keys live on other servers.
    async fn generation(&self, space: &KeySpace) -> Result<u64, StoreError> {
        let sync = self.settings.flush_sync;
        if sync.is_zero() {
            return read_generation(&*self.store, space, 0).await;
        }
        let known = self.known.get(space);
        if let Some(known) = known {
            let age = known.read_at.elapsed();
            if age < sync {
                if age >= sync / 2 {
                    self.renew_generation(space, known.generation);
                }
                return Ok(known.generation);
            }
        }
        let floor = known.map_or(0, |k| k.generation);
        read_shared(&*self.store, &self.generations, &self.known, space, floor).await
    }

    /// Renews a key space's generation in the background, once at a time per key space.
    /// This replica's copy counts as one more copy of the generation: servers that lost it
    /// (all of them, after a restart) get it back, so replicas keep agreeing.
    fn renew_generation(&self, space: &KeySpace, floor: u64) {
        if !self.renewing.entry(space.clone()).or_insert(()).is_fresh() {
            return;
        }
        let store = Arc::clone(&self.store);
        let generations = self.generations.clone();
        let known = self.known.clone();
        let renewing = self.renewing.clone();
        let space = space.clone();
        tokio::spawn(async move {
            // A call that finds the copy expired meanwhile waits for this same read.
            if let Err(e) = read_shared(&*store, &generations, &known, &space, floor).await {
                // The copy keeps serving until it expires; a later call tries again.
                tracing::debug!(error = %e, "cannot renew a key space generation");
            }
            renewing.invalidate(&space);
        });
    }

    /// The store key of a checked key in the call's key space, at its current generation.
    async fn store_key(&self, call: &Call, key: &[u8]) -> Result<StoreKey, StoreError> {
        let generation = self.generation(&call.space).await?;
        Ok(call.space.store_key_at(generation, key))
    }

    /// The plan of a read in `call` with `args` (refused: a β out of range).
    fn plan(&self, call: &Call, args: &ReadArgs) -> Result<Plan, CacheError> {
        let protect = args.lease_on_miss.unwrap_or(self.settings.lease_on_miss);
        let space_beta = self.settings.beta(&call.space);
        let beta = match args.early_refresh_beta {
            None => space_beta,
            Some(beta) if beta.is_finite() && (0.0..=crate::config::MAX_BETA).contains(&beta) => {
                beta
            }
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
            && let Some(lookup) = hot.get(key.stored(), Instant::now())
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
            let until = Instant::now() + args.wait.min(self.settings.max_wait);
            return self.wait_for_fill(&key, plan, until).await;
        }
        Ok(read)
    }

    /// Holds a read that would answer `PENDING` until the fill lands (told at once when it is
    /// stored through this replica; else seen by a look at the store every
    /// `cache.wait_poll_ms`, shared by the waiters of the key), or until `until`. If the filler
    /// gives up, each waiter reads again: the store elects one to fill (`MISS` with a lease),
    /// the others go on waiting. A failed fill is never a value: only what was stored is.
    async fn wait_for_fill(
        &self,
        key: &StoreKey,
        plan: Plan,
        until: Instant,
    ) -> Result<Read, CacheError> {
        let watch = self
            .fills
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
            let event = match tokio::time::timeout_at(look_at.into(), events.changed()).await {
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
                .fill_polls
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

    /// Tells readers waiting on this replica for `key`'s fill what happened to it.
    fn tell_waiters(&self, key: &StoreKey, event: FillEvent) {
        if let Some(watch) = self.fills.get(key.stored()) {
            watch.send_replace(Some(event));
        }
    }

    /// After a write of `key` through this replica: its hot copy is dropped.
    fn written(&self, key: &StoreKey) {
        if let Some(hot) = &self.hot {
            hot.forget(key.stored());
        }
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
    async fn finish_read(
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
            lookup.issued_at_ms = Some(unix_millis());
        }
        if hot
            && plan.opts.hot
            && let Some(cache) = &self.hot
        {
            cache.keep(key.stored(), &lookup, Instant::now());
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
        let first_seen = self.elections_seen.get_with(watched.clone(), Instant::now);
        if first_seen.elapsed() < timeout {
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
        let generation = match self.generation(&call.space).await {
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
        batch.answer(fit_answers(&answers, &of_position, room))
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

    /// Resolves requested seconds (0 = `default`), naming the field when they are refused.
    fn resolve(
        &self,
        field: &'static str,
        requested: i64,
        default: u64,
    ) -> Result<u64, CacheError> {
        ttl::resolve_seconds(requested, default).map_err(|source| CacheError::Ttl { field, source })
    }

    /// The lifetime a write or touch asks for: never, or `ttl_seconds` (0 = the default).
    fn expiry(&self, ttl_seconds: i64, no_expiry: bool) -> Result<Expiry, CacheError> {
        if no_expiry {
            if ttl_seconds != 0 {
                return Err(CacheError::Field {
                    field: "ttl_seconds",
                    reason: "must be 0 when no_expiry is set",
                });
            }
            return Ok(Expiry::Never);
        }
        self.resolve(
            "ttl_seconds",
            ttl_seconds,
            self.settings.default_ttl_seconds,
        )
        .map(Expiry::After)
    }

    /// Builds the write for a store request. With `timed`, a value records how long its
    /// recomputation took (reported by the caller, or measured from its lease).
    fn write(&self, args: &SetArgs, mode: WriteMode, timed: bool) -> Result<Write, CacheError> {
        if args.value.len() > self.settings.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: args.value.len(),
                max: self.settings.max_value_bytes,
            });
        }
        let ttl = self.expiry(args.ttl_seconds, args.no_expiry)?;
        if args.counter {
            return counter_write(args, ttl, mode);
        }
        let grace = if args.no_grace {
            if args.grace_seconds != 0 {
                return Err(CacheError::Field {
                    field: "grace_seconds",
                    reason: "must be 0 when no_grace is set",
                });
            }
            0
        } else {
            self.resolve(
                "grace_seconds",
                args.grace_seconds,
                self.settings.default_grace_seconds,
            )?
        };
        if grace > envelope::MAX_GRACE_SECONDS {
            return Err(CacheError::Ttl {
                field: "grace_seconds",
                source: TtlError::TooLong {
                    got: args.grace_seconds,
                    max: envelope::MAX_GRACE_SECONDS,
                },
            });
        }
        let lease = LeaseToken::parse_issued(&args.lease_token)?;
        let (mode, cas) = match lease.map(|(token, _)| token) {
            None => (mode, None),
            Some(LeaseToken::Cas(cas)) => (mode, Some(cas)),
            Some(LeaseToken::Absent) => (WriteMode::Add, None),
        };
        let issued = lease.and_then(|(_, issued)| issued);
        let recompute_ms = timed
            .then(|| recompute_ms(args.recompute_ms, issued, unix_millis()))
            .flatten();
        let (value, client_flags) = envelope::encode(&args.value, grace, args.flags, recompute_ms);
        Ok(Write {
            value,
            client_flags,
            ttl: ttl::hard_ttl(ttl, grace),
            mode,
            cas,
        })
    }

    /// Stores a value; `false` when a lease token was outdated.
    pub(crate) async fn set(&self, call: &Call, args: &SetArgs) -> Result<bool, CacheError> {
        self.store_with(call, args, WriteMode::Set)
            .await
            .map(|(stored, _)| stored)
    }

    /// Stores a value only if the key holds none; whether it stored, and a lease naming the
    /// item it stored (for a `Delete` of exactly that item: a lock's release).
    pub(crate) async fn add(
        &self,
        call: &Call,
        args: &SetArgs,
    ) -> Result<(bool, Option<LeaseToken>), CacheError> {
        self.store_with(call, args, WriteMode::Add).await
    }

    async fn store_with(
        &self,
        call: &Call,
        args: &SetArgs,
        mode: WriteMode,
    ) -> Result<(bool, Option<LeaseToken>), CacheError> {
        let key = self.check_key(&args.key)?;
        let write = self.write(args, mode, self.settings.beta(&call.space) > 0.0)?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok((false, None));
        }
        let key = self.store_key(call, key).await.map_err(CacheError::from)?;
        let (status, cas) = if mode == WriteMode::Add {
            self.store.set_cas(&key, &write).await
        } else {
            self.store
                .set(&key, &write)
                .await
                .map(|status| (status, None))
        }
        .map_err(CacheError::from)?;
        self.written(&key);
        let stored = status == WriteStatus::Stored;
        if stored {
            self.tell_waiters(&key, FillEvent::Stored(stored_view(&write)));
        }
        Ok((stored, cas.map(LeaseToken::Cas)))
    }

    /// Stores many values; one answer per item, in order. A bad item fails only itself.
    pub(crate) async fn set_many(
        &self,
        call: &Call,
        items: &[SetArgs],
    ) -> Vec<Result<bool, CacheError>> {
        let timed = self.settings.beta(&call.space) > 0.0;
        let batch = Batch::new(items, |args| {
            Ok((
                self.check_key(&args.key)?,
                self.write(args, WriteMode::Set, timed)?,
            ))
        });
        if call.effect(OpKind::Write) == Effect::Skip {
            return batch.answer_all(|| Ok(false));
        }
        let generation = match self.generation(&call.space).await {
            Ok(generation) => generation,
            Err(e) => return batch.answer_all(|| Err(CacheError::from(e.clone()))),
        };
        let writes: Vec<(StoreKey, Write)> = batch
            .prepared()
            .map(|(key, write)| (call.space.store_key_at(generation, key), write.clone()))
            .collect();
        let results = self.store.set_many(&writes).await;
        for ((key, write), result) in writes.iter().zip(&results) {
            self.written(key);
            if matches!(result, Ok(WriteStatus::Stored)) {
                self.tell_waiters(key, FillEvent::Stored(stored_view(write)));
            }
        }
        batch.answer(results.into_iter().map(|result| {
            result
                .map(|st| st == WriteStatus::Stored)
                .map_err(CacheError::from)
        }))
    }

    /// Removes a key; whether it held a value. With a lease (from a read's `REFRESH` or
    /// `MISS`, or an `Add`), only the item the lease names: a lock's holder releases only its
    /// own lock, and a filler that gives up releases its fill to one waiting reader.
    pub(crate) async fn delete(
        &self,
        call: &Call,
        key: &[u8],
        lease_token: &[u8],
    ) -> Result<bool, CacheError> {
        let lease = LeaseToken::parse(lease_token)?;
        let key = self.write_key(call, key).await?;
        let Some(key) = key else {
            return Ok(false);
        };
        let deleted = match lease {
            None => self.store.delete(&key).await,
            Some(LeaseToken::Cas(cas)) => self.store.delete_if(&key, cas).await,
            // A lease that found nothing names no item.
            Some(LeaseToken::Absent) => Ok(false),
        }
        .map_err(CacheError::from)?;
        self.written(&key);
        if deleted && lease.is_some() {
            self.tell_waiters(&key, FillEvent::Released);
        }
        Ok(deleted)
    }

    /// Removes many keys; one answer per key, in order. A bad key fails only itself.
    pub(crate) async fn delete_many(
        &self,
        call: &Call,
        keys: &[Bytes],
    ) -> Vec<Result<bool, CacheError>> {
        let batch = Batch::new(keys, |key| self.check_key(key));
        if call.effect(OpKind::Write) == Effect::Skip {
            return batch.answer_all(|| Ok(false));
        }
        let generation = match self.generation(&call.space).await {
            Ok(generation) => generation,
            Err(e) => return batch.answer_all(|| Err(CacheError::from(e.clone()))),
        };
        let store_keys: Vec<StoreKey> = batch
            .prepared()
            .map(|key| call.space.store_key_at(generation, key))
            .collect();
        let results = self.store.delete_many(&store_keys).await;
        for key in &store_keys {
            self.written(key);
        }
        batch.answer(results.into_iter().map(|r| r.map_err(CacheError::from)))
    }

    /// Checks a key of a write and, unless the debug mode skips writes (`None`), derives its
    /// store key.
    async fn write_key(&self, call: &Call, key: &[u8]) -> Result<Option<StoreKey>, CacheError> {
        let key = self.check_key(key)?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(None);
        }
        self.store_key(call, key)
            .await
            .map(Some)
            .map_err(CacheError::from)
    }

    /// A look at an item's flags, ttl and election state, without its value.
    async fn peek(&self, key: &StoreKey) -> Result<Option<ItemView>, CacheError> {
        let opts = GetOpts {
            no_value: true,
            ..GetOpts::default()
        };
        self.store.get(key, opts).await.map_err(CacheError::from)
    }

    /// Soft purge: marks a key stale for the rest of its grace period. The next reader gets
    /// `REFRESH`, the others `STALE`. Whether the key held a value.
    pub(crate) async fn invalidate(&self, call: &Call, key: &[u8]) -> Result<bool, CacheError> {
        let Some(key) = self.write_key(call, key).await? else {
            return Ok(false);
        };
        let result = self.invalidate_key(&key).await;
        self.written(&key);
        result
    }

    async fn invalidate_key(&self, key: &StoreKey) -> Result<bool, CacheError> {
        let key = key.clone();
        let Some(item) = self.peek(&key).await? else {
            return Ok(false);
        };
        // The item keeps being served as stale for its grace period (or what is left of its
        // life, if less). The peek may itself have taken part in an election on an item
        // already invalidated; the invalidation below re-opens it. A value without a grace
        // period has no stale phase: invalidating it removes it.
        let grace =
            envelope::grace_of(item.client_flags).unwrap_or(self.settings.default_grace_seconds);
        if grace == 0 {
            return self.store.delete(&key).await.map_err(CacheError::from);
        }
        let stale_ttl = item.ttl_remaining.map_or(grace, |t| t.min(grace)).max(1);
        self.store
            .invalidate(&key, stale_ttl, None)
            .await
            .map_err(CacheError::from)
    }

    /// Gives an existing key a new fresh ttl (its grace is kept). Whether the key existed.
    pub(crate) async fn touch(
        &self,
        call: &Call,
        key: &[u8],
        ttl_seconds: i64,
        no_expiry: bool,
    ) -> Result<bool, CacheError> {
        self.check_key(key)?;
        let ttl = self.expiry(ttl_seconds, no_expiry)?;
        let Some(key) = self.write_key(call, key).await? else {
            return Ok(false);
        };
        let Some(item) = self.peek(&key).await? else {
            return Ok(false);
        };
        let grace = envelope::grace_of(item.client_flags).unwrap_or(0);
        let hard = ttl::hard_ttl(ttl, grace);
        let result = if item.win == Some(Win::Won) {
            // The item was invalidated and the peek took its refresh election: keep it stale
            // for the rest of its grace and re-open the election for the real readers.
            let stale_ttl = item.ttl_remaining.unwrap_or(grace).max(1);
            self.store.invalidate(&key, stale_ttl, None).await
        } else {
            let opts = GetOpts {
                touch: Some(hard),
                no_value: true,
                ..GetOpts::default()
            };
            self.store
                .get(&key, opts)
                .await
                .map(|found| found.is_some())
        };
        self.written(&key);
        result.map_err(CacheError::from)
    }

    /// Adds `delta` to a counter, creating it with `initial` when given. The new value.
    pub(crate) async fn increment(
        &self,
        call: &Call,
        key: &[u8],
        delta: i64,
        initial: Option<u64>,
        ttl_seconds: i64,
        no_expiry: bool,
    ) -> Result<u64, CacheError> {
        let key = self.check_key(key)?;
        let ttl = self.expiry(ttl_seconds, no_expiry)?;
        if call.effect(OpKind::Counter) == Effect::Refuse {
            return Err(CacheError::CacheOff);
        }
        let key = self.store_key(call, key).await.map_err(CacheError::from)?;
        let create = initial.map(|initial| Create { initial, ttl });
        let counted = self.store.incr(&key, delta, create).await;
        self.written(&key);
        match counted.map_err(CacheError::from)? {
            IncrStatus::Value(v) => Ok(v),
            IncrStatus::NotFound => Err(CacheError::NoCounter),
            IncrStatus::NotNumeric => Err(CacheError::NotACounter),
        }
    }

    /// Drops every key of the call's key space: moves the key space to a new generation on
    /// every server, so its keys get new names and the old ones are never read again (memcached
    /// evicts them in time). This replica uses the new generation at once; others within
    /// `cache.flush_sync_ms`. Whether it flushed (not under the debug mode `off`).
    pub(crate) async fn flush(&self, call: &Call) -> Result<bool, CacheError> {
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(false);
        }
        let current = read_generation(&*self.store, &call.space, 0)
            .await
            .map_err(CacheError::from)?;
        let next = current.saturating_add(1).max(unix_millis());
        let results = self
            .store
            .set_replicated(&call.space.generation_key(), &generation_write(next))
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
            remember(&self.known, &call.space, next);
        }
        match failure {
            // The servers that took the new generation already hide the old keys from every
            // replica (replicas take the highest generation they find); the caller retries.
            Some(e) => Err(CacheError::from(e)),
            None => Ok(true),
        }
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

/// The writes that bring each server's copy of a generation up to `current`, given what each
/// answered: none for a server that failed or already has it. Each write only lands on what
/// was read (a copy must still have the CAS value it had; a missing one must still be
/// missing), so a repair never overwrites a newer generation a `Flush` wrote meanwhile.
fn generation_repairs(
    answers: &[Result<Option<ItemView>, StoreError>],
    current: u64,
) -> Vec<Option<Write>> {
    answers
        .iter()
        .map(|answer| match answer {
            Ok(None) if current > 0 => Some(Write {
                mode: WriteMode::Add,
                ..generation_write(current)
            }),
            Ok(Some(view)) if generation_of(view) < current => Some(Write {
                cas: Some(Cas {
                    instance: view.instance,
                    value: view.cas,
                }),
                ..generation_write(current)
            }),
            _ => None,
        })
        .collect()
}

/// Reads a key space's generation for everyone who needs it now: the calls that wait, and
/// the background renewal, share one read per key space; then this replica knows it.
async fn read_shared<S: Store>(
    store: &S,
    reads: &moka::future::Cache<KeySpace, u64>,
    known: &moka::sync::Cache<KeySpace, Known>,
    space: &KeySpace,
    floor: u64,
) -> Result<u64, StoreError> {
    let generation = reads
        .try_get_with(space.clone(), read_generation(store, space, floor))
        .await
        .map_err(|e| (*e).clone())?;
    let generation = remember(known, space, generation);
    // Known now: the next read is a new one.
    reads.invalidate(space).await;
    Ok(generation)
}

/// Records a generation read for a key space, never going back to an older one (a read that
/// started before a `Flush` of this replica may end after it), and returns the one now known.
fn remember(known: &moka::sync::Cache<KeySpace, Known>, space: &KeySpace, generation: u64) -> u64 {
    let entry = known.entry(space.clone()).and_compute_with(|current| {
        let generation = current.map_or(generation, |c| c.into_value().generation.max(generation));
        moka::ops::compute::Op::Put(Known {
            generation,
            read_at: Instant::now(),
        })
    });
    match entry {
        moka::ops::compute::CompResult::Inserted(e)
        | moka::ops::compute::CompResult::ReplacedWith(e) => e.into_value().generation,
        _ => generation,
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

/// The generation recorded in a generation item (decimal digits, as a counter).
fn generation_of(view: &ItemView) -> u64 {
    match envelope::decode(view.client_flags, view.value.clone()) {
        envelope::Decoded::Counter(digits) => std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The write that records a key space's generation: digits, never expiring.
fn generation_write(generation: u64) -> Write {
    Write {
        value: Bytes::from(generation.to_string()),
        client_flags: 0,
        ttl: Expiry::Never,
        mode: WriteMode::Set,
        cas: None,
    }
}

/// The write of a counter value (`counter` set): canonical decimal digits, no envelope, no
/// grace (counters are not minted).
fn counter_write(args: &SetArgs, ttl: Expiry, mode: WriteMode) -> Result<Write, CacheError> {
    let refuse = |field, reason| Err(CacheError::Field { field, reason });
    if args.flags != 0 {
        return refuse("flags", "must be 0 for a counter");
    }
    if args.grace_seconds != 0 {
        return refuse(
            "grace_seconds",
            "must be 0 for a counter (counters have no grace)",
        );
    }
    if !args.lease_token.is_empty() {
        return refuse("lease_token", "must be empty for a counter");
    }
    let digits = std::str::from_utf8(&args.value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    let Some(number) = digits else {
        return refuse(
            "value",
            "must be the decimal digits of an unsigned 64-bit number for a counter",
        );
    };
    Ok(Write {
        value: Bytes::from(number.to_string()),
        client_flags: 0,
        ttl,
        mode,
        cas: None,
    })
}

/// How long a value took to recompute: what the caller reported (`reported_ms`, 0: nothing),
/// else the time since its lease was issued (at least 1 ms; a lease from a replica whose clock
/// is ahead counts as 1 ms); `None` when neither says.
fn recompute_ms(reported_ms: u32, issued_at_ms: Option<u64>, now_ms: u64) -> Option<u32> {
    if reported_ms > 0 {
        return Some(reported_ms);
    }
    issued_at_ms.map(|issued| {
        let took = now_ms.saturating_sub(issued).max(1);
        u32::try_from(took).unwrap_or(u32::MAX)
    })
}

/// The item a write stored, as a read right after it would see it (for readers waiting on
/// its fill here).
fn stored_view(write: &Write) -> ItemView {
    ItemView {
        value: write.value.clone(),
        client_flags: write.client_flags,
        ttl_remaining: match write.ttl {
            Expiry::After(seconds) => Some(seconds),
            Expiry::Never => None,
        },
        cas: 0,
        instance: 0,
        stale: false,
        win: None,
        hot: false,
    }
}

/// Whether an item is a cold fill's placeholder: someone is computing the value.
fn is_fill_under_way(view: &ItemView) -> bool {
    matches!(
        envelope::decode(view.client_flags, view.value.clone()),
        envelope::Decoded::Placeholder
    )
}

/// The distinct keys of a batch in order of first appearance, and for each position of the
/// batch the index of its key among them.
fn distinct_keys<'k>(keys: impl Iterator<Item = &'k [u8]>) -> (Vec<&'k [u8]>, Vec<usize>) {
    let mut distinct: Vec<&[u8]> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let of_position = keys
        .map(|key| {
            *index.entry(key).or_insert_with(|| {
                distinct.push(key);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of_position)
}

/// What a batched answer to `keys` has room for in values, within a message of `max_message`
/// bytes: what is left once every result's key and fixed fields are counted.
fn answer_room(max_message: usize, keys: &[Bytes]) -> usize {
    let fixed: usize = keys.iter().map(|k| k.len() + RESULT_OVERHEAD).sum();
    max_message.saturating_sub(fixed + MESSAGE_OVERHEAD)
}

/// Bytes a batched result takes besides its key and value, at most: field tags and lengths,
/// outcome, flags, ttl, grace and a lease token (about 60), or an error's code and message (at
/// most about 130).
const RESULT_OVERHEAD: usize = 160;
/// Bytes of a message besides its results (gRPC framing), with room to spare.
const MESSAGE_OVERHEAD: usize = 64;

/// The answer of each position of a batch from the answers of its distinct keys, values in
/// request order as long as they fit in `room` bytes; a value that does not fit (a duplicate
/// key repeats its value) fails its position alone.
fn fit_answers(
    answers: &[Result<Read, CacheError>],
    of_position: &[usize],
    mut room: usize,
) -> Vec<Result<Read, CacheError>> {
    of_position
        .iter()
        .map(|&i| match &answers[i] {
            Ok(read) => {
                let size = read.lookup.value.len();
                if size > room {
                    return Err(CacheError::NoRoom { size });
                }
                room -= size;
                Ok(read.clone())
            }
            Err(e) => Err(e.clone()),
        })
        .collect()
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(generation: u64, cas: u64) -> Result<Option<ItemView>, StoreError> {
        Ok(Some(ItemView {
            value: Bytes::from(generation.to_string()),
            client_flags: 0,
            ttl_remaining: None,
            cas,
            instance: 7,
            stale: false,
            win: None,
            hot: false,
        }))
    }

    /// A batched answer built by [`fit_answers`] within [`answer_room`] always fits in one
    /// message, whatever its keys (duplicates too), values, leases and errors.
    #[test]
    fn batched_answers_fit_in_one_message() {
        use crate::grpc::{convert, proto};
        use proptest::prelude::*;
        use prost::Message as _;
        let key = proptest::collection::vec(any::<u8>(), 1..300);
        let answer = prop_oneof![
            (0usize..200_000, any::<u64>(), any::<u64>()).prop_map(|(len, ttl, cas)| {
                let mut lookup = Lookup::miss();
                lookup.outcome = MintOutcome::Refresh;
                lookup.value = Bytes::from(vec![7u8; len]);
                lookup.flags = u32::MAX;
                lookup.ttl_seconds = ttl;
                lookup.grace_seconds = ttl;
                lookup.lease = Some(LeaseToken::Cas(Cas {
                    instance: cas,
                    value: cas,
                }));
                Ok(Read {
                    lookup,
                    degraded: false,
                })
            }),
            Just(Ok(Read {
                lookup: Lookup::miss(),
                degraded: true
            })),
            any::<usize>().prop_map(|size| Err(CacheError::NoRoom { size })),
            Just(Err(CacheError::Unavailable(StoreError::Timeout {
                node: "10.0.0.1:11211".to_owned(),
                stalled: true
            }))),
            (any::<usize>(), any::<usize>())
                .prop_map(|(len, max)| Err(CacheError::KeyTooLong { len, max })),
        ];
        let cases = (
            proptest::collection::vec((key, answer), 1..60),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
            10_000usize..2_000_000,
        );
        proptest!(|((distinct, repeats, max_message) in cases)| {
            let mut keys: Vec<Bytes> = distinct.iter().map(|(k, _)| Bytes::from(k.clone())).collect();
            let mut of_position: Vec<usize> = (0..keys.len()).collect();
            for r in repeats {
                let i = r.index(distinct.len());
                keys.push(keys[i].clone());
                of_position.push(i);
            }
            let answers: Vec<Result<Read, CacheError>> =
                distinct.into_iter().map(|(_, a)| a).collect();
            let fixed: usize = keys.iter().map(|k| k.len() + RESULT_OVERHEAD).sum();
            prop_assume!(fixed + MESSAGE_OVERHEAD <= max_message);
            let room = answer_room(max_message, &keys);
            let fitted = fit_answers(&answers, &of_position, room);
            let results = keys
                .into_iter()
                .zip(fitted)
                .map(|(key, read)| convert::get_many_result(key, read))
                .collect();
            let response = proto::GetManyResponse { results };
            // gRPC frames a message with 5 bytes.
            prop_assert!(response.encoded_len() + 5 <= max_message);
        });
    }

    #[test]
    fn generation_repairs_only_land_on_what_was_read() {
        let answers = vec![
            copy(9, 100),
            copy(5, 200),
            Ok(None),
            Err(StoreError::Timeout {
                node: "10.0.0.4:11211".to_owned(),
                stalled: true,
            }),
        ];
        let repairs = generation_repairs(&answers, 9);
        // Up to date, or failed: left alone.
        assert!(repairs[0].is_none());
        assert!(repairs[3].is_none());
        // Behind: replaced only if it still has the CAS value that was read.
        let behind = repairs[1].as_ref().expect("a repair of the copy behind");
        assert_eq!(behind.value, Bytes::from("9"));
        assert_eq!(
            behind.cas,
            Some(Cas {
                instance: 7,
                value: 200
            })
        );
        assert_eq!(behind.mode, WriteMode::Set);
        // Missing: added only if still missing.
        let missing = repairs[2].as_ref().expect("a repair of the missing copy");
        assert_eq!(missing.mode, WriteMode::Add);
        assert_eq!(missing.cas, None);
        assert_eq!(missing.value, Bytes::from("9"));
        // A key space never flushed (generation 0) needs no copies.
        assert!(
            generation_repairs(&[Ok(None), Ok(None)], 0)
                .iter()
                .all(Option::is_none)
        );
    }
}
