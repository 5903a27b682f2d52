//! The mint cache: validates requests, derives keys, and runs the mint protocol over a
//! [`Store`]. Pure decisions live in [`crate::core`]; this module only sequences store calls.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::config::CacheSettings;
use crate::metrics::Metrics;

use crate::core::auth::{self, DebugMode, Effect, OpKind};
use crate::core::envelope;
use crate::core::item::{
    Create, GetOpts, IncrStatus, ItemView, Win, Write, WriteMode, WriteStatus,
};
use crate::core::key::{KeySpace, StoreKey};
use crate::core::lease::{LeaseToken, LeaseTokenError};
use crate::core::mint::{self, Lookup, Step};
use crate::core::ttl::{self, TtlError};
use crate::store::{Store, StoreError};

/// Why a cache call failed.
#[derive(Debug, thiserror::Error)]
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
}

/// The context of one call: its key space and debug mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// Namespace and version.
    pub(crate) space: KeySpace,
    /// The per-call debug mode (admin callers only; checked before).
    pub(crate) debug: Option<DebugMode>,
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

/// The versioned mint cache over a store.
pub(crate) struct MintCache<S> {
    store: Arc<S>,
    settings: CacheSettings,
    metrics: Metrics,
}

impl<S: Store> MintCache<S> {
    /// A mint cache over `store`, recording read outcomes into `metrics`.
    pub(crate) fn new(store: Arc<S>, settings: CacheSettings, metrics: Metrics) -> Self {
        Self {
            store,
            settings,
            metrics,
        }
    }

    /// Checks a key against the limits and derives its store key.
    fn key(&self, space: &KeySpace, key: &[u8]) -> Result<StoreKey, CacheError> {
        if key.is_empty() {
            return Err(CacheError::EmptyKey);
        }
        if key.len() > self.settings.max_key_bytes {
            return Err(CacheError::KeyTooLong {
                len: key.len(),
                max: self.settings.max_key_bytes,
            });
        }
        Ok(space.store_key(key))
    }

    /// The options of a first read, and whether the caller asked for cold-miss protection.
    fn read_opts(&self, lease_on_miss: Option<bool>) -> (GetOpts, bool) {
        let protect = lease_on_miss.unwrap_or(self.settings.lease_on_miss);
        let opts = GetOpts {
            vivify_for: protect.then_some(self.settings.fill_timeout_seconds),
            ..GetOpts::default()
        };
        (opts, protect)
    }

    /// Reads a key, running the mint protocol.
    pub(crate) async fn get(
        &self,
        call: &Call,
        key: &[u8],
        lease_on_miss: Option<bool>,
    ) -> Result<Read, CacheError> {
        let key = self.key(&call.space, key)?;
        if call.effect(OpKind::Read) == Effect::Miss {
            return Ok(Read::debug_miss());
        }
        let (opts, protect) = self.read_opts(lease_on_miss);
        let first = self.store.get(&key, opts).await;
        self.finish_read(&key, first, opts, protect).await
    }

    /// Turns a first read into an answer, holding the refresh election when it is needed.
    async fn finish_read(
        &self,
        key: &StoreKey,
        first: Result<Option<ItemView>, StoreError>,
        opts: GetOpts,
        protect: bool,
    ) -> Result<Read, CacheError> {
        let step = match first {
            Ok(view) => mint::decide(view, false, protect),
            Err(e) => return self.read_failed(e),
        };
        let lookup = match step {
            Step::Done(lookup) => lookup,
            Step::Elect { recache_below } => {
                let elect = GetOpts {
                    recache_below: Some(recache_below),
                    ..opts
                };
                match self.store.get(key, elect).await {
                    Ok(view) => match mint::decide(view, true, protect) {
                        Step::Done(lookup) => lookup,
                        // `decide` always answers an elected read.
                        Step::Elect { .. } => Lookup::miss(),
                    },
                    Err(e) => return self.read_failed(e),
                }
            }
        };
        self.metrics.mint_outcome(lookup.outcome);
        Ok(Read {
            lookup,
            degraded: false,
        })
    }

