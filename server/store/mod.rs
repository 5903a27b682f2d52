//! Backends: what the mint logic needs from a cache store, and its two implementations.
//!
//! The [`Store`] trait speaks memcached's meta protocol in domain types (meta get with
//! recache/vivify options, meta set with mode and CAS, meta delete). [`MemcachedStore`] sends
//! it to a pool of memcached servers; [`EmbeddedStore`] applies the same rules in process.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;

use self::budget::CallBudget;

use crate::core::item::{Cas, Create, GetOpts, IncrStatus, ItemView, Write, WriteStatus};
use crate::core::key::StoreKey;

pub(crate) mod budget;
pub(crate) mod embedded;
pub(crate) mod memcached;

/// What [`Store::pool_stats`] reports: the pool gauges' figures.
pub(crate) use crate::metrics::PoolStats;
pub(crate) use embedded::EmbeddedStore;
pub(crate) use memcached::MemcachedStore;

/// A backend failure. Messages name the node, never keys or values.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// No connection could be had to the node in time.
    #[error("memcached {node}: cannot connect: {reason}")]
    Connect {
        /// The node's address.
        node: String,
        /// What failed: refused, timed out, the handshake's error.
        reason: String,
    },
    /// The operation did not complete in time.
    #[error("memcached {node}: timed out{}", if *stalled { " (nothing read within memcached.timeout_ms: connection closed)" } else { " behind other commands on a busy connection" })]
    Timeout {
        /// The node's address.
        node: String,
        /// The connection read nothing meanwhile (the server hung, or its host went silent),
        /// as opposed to being busy with other commands.
        stalled: bool,
    },
    /// The node answered something unexpected or the connection broke.
    #[error("memcached {node}: {reason}")]
    Protocol {
        /// The node's address.
        node: String,
        /// What was wrong with the reply, or how the connection broke.
        reason: String,
    },
    /// The node is ejected after consecutive failures.
    #[error("memcached {node}: ejected after consecutive failures")]
    Ejected {
        /// The node's address.
        node: String,
    },
    /// The connection broke after the command was sent: it may or may not have been applied.
    #[error("memcached {node}: connection lost: {reason}")]
    Broken {
        /// The node's address.
        node: String,
        /// How the connection broke (reset, closed by the peer, stalled).
        reason: String,
    },
    /// The node's connections have as many commands waiting as they take: nothing was sent.
    #[error("memcached {node}: too many commands waiting (memcached.max_queued_commands)")]
    Overloaded {
        /// The node's address.
        node: String,
    },
    /// A value was not read: the call's answer, or every answer being sent at once, would
    /// hold more than the server allows (the call's message limit,
    /// `server.max_buffered_reply_bytes`).
    #[error("memcached {node}: a value of {size} bytes was not read: over the reply budget")]
    NotKept {
        /// The node's address.
        node: String,
        /// The value's size.
        size: usize,
    },
    /// The node refused this one command (the item, not the node, is the problem).
    #[error("memcached {node}: refused: {refusal}")]
    Refused {
        /// The node's address.
        node: String,
        /// What it refused.
        refusal: Refusal,
    },
}

/// Why a memcached server refused one command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The item is larger than the server's item size limit (memcached `-I`).
    #[error("object too large for the server's item size limit")]
    TooLarge,
    /// The server has no memory left for the item.
    #[error("out of memory storing the item")]
    OutOfMemory,
    /// Anything else (`CLIENT_ERROR …`, `SERVER_ERROR …`).
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Every name [`StoreError::kind`] gives (metrics show each from the start, at zero).
    pub(crate) const KINDS: [&'static str; 8] = [
        "connect",
        "timeout",
        "protocol",
        "ejected",
        "broken",
        "refused",
        "overloaded",
        "over_budget",
    ];

    /// A short name of the kind of failure, for metrics; one of [`StoreError::KINDS`].
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Protocol { .. } => "protocol",
            Self::Ejected { .. } => "ejected",
            Self::Broken { .. } => "broken",
            Self::Refused { .. } => "refused",
            Self::Overloaded { .. } => "overloaded",
            Self::NotKept { .. } => "over_budget",
        }
    }

    /// Whether the failure says something about the server (it is down, hung, or not
    /// memcached), and so counts towards ejecting it. A broken connection, a call that timed
    /// out behind others on a connection that kept reading, a full queue, a value over a
    /// budget, or a refusal of one item, does not.
    pub(crate) fn counts_against_server(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Timeout { stalled: true, .. } | Self::Protocol { .. }
        )
    }
}

