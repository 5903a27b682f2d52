//! Why a cache call fails: [`CacheError`], mapped to gRPC statuses in one place
//! (`grpc::status`).

use crate::config::MAX_BETA;
use crate::core::lease::LeaseTokenError;
use crate::core::ttl::TtlError;
use crate::core::write::FieldError;
use crate::store::{Refusal, StoreError};

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
    #[error("early_refresh_beta must be a number in 0..={max}", max = MAX_BETA)]
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

impl From<FieldError> for CacheError {
    fn from(FieldError { field, reason }: FieldError) -> Self {
        Self::Field { field, reason }
    }
}
