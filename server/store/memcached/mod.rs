//! The memcached pool: a ketama ring over weighted servers, a connection pool per server, and
//! the meta-protocol commands of the [`Store`] trait.
//!
//! Every command carries the key as one safe token (see [`crate::core::key`]): as it is, or
//! base64 with the `b` flag. Expiries above 30 days are sent as Unix times
//! ([`crate::core::ttl::memcached_exptime`]).

mod ketama;
mod node;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use async_memcached::{Error as McError, ErrorKind, MetaProtocol, MetaValue, Status};
use bytes::Bytes;
use futures_util::future::join_all;

pub use ketama::{KetamaRing, ketama_hash};
pub use node::{Conn, ConnManager, Node, NodeSettings};

use super::{Store, StoreError};
use crate::config::{EjectedKeys, MemcachedConfig};
use crate::core::item::{
    Create, GetOpts, IncrStatus, ItemView, Win, Write, WriteMode, WriteStatus,
};
use crate::core::key::{StoreKey, WireForm};
use crate::core::ttl::memcached_exptime;
use crate::metrics::Metrics;
use crate::store::PoolStats;

/// A pool of memcached servers.
pub struct MemcachedStore {
    ring: KetamaRing,
    nodes: Vec<Node>,
    remap_ejected: bool,
}

impl MemcachedStore {
    /// Builds the pool. Connections are made lazily, on first use.
    pub fn new(config: &MemcachedConfig, metrics: Metrics) -> Self {
        let settings = NodeSettings {
            pool_size: config.pool_size,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            timeout: Duration::from_millis(config.timeout_ms),
            failure_limit: config.failure_limit,
            retry_timeout: Duration::from_millis(config.retry_timeout_ms),
        };
        let nodes: Vec<Node> = config
            .servers
            .iter()
            .map(|spec| Node::new(&spec.addr, settings.clone(), metrics.clone()))
            .collect();
        let ring = KetamaRing::new(
            config
                .servers
                .iter()
                .map(|spec| (spec.addr.as_str(), spec.weight)),
        );
        Self {
            ring,
            nodes,
            remap_ejected: config.ejected_keys == EjectedKeys::Remap,
        }
    }

    /// The servers, in configuration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The server owning `key`.
    pub fn node_for(&self, key: &StoreKey) -> &Node {
        &self.nodes[self.node_index(key)]
    }

    /// The server owning `key`: its ring owner, or with `ejected_keys = remap` while that
    /// owner is ejected, the next server on the ring that is not.
    fn node_index(&self, key: &StoreKey) -> usize {
        let accept = |i: usize| !self.remap_ejected || !self.nodes[i].is_ejected();
        self.ring
            .server_for_where(key.stored(), accept)
            .or_else(|| self.ring.server_for(key.stored()))
            .unwrap_or(0)
    }

    /// Groups keys by server and key form (what a pipeline of gets or deletes has in common),
    /// with each group's distinct wire tokens.
    fn key_groups(&self, keys: &[StoreKey]) -> Vec<KeyGroup> {
        Self::group(
            keys.iter()
                .enumerate()
                .map(|(i, k)| (i, (self.node_index(k), k.wire_form() == WireForm::Base64))),
        )
        .into_iter()
        .map(|((node, b64), positions)| {
            let mut tokens: Vec<String> = positions.iter().map(|&i| keys[i].wire_token()).collect();
            tokens.sort_unstable();
            tokens.dedup();
            KeyGroup {
                node,
                b64,
                positions,
                tokens,
            }
        })
        .collect()
    }

    /// Groups request positions by a batch key (node and everything the batch's shared flags
    /// depend on), keeping request order inside each group.
    fn group<G: std::hash::Hash + Eq + Clone>(
        positions: impl Iterator<Item = (usize, G)>,
    ) -> Vec<(G, Vec<usize>)> {
        let mut groups: Vec<(G, Vec<usize>)> = Vec::new();
        let mut index: HashMap<G, usize> = HashMap::new();
        for (pos, g) in positions {
            match index.get(&g) {
                Some(&i) => groups[i].1.push(pos),
                None => {
                    index.insert(g.clone(), groups.len());
                    groups.push((g, vec![pos]));
                }
            }
        }
        groups
    }