    /// Reads many keys; one answer per key, in order. A bad key fails only itself.
    pub(crate) async fn get_many(
        &self,
        call: &Call,
        keys: &[Bytes],
        lease_on_miss: Option<bool>,
    ) -> Vec<Result<Read, CacheError>> {
        let (opts, protect) = self.read_opts(lease_on_miss);
        let batch = Batch::new(keys, |key| self.key(&call.space, key));
        if call.effect(OpKind::Read) == Effect::Miss {
            return batch.answer_all(|| Ok(Read::debug_miss()));
        }
        let store_keys: Vec<StoreKey> = batch.prepared().cloned().collect();
        let firsts = self.store.get_many(&store_keys, opts).await;
        let answers = join_all(
            store_keys
                .iter()
                .zip(firsts)
                .map(|(key, first)| self.finish_read(key, first, opts, protect)),
        )
        .await;
        batch.answer(answers)
    }

    fn read_failed(&self, e: StoreError) -> Result<Read, CacheError> {
        if self.settings.fail_open {
            self.metrics.degraded_read();
            tracing::warn!(error = %e, "read failed, answering as a miss");
            Ok(Read {
                lookup: Lookup::miss(),
                degraded: true,
            })
        } else {
            Err(CacheError::Unavailable(e))
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

    /// Builds the write for a store request.
    fn write(&self, args: &SetArgs, mode: WriteMode) -> Result<Write, CacheError> {
        if args.value.len() > self.settings.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: args.value.len(),
                max: self.settings.max_value_bytes,
            });
        }
        let ttl = self.resolve(
            "ttl_seconds",
            args.ttl_seconds,
            self.settings.default_ttl_seconds,
        )?;
        let grace = self.resolve(
            "grace_seconds",
            args.grace_seconds,
            self.settings.default_grace_seconds,
        )?;
        if grace > envelope::MAX_GRACE_SECONDS {
            return Err(CacheError::Ttl {
                field: "grace_seconds",
                source: TtlError::TooLong {
                    got: args.grace_seconds,
                    max: envelope::MAX_GRACE_SECONDS,
                },
            });
        }
        let (mode, cas) = match LeaseToken::parse(&args.lease_token)? {
            None => (mode, None),
            Some(LeaseToken::Cas(cas)) => (mode, Some(cas)),
            Some(LeaseToken::Absent) => (WriteMode::Add, None),
        };
        let (value, client_flags) = envelope::encode(&args.value, grace, args.flags);
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
        self.store_with(call, args, WriteMode::Set).await
    }

    /// Stores a value only if the key holds none; whether it stored.
    pub(crate) async fn add(&self, call: &Call, args: &SetArgs) -> Result<bool, CacheError> {
        self.store_with(call, args, WriteMode::Add).await
    }

    async fn store_with(
        &self,
        call: &Call,
        args: &SetArgs,
        mode: WriteMode,
    ) -> Result<bool, CacheError> {
        let key = self.key(&call.space, &args.key)?;
        let write = self.write(args, mode)?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(false);
        }
        let status = self
            .store
            .set(&key, &write)
            .await
            .map_err(CacheError::Unavailable)?;
        Ok(status == WriteStatus::Stored)
    }

    /// Stores many values; one answer per item, in order. A bad item fails only itself.
    pub(crate) async fn set_many(
        &self,
        call: &Call,
        items: &[SetArgs],
    ) -> Vec<Result<bool, CacheError>> {
        let batch = Batch::new(items, |args| {
            Ok((
                self.key(&call.space, &args.key)?,
                self.write(args, WriteMode::Set)?,
            ))
        });
        if call.effect(OpKind::Write) == Effect::Skip {
            return batch.answer_all(|| Ok(false));
        }
        let writes: Vec<(StoreKey, Write)> = batch.prepared().cloned().collect();
        let results = self.store.set_many(&writes).await;
        batch.answer(results.into_iter().map(|result| {
            result
                .map(|st| st == WriteStatus::Stored)
                .map_err(CacheError::Unavailable)
        }))
    }

    /// Removes a key; whether it held a value.
    pub(crate) async fn delete(&self, call: &Call, key: &[u8]) -> Result<bool, CacheError> {
        let key = self.key(&call.space, key)?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(false);
        }
        self.store
            .delete(&key)
            .await
            .map_err(CacheError::Unavailable)
    }

    /// Removes many keys; one answer per key, in order. A bad key fails only itself.
    pub(crate) async fn delete_many(
        &self,
        call: &Call,
        keys: &[Bytes],
    ) -> Vec<Result<bool, CacheError>> {
        let batch = Batch::new(keys, |key| self.key(&call.space, key));
        if call.effect(OpKind::Write) == Effect::Skip {
            return batch.answer_all(|| Ok(false));
        }
        let store_keys: Vec<StoreKey> = batch.prepared().cloned().collect();
        let results = self.store.delete_many(&store_keys).await;
        batch.answer(
            results
                .into_iter()
                .map(|r| r.map_err(CacheError::Unavailable)),
        )
    }

    /// A look at an item's flags, ttl and election state, without its value.
    async fn peek(&self, key: &StoreKey) -> Result<Option<ItemView>, CacheError> {
        let opts = GetOpts {
            no_value: true,
            ..GetOpts::default()
        };
        self.store
            .get(key, opts)
            .await
            .map_err(CacheError::Unavailable)
    }

    /// Soft purge: marks a key stale for the rest of its grace period. The next reader gets
    /// `REFRESH`, the others `STALE`. Whether the key held a value.
    pub(crate) async fn invalidate(&self, call: &Call, key: &[u8]) -> Result<bool, CacheError> {
        let key = self.key(&call.space, key)?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(false);
        }
        let Some(item) = self.peek(&key).await? else {
            return Ok(false);
        };
        // The item keeps being served as stale for its grace period (or what is left of its
        // life, if less). The peek may itself have taken part in an election on an item
        // already invalidated; the invalidation below re-opens it.
        let grace =
            envelope::grace_of(item.client_flags).unwrap_or(self.settings.default_grace_seconds);
        let stale_ttl = item.ttl_remaining.map_or(grace, |t| t.min(grace)).max(1);
        self.store
            .invalidate(&key, stale_ttl)
            .await
            .map_err(CacheError::Unavailable)
    }

    /// Gives an existing key a new fresh ttl (its grace is kept). Whether the key existed.
    pub(crate) async fn touch(
        &self,
        call: &Call,
        key: &[u8],
        ttl_seconds: i64,
    ) -> Result<bool, CacheError> {
        let key = self.key(&call.space, key)?;
        let ttl = self.resolve(
            "ttl_seconds",
            ttl_seconds,
            self.settings.default_ttl_seconds,
        )?;
        if call.effect(OpKind::Write) == Effect::Skip {
            return Ok(false);
        }
        let Some(item) = self.peek(&key).await? else {
            return Ok(false);
        };
        let grace = envelope::grace_of(item.client_flags).unwrap_or(0);
        let hard = ttl::hard_ttl(ttl, grace);
        let result = if item.win == Some(Win::Won) {
            // The item was invalidated and the peek took its refresh election: keep it stale
            // with the new ttl and re-open the election for the real readers.
            self.store.invalidate(&key, hard).await
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
        result.map_err(CacheError::Unavailable)
    }

    /// Adds `delta` to a counter, creating it with `initial` when given. The new value.
    pub(crate) async fn increment(
        &self,
        call: &Call,
        key: &[u8],
        delta: i64,
        initial: Option<u64>,
        ttl_seconds: i64,
    ) -> Result<u64, CacheError> {
        let key = self.key(&call.space, key)?;
        let ttl = self.resolve(
            "ttl_seconds",
            ttl_seconds,
            self.settings.default_ttl_seconds,
        )?;
        if call.effect(OpKind::Counter) == Effect::Refuse {
            return Err(CacheError::CacheOff);
        }
        let create = initial.map(|initial| Create { initial, ttl });
        match self
            .store
            .incr(&key, delta, create)
            .await
            .map_err(CacheError::Unavailable)?
        {
            IncrStatus::Value(v) => Ok(v),
            IncrStatus::NotFound => Err(CacheError::NoCounter),
            IncrStatus::NotNumeric => Err(CacheError::NotACounter),
        }
    }
}