/// What the mint logic needs from a backend.
pub(crate) trait Store: Send + Sync + 'static {
    /// Whether the backend can serve (for memcached: at least one server answers).
    fn probe(&self) -> impl Future<Output = bool> + Send;

    /// Connection pool usage, per memcached server (none for in-process stores).
    fn pool_stats(&self) -> Vec<PoolStats> {
        Vec::new()
    }

    /// Bytes of values read back and held until their answers are encoded (none for
    /// in-process stores, whose values are shared with the store).
    fn reply_bytes_buffered(&self) -> u64 {
        0
    }

    /// Meta get (`mg <key> v f t c h [R] [N]`; see the memcached store for why `h`).
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

    /// Meta set that also reports the CAS value the stored item got (`ms … c`), with the
    /// store instance holding it.
    fn set_cas(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> impl Future<Output = Result<(WriteStatus, Option<Cas>), StoreError>> + Send;

    /// Meta delete of the item with this CAS value only (`md <key> C<cas>`), in the store
    /// instance that handed it out; whether it deleted.
    fn delete_if(
        &self,
        key: &StoreKey,
        cas: Cas,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Invalidation (`md <key> I T<stale_ttl> [C<cas>]`): marks the item stale, re-opens the
    /// refresh election, bumps its CAS value; whether it did (the key held an item, with the
    /// CAS value `cas` when one is given).
    fn invalidate(
        &self,
        key: &StoreKey,
        stale_ttl: u64,
        cas: Option<Cas>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Arithmetic (`ma <key> [N<ttl> J<initial>] D<delta> M(I|D) v`).
    fn incr(
        &self,
        key: &StoreKey,
        delta: i64,
        create: Option<Create>,
    ) -> impl Future<Output = Result<IncrStatus, StoreError>> + Send;

    /// Meta get of a key kept on several servers (a key space's generation): one answer per
    /// server keeping a copy. Single-node stores answer once.
    fn get_replicated(
        &self,
        key: &StoreKey,
        opts: GetOpts,
    ) -> impl Future<Output = Vec<Result<Option<ItemView>, StoreError>>> + Send {
        async move { vec![self.get(key, opts).await] }
    }

    /// Meta set of a key kept on several servers: one answer per server keeping a copy.
    fn set_replicated(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> impl Future<Output = Vec<Result<WriteStatus, StoreError>>> + Send {
        async move { vec![self.set(key, write).await] }
    }

    /// Meta sets of a key kept on several servers, one write or none per copy, in the order of
    /// [`Store::get_replicated`]'s answers (`None`: that server is left alone). Single-node
    /// stores take the first.
    fn set_each(
        &self,
        key: &StoreKey,
        writes: &[Option<Write>],
    ) -> impl Future<Output = Vec<Option<Result<WriteStatus, StoreError>>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(writes.len());
            for write in writes.iter().take(1) {
                answers.push(match write {
                    Some(write) => Some(self.set(key, write).await),
                    None => None,
                });
            }
            answers
        }
    }

    /// Meta get of many keys, answers in request order. The default runs the single gets
    /// concurrently; backends that can pipeline override it.
    ///
    /// With a `budget`, values beyond it are not kept: their keys answer
    /// [`StoreError::NotKept`] (memcached skips them as they arrive, without buffering them).
    fn get_many(
        &self,
        keys: &[StoreKey],
        opts: GetOpts,
        budget: Option<Arc<CallBudget>>,
    ) -> impl Future<Output = Vec<Result<Option<ItemView>, StoreError>>> + Send {
        async move {
            let answers = join_all(keys.iter().map(move |k| self.get(k, opts))).await;
            let Some(budget) = budget else {
                return answers;
            };
            answers
                .into_iter()
                .map(|answer| match answer {
                    Ok(Some(view)) if !budget.take(view.value.len()) => Err(StoreError::NotKept {
                        node: "embedded".to_owned(),
                        size: view.value.len(),
                    }),
                    other => other,
                })
                .collect()
        }
    }

    /// Meta set of many items, answers in request order.
    fn set_many(
        &self,
        items: &[(StoreKey, Write)],
    ) -> impl Future<Output = Vec<Result<WriteStatus, StoreError>>> + Send {
        join_all(items.iter().map(|(k, w)| self.set(k, w)))
    }

    /// Meta delete of many keys, answers in request order.
    fn delete_many(
        &self,
        keys: &[StoreKey],
    ) -> impl Future<Output = Vec<Result<bool, StoreError>>> + Send {
        join_all(keys.iter().map(|k| self.delete(k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_failure_is_listed() {
        let node = || "10.0.0.1:11211".to_owned();
        let reason = || "why".to_owned();
        let errors = [
            StoreError::Connect {
                node: node(),
                reason: reason(),
            },
            StoreError::Timeout {
                node: node(),
                stalled: true,
            },
            StoreError::Protocol {
                node: node(),
                reason: reason(),
            },
            StoreError::Ejected { node: node() },
            StoreError::Broken {
                node: node(),
                reason: reason(),
            },
            StoreError::Refused {
                node: node(),
                refusal: Refusal::TooLarge,
            },
            StoreError::Overloaded { node: node() },
            StoreError::NotKept {
                node: node(),
                size: 1,
            },
        ];
        let kinds: Vec<&str> = errors.iter().map(StoreError::kind).collect();
        assert_eq!(kinds, StoreError::KINDS);
    }
}
