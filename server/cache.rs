//! The mint cache: validates requests, derives keys, and runs the mint protocol over a
//! [`Store`]. Pure decisions live in [`crate::core`]; this module only sequences store calls.

use bytes::Bytes;

use crate::config::Config;
use crate::core::envelope;
use crate::core::item::{GetOpts, Write, WriteMode, WriteStatus};
use crate::core::key::{KeySpace, StoreKey};
use crate::core::lease::{LeaseToken, LeaseTokenError};
use crate::core::mint::{self, Lookup, Step};
use crate::core::ttl::{self, TtlError};
use crate::store::{Store, StoreError};

/// Why a cache call failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
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
    /// The backend failed a write (or a read, when reads fail closed).
    #[error("cache backend unavailable")]
    Unavailable(#[source] StoreError),
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// What was found.
    pub lookup: Lookup,
    /// The backend failed and the read was answered as a miss (fail open).
    pub degraded: bool,
}

/// A store request, as the API gives it (0 = defaults).
#[derive(Debug, Clone, Default)]
pub struct SetArgs {
    /// The user key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Requested fresh seconds.
    pub ttl_seconds: i64,
    /// Requested grace seconds.
    pub grace_seconds: i64,
    /// The caller's flags.
    pub flags: u32,
    /// Lease token bytes from a `REFRESH` or `MISS` (empty: none).
    pub lease_token: Bytes,
}

/// The settings the mint cache runs with (from [`Config`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Fresh seconds when a write asks for 0.
    pub default_ttl: u64,
    /// Grace seconds when a write asks for 0.
    pub default_grace: u64,
    /// Longest key.
    pub max_key_bytes: usize,
    /// Longest value.
    pub max_value_bytes: usize,
    /// Cold-miss protection when a read does not say.
    pub lease_on_miss: bool,
    /// Lifetime of a cold-miss placeholder.
    pub fill_timeout: u64,
    /// Reads answer `MISS` on backend failure.
    pub fail_open: bool,
}

impl Settings {
    /// The settings of a validated configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            default_ttl: config.cache.default_ttl_seconds,
            default_grace: config.cache.grace_seconds,
            max_key_bytes: config.limits.max_key_bytes,
            max_value_bytes: config.limits.max_value_bytes,
            lease_on_miss: config.cache.lease_on_miss,
            fill_timeout: config.cache.fill_timeout_seconds,
            fail_open: config.cache.fail_open,
        }
    }
}

/// The versioned mint cache over a store.
pub struct MintCache<S> {
    store: S,
    settings: Settings,
}

impl<S: Store> MintCache<S> {
    /// A mint cache over `store`.
    pub fn new(store: S, settings: Settings) -> Self {
        Self { store, settings }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
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

    /// Reads a key, running the mint protocol.
    pub async fn get(
        &self,
        space: &KeySpace,
        key: &[u8],
        lease_on_miss: Option<bool>,
    ) -> Result<Read, CacheError> {
        let key = self.key(space, key)?;
        let vivify_for = lease_on_miss
            .unwrap_or(self.settings.lease_on_miss)
            .then_some(self.settings.fill_timeout);
        let first = GetOpts {
            recache_below: None,
            vivify_for,
        };
        let step = match self.store.get(&key, first).await {
            Ok(view) => mint::decide(view, false),
            Err(e) => return self.read_failed(e),
        };
        let lookup = match step {
            Step::Done(lookup) => lookup,
            Step::Elect { recache_below } => {
                let elect = GetOpts {
                    recache_below: Some(recache_below),
                    vivify_for,
                };
                match self.store.get(&key, elect).await {
                    Ok(view) => match mint::decide(view, true) {
                        Step::Done(lookup) => lookup,
                        // `decide` always answers an elected read.
                        Step::Elect { .. } => Lookup::miss(),
                    },
                    Err(e) => return self.read_failed(e),
                }
            }
        };
        Ok(Read {
            lookup,
            degraded: false,
        })
    }

    fn read_failed(&self, e: StoreError) -> Result<Read, CacheError> {
        if self.settings.fail_open {
            tracing::warn!(error = %e, "read failed, answering as a miss");
            Ok(Read {
                lookup: Lookup::miss(),
                degraded: true,
            })
        } else {
            Err(CacheError::Unavailable(e))
        }
    }

    /// Builds the write for a store request.
    fn write(&self, args: &SetArgs, mode: WriteMode) -> Result<Write, CacheError> {
        if args.value.len() > self.settings.max_value_bytes {
            return Err(CacheError::ValueTooLarge {
                len: args.value.len(),
                max: self.settings.max_value_bytes,
            });
        }
        let ttl = ttl::resolve_seconds(args.ttl_seconds, self.settings.default_ttl).map_err(
            |source| CacheError::Ttl {
                field: "ttl_seconds",
                source,
            },
        )?;
        let grace = ttl::resolve_seconds(args.grace_seconds, self.settings.default_grace).map_err(
            |source| CacheError::Ttl {
                field: "grace_seconds",
                source,
            },
        )?;
        let lease = LeaseToken::parse(&args.lease_token)?;
        let (value, client_flags) = envelope::encode(&args.value, grace, args.flags);
        Ok(Write {
            value,
            client_flags,
            ttl: ttl::hard_ttl(ttl, grace),
            mode,
            cas: lease.map(LeaseToken::cas),
        })
    }

    /// Stores a value; `false` when a lease token was outdated.
    pub async fn set(&self, space: &KeySpace, args: &SetArgs) -> Result<bool, CacheError> {
        self.store_with(space, args, WriteMode::Set).await
    }

    /// Stores a value only if the key holds none; whether it stored.
    pub async fn add(&self, space: &KeySpace, args: &SetArgs) -> Result<bool, CacheError> {
        self.store_with(space, args, WriteMode::Add).await
    }

    async fn store_with(
        &self,
        space: &KeySpace,
        args: &SetArgs,
        mode: WriteMode,
    ) -> Result<bool, CacheError> {
        let key = self.key(space, &args.key)?;
        let write = self.write(args, mode)?;
        let status = self
            .store
            .set(&key, &write)
            .await
            .map_err(CacheError::Unavailable)?;
        Ok(status == WriteStatus::Stored)
    }

    /// Removes a key; whether it held a value.
    pub async fn delete(&self, space: &KeySpace, key: &[u8]) -> Result<bool, CacheError> {
        let key = self.key(space, key)?;
        self.store
            .delete(&key)
            .await
            .map_err(CacheError::Unavailable)
    }
}
