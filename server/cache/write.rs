//! The write path: `Set`, `Add`, `Delete`, `Invalidate`, `Touch`, `Increment` and `Flush`,
//! and the batched writes. A write is checked and built before any store call (its ttl,
//! grace, lease and, for a value, the envelope that carries grace and recomputation time);
//! a write through this replica drops the key's hot copy and tells the readers waiting on
//! its fill.

use bytes::Bytes;

use super::batch::Batch;
use super::wait::FillEvent;
use super::{CacheError, Call, MintCache, SetArgs};
use crate::core::auth::{Effect, OpKind};
use crate::core::envelope;
use crate::core::item::{
    Create, GetOpts, IncrStatus, ItemView, Win, Write, WriteMode, WriteStatus,
};
use crate::core::key::StoreKey;
use crate::core::lease::LeaseToken;
use crate::core::ttl::{self, Expiry, TtlError};
use crate::core::write::{CounterSet, counter_write, recompute_ms, stored_view};
use crate::store::Store;

impl<S: Store> MintCache<S> {
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
            let set = CounterSet {
                value: &args.value,
                flags: args.flags,
                grace_seconds: args.grace_seconds,
                lease_token: &args.lease_token,
            };
            return Ok(counter_write(set, ttl, mode)?);
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
            .then(|| recompute_ms(args.recompute_ms, issued, self.clock.unix_ms()))
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
            self.fills
                .tell(&key, FillEvent::Stored(stored_view(&write)));
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
        let generation = match self.generations.current(&call.space).await {
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
                self.fills.tell(key, FillEvent::Stored(stored_view(write)));
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
            self.fills.tell(&key, FillEvent::Released);
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
        let generation = match self.generations.current(&call.space).await {
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
        self.generations
            .advance(&call.space)
            .await
            .map_err(CacheError::from)?;
        Ok(true)
    }
}
