//! Backends: what the mint logic needs from a cache store, and its two implementations.
//!
//! The [`Store`] trait speaks memcached's meta protocol in domain types (meta get with
//! recache/vivify options, meta set with mode and CAS, meta delete). [`MemcachedStore`] sends
//! it to a pool of memcached servers; [`EmbeddedStore`] applies the same rules in process.

use std::future::Future;

use crate::core::item::{GetOpts, ItemView, Write, WriteStatus};
use crate::core::key::StoreKey;

pub mod embedded;
pub mod memcached;

pub use embedded::EmbeddedStore;
pub use memcached::MemcachedStore;

/// A backend failure. Messages name the node, never keys or values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had to the node in time.
    #[error("memcached {node}: cannot connect: {reason}")]
    Connect {
        /// The node's address.
        node: String,
        /// Why.
        reason: String,
    },
    /// The operation did not complete in time.
    #[error("memcached {node}: timed out")]
    Timeout {
        /// The node's address.
        node: String,
    },
    /// The node answered something unexpected or the connection broke.
    #[error("memcached {node}: {reason}")]
    Protocol {
        /// The node's address.
        node: String,
        /// Why.
        reason: String,
    },
}

/// What the mint logic needs from a backend.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs (`memcached`, `embedded`).
    fn kind(&self) -> &'static str;

    /// Meta get (`mg <key> v f t c [R] [N]`).
    fn get(
        &self,
        key: &StoreKey,
        opts: GetOpts,
    ) -> impl Future<Output = Result<Option<ItemView>, StoreError>> + Send;

    /// Meta set (`ms <key> … T F [ME] [C]`).
    fn set(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> impl Future<Output = Result<WriteStatus, StoreError>> + Send;

    /// Meta delete (`md <key>`); whether the key held an item.
    fn delete(&self, key: &StoreKey) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
