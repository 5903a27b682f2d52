//! The memcached pool: a ketama ring over weighted servers, a connection pool per server, and
//! the meta-protocol commands of the [`Store`] trait.
//!
//! Every command carries the key as one safe token (see [`crate::core::key`]): as it is, or
//! base64 with the `b` flag. Expiries above 30 days are sent as Unix times
//! ([`crate::core::ttl::memcached_exptime`]).

mod ketama;
mod node;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_memcached::{Error as McError, MetaProtocol, MetaValue, Status};
use bytes::Bytes;

pub use ketama::{KetamaRing, ketama_hash};
pub use node::{Conn, ConnManager, Node};

use super::{Store, StoreError};
use crate::config::MemcachedConfig;
use crate::core::item::{GetOpts, ItemView, Win, Write, WriteMode, WriteStatus};
use crate::core::key::{StoreKey, WireForm};
use crate::core::ttl::memcached_exptime;

/// A pool of memcached servers.
pub struct MemcachedStore {
    ring: KetamaRing,
    nodes: Vec<Node>,
}

impl MemcachedStore {
    /// Builds the pool. Connections are made lazily, on first use.
    pub fn new(config: &MemcachedConfig) -> Self {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let timeout = Duration::from_millis(config.timeout_ms);
        let nodes: Vec<Node> = config
            .servers
            .iter()
            .map(|spec| Node::new(&spec.addr, config.pool_size, connect_timeout, timeout))
            .collect();
        let ring = KetamaRing::new(
            config
                .servers
                .iter()
                .map(|spec| (spec.addr.as_str(), spec.weight)),
        );
        Self { ring, nodes }
    }

    /// The servers, in configuration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The server owning `key`.
    pub fn node_for(&self, key: &StoreKey) -> &Node {
        let index = self.ring.server_for(key.stored()).unwrap_or(0);
        &self.nodes[index]
    }
}

/// The key token and whether it needs the `b` flag.
fn key_token(key: &StoreKey) -> (String, bool) {
    (key.wire_token(), key.wire_form() == WireForm::Base64)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn view(value: MetaValue) -> ItemView {
    ItemView {
        value: value.data.map(Bytes::from).unwrap_or_default(),
        client_flags: value.flags.unwrap_or(0),
        ttl_remaining: value.ttl_remaining.and_then(|t| u64::try_from(t).ok()),
        cas: value.cas.unwrap_or(0),
        stale: value.is_stale.unwrap_or(false),
        win: value
            .is_recache_winner
            .map(|won| if won { Win::Won } else { Win::Lost }),
    }
}

impl Store for MemcachedStore {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    async fn get(&self, key: &StoreKey, opts: GetOpts) -> Result<Option<ItemView>, StoreError> {
        let (token, b64) = key_token(key);
        let mut flags = vec!["v", "f", "t", "c"];
        let recache = opts.recache_below.map(|n| format!("R{n}"));
        let vivify = opts.vivify_for.map(|n| format!("N{n}"));
        flags.extend(recache.as_deref());
        flags.extend(vivify.as_deref());
        if b64 {
            flags.push("b");
        }
        self.node_for(key)
            .run(|mut client| async move {
                let found = client.meta_get(&token, false, None, Some(&flags)).await?;
                Ok(found.map(view))
            })
            .await
    }

    async fn set(&self, key: &StoreKey, write: &Write) -> Result<WriteStatus, StoreError> {
        let (token, b64) = key_token(key);
        let ttl = format!("T{}", memcached_exptime(write.ttl, now_unix()));
        let client_flags = format!("F{}", write.client_flags);
        let cas = write.cas.map(|c| format!("C{c}"));
        let mut flags = vec![ttl.as_str(), client_flags.as_str()];
        if write.mode == WriteMode::Add {
            flags.push("ME");
        }
        flags.extend(cas.as_deref());
        if b64 {
            flags.push("b");
        }
        let value = write.value.clone();
        self.node_for(key)
            .run(|mut client| async move {
                match client
                    .meta_set(&token, &value[..], false, None, Some(&flags))
                    .await
                {
                    Ok(_) => Ok(WriteStatus::Stored),
                    Err(McError::Protocol(Status::NotStored)) => Ok(WriteStatus::NotStored),
                    Err(McError::Protocol(Status::Exists)) => Ok(WriteStatus::Exists),
                    Err(McError::Protocol(Status::NotFound)) => Ok(WriteStatus::NotFound),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        let (token, b64) = key_token(key);
        let flags: &[&str] = if b64 { &["b"] } else { &[] };
        self.node_for(key)
            .run(|mut client| async move {
                match client.meta_delete(&token, false, None, Some(flags)).await {
                    Ok(_) => Ok(true),
                    Err(McError::Protocol(Status::NotFound)) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await
    }
}