    /// Meta set of one item on a given server.
    async fn set_on(
        &self,
        node: &Node,
        key: &StoreKey,
        write: &Write,
    ) -> Result<WriteStatus, StoreError> {
        let (token, b64) = key_token(key);
        let flags = set_flags(write, b64);
        let value = write.value.clone();
        node.run(|mut client| async move {
            match client
                .meta_set(&token, &value[..], false, None, Some(&as_strs(&flags)))
                .await
            {
                Ok(_) => Ok(WriteStatus::Stored),
                Err(McError::Protocol(status)) => match write_status(Some(&status)) {
                    Some(st) => Ok(st),
                    None => Err(McError::Protocol(status)),
                },
                Err(e) => Err(e),
            }
        })
        .await
    }
}

/// Keys of a batch that go to one server in one pipeline.
struct KeyGroup {
    /// The server.
    node: usize,
    /// Whether the keys travel base64-encoded (`b`).
    b64: bool,
    /// Positions of the keys in the request.
    positions: Vec<usize>,
    /// The distinct wire tokens of those keys.
    tokens: Vec<String>,
}

/// The meta flags of a get.
fn get_flags(opts: GetOpts, b64: bool) -> Vec<String> {
    let mut flags: Vec<String> = ["f", "t", "c"].iter().map(|f| (*f).to_owned()).collect();
    if !opts.no_value {
        flags.push("v".to_owned());
    }
    flags.extend(opts.recache_below.map(|n| format!("R{n}")));
    flags.extend(
        opts.vivify_for
            .map(|n| format!("N{}", memcached_exptime(n, now_unix()))),
    );
    flags.extend(
        opts.touch
            .map(|ttl| format!("T{}", ttl.memcached(now_unix()))),
    );
    if b64 {
        flags.push("b".to_owned());
    }
    flags
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// The shared meta flags of a plain set (what a pipelined batch of sets may have in common).
fn set_flags(write: &Write, b64: bool) -> Vec<String> {
    let mut flags = vec![
        format!("T{}", write.ttl.memcached(now_unix())),
        format!("F{}", write.client_flags),
    ];
    if write.mode == WriteMode::Add {
        flags.push("ME".to_owned());
    }
    flags.extend(write.cas.map(|c| format!("C{c}")));
    if b64 {
        flags.push("b".to_owned());
    }
    flags
}

fn write_status(status: Option<&Status>) -> Option<WriteStatus> {
    match status {
        None | Some(Status::Stored) => Some(WriteStatus::Stored),
        Some(Status::NotStored) => Some(WriteStatus::NotStored),
        Some(Status::Exists) => Some(WriteStatus::Exists),
        Some(Status::NotFound) => Some(WriteStatus::NotFound),
        Some(_) => None,
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

    async fn probe(&self) -> bool {
        // Answered as soon as one server answers: a hung server must not hold up the verdict.
        let probes = self
            .nodes
            .iter()
            .map(|node| Box::pin(async move { if node.probe().await { Ok(()) } else { Err(()) } }));
        futures_util::future::select_ok(probes).await.is_ok()
    }

    fn pool_stats(&self) -> Vec<PoolStats> {
        self.nodes.iter().map(Node::pool_stats).collect()
    }

    async fn get(&self, key: &StoreKey, opts: GetOpts) -> Result<Option<ItemView>, StoreError> {
        let (token, b64) = key_token(key);
        let flags = get_flags(opts, b64);
        self.node_for(key)
            .run(|mut client| async move {
                let found = client
                    .meta_get(&token, false, None, Some(&as_strs(&flags)))
                    .await?;
                Ok(found.map(view))
            })
            .await
    }

    async fn set(&self, key: &StoreKey, write: &Write) -> Result<WriteStatus, StoreError> {
        self.set_on(self.node_for(key), key, write).await
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

    async fn invalidate(
        &self,
        key: &StoreKey,
        stale_ttl: u64,
        cas: Option<u64>,
    ) -> Result<bool, StoreError> {
        let (token, b64) = key_token(key);
        let mut flags = vec![
            "I".to_owned(),
            format!("T{}", memcached_exptime(stale_ttl, now_unix())),
        ];
        flags.extend(cas.map(|c| format!("C{c}")));
        if b64 {
            flags.push("b".to_owned());
        }
        self.node_for(key)
            .run(|mut client| async move {
                match client
                    .meta_delete(&token, false, None, Some(&as_strs(&flags)))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(McError::Protocol(Status::NotFound | Status::Exists)) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    async fn get_replicated(
        &self,
        key: &StoreKey,
        opts: GetOpts,
    ) -> Vec<Result<Option<ItemView>, StoreError>> {
        let (token, b64) = key_token(key);
        let flags = get_flags(opts, b64);
        let (token, flags) = (&token, &flags);
        join_all(self.nodes.iter().map(|node| {
            node.run(move |mut client| async move {
                let found = client
                    .meta_get(token, false, None, Some(&as_strs(flags)))
                    .await?;
                Ok(found.map(view))
            })
        }))
        .await
    }

    async fn set_replicated(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> Vec<Result<WriteStatus, StoreError>> {
        join_all(self.nodes.iter().map(|node| self.set_on(node, key, write))).await
    }

    async fn incr(
        &self,
        key: &StoreKey,
        delta: i64,
        create: Option<Create>,
    ) -> Result<IncrStatus, StoreError> {
        let (token, b64) = key_token(key);
        let mut flags = vec!["v".to_owned()];
        if let Some(c) = create {
            flags.push(format!("N{}", c.ttl.memcached(now_unix())));
            flags.push(format!("J{}", c.initial));
        }
        if b64 {
            flags.push("b".to_owned());
        }
        let node = self.node_for(key);
        let addr = node.addr().to_owned();
        let answer = node
            .run(|mut client| async move {
                let flags = as_strs(&flags);
                let magnitude = Some(delta.unsigned_abs());
                let result = if delta >= 0 {
                    client
                        .meta_increment(&token, false, None, magnitude, Some(&flags))
                        .await
                } else {
                    client
                        .meta_decrement(&token, false, None, magnitude, Some(&flags))
                        .await
                };
                match result {
                    Ok(value) => Ok(Some(value.and_then(|v| v.data))),
                    Err(McError::Protocol(Status::NotFound)) => Ok(None),
                    Err(McError::Protocol(Status::Error(ErrorKind::Client(msg))))
                        if msg.contains("non-numeric") =>
                    {
                        Ok(Some(None))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        match answer {
            None => Ok(IncrStatus::NotFound),
            Some(None) => Ok(IncrStatus::NotNumeric),
            Some(Some(digits)) => std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(IncrStatus::Value)
                .ok_or(StoreError::Protocol {
                    node: addr,
                    reason: "arithmetic answer is not a number".to_owned(),
                }),
        }
    }

    async fn get_many(
        &self,
        keys: &[StoreKey],
        opts: GetOpts,
    ) -> Vec<Result<Option<ItemView>, StoreError>> {
        let groups = self.key_groups(keys);
        let batches = groups.into_iter().map(
            |KeyGroup {
                 node,
                 b64,
                 positions,
                 tokens,
             }| async move {
                let flags = get_flags(opts, b64);
                let found = self.nodes[node]
                    .run(|mut client| async move {
                        client.meta_get_multi(&tokens, Some(&as_strs(&flags))).await
                    })
                    .await;
                (positions, found)
            },
        );
        let mut out: Vec<Result<Option<ItemView>, StoreError>> =
            keys.iter().map(|_| Ok(None)).collect();
        for (positions, found) in join_all(batches).await {
            match found {
                Ok(values) => {
                    let by_key: HashMap<Vec<u8>, MetaValue> = values
                        .into_iter()
                        .filter_map(|v| v.key.clone().map(|k| (k, v)))
                        .collect();
                    for i in positions {
                        let token = keys[i].wire_token();
                        out[i] = Ok(by_key.get(token.as_bytes()).cloned().map(view));
                    }
                }
                Err(e) => {
                    for i in positions {
                        out[i] = Err(e.clone());
                    }
                }
            }
        }
        out
    }

    async fn set_many(&self, items: &[(StoreKey, Write)]) -> Vec<Result<WriteStatus, StoreError>> {
        // Writes that share node, key form, expiry, flags and mode (and carry no CAS) go in one
        // pipeline; the rest are sent one by one, concurrently.
        let groups = Self::group(items.iter().enumerate().map(|(i, (k, w))| {
            let b64 = k.wire_form() == WireForm::Base64;
            let batchable = w.cas.is_none();
            let shared = batchable.then(|| set_flags(w, b64));
            (
                i,
                (self.node_index(k), shared, if batchable { 0 } else { i }),
            )
        }));
        let batches = groups
            .into_iter()
            .map(|((node, shared, _), positions)| async move {
                let Some(flags) = shared else {
                    let (k, w) = &items[positions[0]];
                    return vec![(positions[0], self.set(k, w).await)];
                };
                let tokens: Vec<String> =
                    positions.iter().map(|&i| items[i].0.wire_token()).collect();
                let pairs: Vec<(&str, &[u8])> = positions
                    .iter()
                    .zip(&tokens)
                    .map(|(&i, t)| (t.as_str(), &items[i].1.value[..]))
                    .collect();
                let refused = self.nodes[node]
                    .run(|mut client| async move {
                        client.meta_set_multi(&pairs, Some(&as_strs(&flags))).await
                    })
                    .await;
                match refused {
                    Ok(refused) => {
                        let by_key: HashMap<Vec<u8>, Option<Status>> = refused
                            .into_iter()
                            .filter_map(|v| v.key.map(|k| (k, v.status)))
                            .collect();
                        positions
                            .iter()
                            .zip(&tokens)
                            .map(|(&i, t)| {
                                let status = by_key.get(t.as_bytes()).cloned().flatten();
                                let st = write_status(status.as_ref()).ok_or_else(|| {
                                    StoreError::Protocol {
                                        node: self.nodes[node].addr().to_owned(),
                                        reason: format!(
                                            "unexpected answer to a pipelined set: {status:?}"
                                        ),
                                    }
                                });
                                (i, st)
                            })
                            .collect()
                    }
                    Err(e) => positions.iter().map(|&i| (i, Err(e.clone()))).collect(),
                }
            });
        let mut out: Vec<Result<WriteStatus, StoreError>> =
            items.iter().map(|_| Ok(WriteStatus::Stored)).collect();
        for (i, result) in join_all(batches).await.into_iter().flatten() {
            out[i] = result;
        }
        out
    }

    async fn delete_many(&self, keys: &[StoreKey]) -> Vec<Result<bool, StoreError>> {
        // memcached has no pipelined form of `md` in async-memcached's API, so a batch of
        // deletes is a pipeline of `ms <key> 0 MR T-1`: replace (only if the key exists) with an
        // already-expired empty item. memcached answers `HD` (suppressed in quiet mode) where a
        // key existed and `NS` where it did not, exactly what `md` reports; the replaced item
        // can no longer be read, added over as absent, or matched by a CAS.
        let groups = self.key_groups(keys);
        let batches = groups.into_iter().map(
            |KeyGroup {
                 node,
                 b64,
                 positions,
                 tokens,
             }| async move {
                let pairs: Vec<(&str, &[u8])> =
                    tokens.iter().map(|t| (t.as_str(), &b""[..])).collect();
                let mut flags = vec!["MR", "T-1"];
                if b64 {
                    flags.push("b");
                }
                let refused =
                    self.nodes[node]
                        .run(|mut client| async move {
                            client.meta_set_multi(&pairs, Some(&flags)).await
                        })
                        .await;
                (positions, refused)
            },
        );
        let mut out: Vec<Result<bool, StoreError>> = keys.iter().map(|_| Ok(false)).collect();
        for (positions, refused) in join_all(batches).await {
            match refused {
                Ok(refused) => {
                    let absent: std::collections::HashSet<Vec<u8>> =
                        refused.into_iter().filter_map(|v| v.key).collect();
                    for i in positions {
                        out[i] = Ok(!absent.contains(keys[i].wire_token().as_bytes()));
                    }
                }
                Err(e) => {
                    for i in positions {
                        out[i] = Err(e.clone());
                    }
                }
            }
        }
        out
    }
}
