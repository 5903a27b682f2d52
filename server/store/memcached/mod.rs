//! The memcached pool: a ketama ring over weighted servers, a few multiplexed connections per
//! server, and the meta-protocol commands of the [`Store`] trait.
//!
//! Every command carries the key as one safe token (see [`crate::core::key`]): as it is, or
//! base64 with the `b` flag. Expiries above 30 days are sent as Unix times
//! ([`crate::core::ttl::memcached_exptime`]). The commands of a batch that go to one server are
//! written in one go and answered in one round trip; concurrent calls to one server share its
//! connections and are coalesced into the same writes ([`conn`]).

mod check;
mod conn;
mod ketama;
mod node;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;

pub(crate) use ketama::KetamaRing;
use node::{Node, NodeSettings};
use wire::{Meta, Reply};

use self::conn::{Abandon, Batch};
use super::budget::{CallBudget, ReplyBudget};
use super::{Store, StoreError};
use crate::config::{EjectedKeys, MemcachedConfig};
use crate::core::envelope;
use crate::core::item::{Cas, Create, GetOpts, IncrStatus, ItemView, Win, Write, WriteStatus};
use crate::core::key::StoreKey;
use crate::metrics::Metrics;
use crate::resolve::Resolver;
use crate::store::PoolStats;

/// Servers that keep a copy of a key space's generation (fewer when the pool is smaller): the
/// first distinct servers after the generation key's point on the ring.
const GENERATION_COPIES: usize = 3;

/// How long a read of a key space's generation waits for the other copies once one answered:
/// a copy on a hung server must not hold up the read (a `Flush` writes every copy, so the
/// others have what it would have said).
const GENERATION_STRAGGLER_WAIT: Duration = Duration::from_millis(50);

/// Ends a command's data block.
/// The resolution of memcached's item access times (its ITEM_UPDATE_INTERVAL, 60 s): what the
/// meta protocol's `l` flag reports for an item read all the time.
const ACCESS_TIME_RESOLUTION_SECS: u64 = 60;

const CRLF: Bytes = Bytes::from_static(b"\r\n");

/// A pool of memcached servers.
pub(crate) struct MemcachedStore {
    /// Every server's ring.
    ring: Arc<KetamaRing>,
    /// `(name, weight)` of each server, to rebuild the ring without ejected ones.
    servers: Vec<(String, u32)>,
    /// The ring rebuilt over the servers not ejected, and which were ejected.
    remapped: Mutex<Option<(Vec<bool>, Arc<KetamaRing>)>>,
    nodes: Vec<Node>,
    remap_ejected: bool,
    /// Values read back and not yet sent, of every call.
    reply_budget: ReplyBudget,
}

/// The server owning `key` on `ring` (the first server for an empty ring).
fn owner(ring: &KetamaRing, key: &StoreKey) -> usize {
    ring.server_for(key.stored()).unwrap_or(0)
}

impl MemcachedStore {
    /// Builds the pool for values up to `max_value_bytes`, holding at most
    /// `reply_budget_bytes` of values read back at once. Connections are made lazily, on first
    /// use; server names are resolved by `resolver` at each connection.
    pub(crate) fn new(
        config: &MemcachedConfig,
        max_value_bytes: usize,
        reply_budget_bytes: usize,
        metrics: Metrics,
        resolver: Resolver,
    ) -> Self {
        let reply_budget = ReplyBudget::new(reply_budget_bytes);
        let settings = NodeSettings {
            max_value_bytes,
            connections: config.pool_size,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            timeout: Duration::from_millis(config.timeout_ms),
            failure_limit: config.failure_limit,
            retry_timeout: Duration::from_millis(config.retry_timeout_ms),
            keepalive: (config.keepalive_ms > 0)
                .then(|| Duration::from_millis(config.keepalive_ms)),
            max_queued: config.max_queued_commands,
            reply_budget: reply_budget.clone(),
            resolver,
        };
        let nodes: Vec<Node> = config
            .servers
            .iter()
            .map(|spec| Node::new(&spec.addr, settings.clone(), metrics.clone()))
            .collect();
        let servers: Vec<(String, u32)> = config
            .servers
            .iter()
            .map(|spec| (spec.addr.clone(), spec.weight))
            .collect();
        let ring = Arc::new(KetamaRing::new(
            servers
                .iter()
                .map(|(name, weight)| (name.as_str(), *weight)),
        ));
        Self {
            ring,
            servers,
            remapped: Mutex::new(None),
            reply_budget,
            nodes,
            remap_ejected: config.ejected_keys == EjectedKeys::Remap,
        }
    }

    /// Checks every server in the background, on connections of their own: one ERROR line for
    /// each that cannot be reached, a WARN for each whose item size limit is below the largest
    /// item (see [`check`]).
    pub(crate) fn check_servers_at_startup(&self) {
        for node in &self.nodes {
            tokio::spawn(node.startup_check());
        }
    }

    /// The ring keys are placed on now: every server's, or with `ejected_keys = remap` while
    /// servers are ejected, the ring rebuilt over the others, as twemproxy rebuilds it (their
    /// shares are then of the remaining weight alone). A rebuilt ring is kept until the set of
    /// ejected servers changes.
    fn placement(&self) -> Arc<KetamaRing> {
        if !self.remap_ejected || self.nodes.len() == 1 {
            return self.ring.clone();
        }
        let ejected: Vec<bool> = self.nodes.iter().map(Node::is_ejected).collect();
        if !ejected.contains(&true) || !ejected.contains(&false) {
            // Nothing ejected, or everything: keys stay with their owners.
            return self.ring.clone();
        }
        let mut remapped = self
            .remapped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((set, ring)) = remapped.as_ref()
            && *set == ejected
        {
            return ring.clone();
        }
        let ring = Arc::new(KetamaRing::new_over(
            self.servers
                .iter()
                .map(|(name, weight)| (name.as_str(), *weight)),
            |i| !ejected[i],
        ));
        *remapped = Some((ejected, ring.clone()));
        ring
    }

    /// The server owning `key` on the ring keys are placed on now (see [`Self::placement`]).
    fn node_index(&self, key: &StoreKey) -> usize {
        if self.nodes.len() == 1 {
            return 0;
        }
        owner(&self.placement(), key)
    }

    /// The servers that keep copies of a key space's generation (see [`GENERATION_COPIES`]),
    /// by the ring of every configured server, ejected or not, so that every replica of the
    /// service reads and writes the same copies.
    fn generation_nodes(&self, key: &StoreKey) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::with_capacity(GENERATION_COPIES);
        while chosen.len() < GENERATION_COPIES.min(self.nodes.len()) {
            match self
                .ring
                .server_for_where(key.stored(), |s| !chosen.contains(&s))
            {
                Some(next) => chosen.push(next),
                None => break,
            }
        }
        chosen
    }

    /// Request positions grouped by server, in request order within each group.
    fn by_node<'k>(&self, keys: impl Iterator<Item = &'k StoreKey>) -> Vec<(usize, Vec<usize>)> {
        if self.nodes.len() == 1 {
            let positions: Vec<usize> = (0..keys.count()).collect();
            return if positions.is_empty() {
                Vec::new()
            } else {
                vec![(0, positions)]
            };
        }
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut index: HashMap<usize, usize, foldhash::fast::RandomState> = HashMap::default();
        let ring = self.placement();
        for (pos, key) in keys.enumerate() {
            let node = owner(&ring, key);
            match index.get(&node) {
                Some(&g) => groups[g].1.push(pos),
                None => {
                    index.insert(node, groups.len());
                    groups.push((node, vec![pos]));
                }
            }
        }
        groups
    }

    /// Sends the commands `encode` writes for each position of a group to its server in one
    /// round trip, and interprets each reply with `read`. One answer per position. With
    /// `instance`, the commands are only sent to that memcached instance; if the server is
    /// another one now (it restarted), every position answers the given value instead.
    async fn pipeline<T: Clone>(
        &self,
        node: &Node,
        positions: &[usize],
        instance: Option<(u64, T)>,
        mut encode: impl FnMut(usize, &mut BytesMut, &mut Vec<Bytes>, u32),
        read: impl Fn(&Node, Reply, u64) -> Result<T, StoreError>,
    ) -> Vec<Result<T, StoreError>> {
        self.pipeline_with(node, positions, instance, None, None, &mut encode, read)
            .await
    }

    /// [`Self::pipeline`] with a budget for the values of the replies, and what to give back
    /// for a reply nobody takes (indexes of the abandon hook are indexes into `positions`).
    #[allow(clippy::too_many_arguments)]
    async fn pipeline_with<T: Clone>(
        &self,
        node: &Node,
        positions: &[usize],
        instance: Option<(u64, T)>,
        budget: Option<Arc<CallBudget>>,
        abandon: Option<Abandon>,
        mut encode: impl FnMut(usize, &mut BytesMut, &mut Vec<Bytes>, u32),
        read: impl Fn(&Node, Reply, u64) -> Result<T, StoreError>,
    ) -> Vec<Result<T, StoreError>> {
        let opaques = node.opaques(positions.len());
        let mut head = BytesMut::with_capacity(positions.len() * 64);
        let mut bytes = Vec::with_capacity(positions.len());
        // Commands accumulate in `head`; an encoder that sends a value splits `head` off
        // first, so that the value keeps its place without being copied.
        for (&pos, &opaque) in positions.iter().zip(&opaques) {
            encode(pos, &mut head, &mut bytes, opaque);
        }
        if !head.is_empty() {
            bytes.push(head.split().freeze());
        }
        let batch = Batch {
            bytes,
            opaques,
            budget,
            abandon,
        };
        let (expected, otherwise) = match instance {
            Some((instance, otherwise)) => (Some(instance), Some(otherwise)),
            None => (None, None),
        };
        match node.call(batch, expected).await {
            Ok(None) if otherwise.is_some() => positions
                .iter()
                .map(|_| {
                    otherwise
                        .clone()
                        .ok_or_else(|| unexpected(node, "no answer"))
                })
                .collect(),
            Ok(Some(answer)) if answer.replies.len() == positions.len() => answer
                .replies
                .into_iter()
                .map(|reply| read(node, reply, answer.instance))
                .collect(),
            Ok(_) => positions
                .iter()
                .map(|_| Err(unexpected(node, "a reply missing from a pipeline")))
                .collect(),
            Err(e) => positions.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// One command to the server owning `key` (see [`Self::pipeline`] for `instance`).
    async fn one<T: Clone>(
        &self,
        key: &StoreKey,
        instance: Option<(u64, T)>,
        encode: impl FnOnce(&mut BytesMut, &mut Vec<Bytes>, u32),
        read: impl Fn(&Node, Reply, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let node = &self.nodes[self.node_index(key)];
        let mut encode = Some(encode);
        let mut out = self
            .pipeline(
                node,
                &[0],
                instance,
                |_, head, bytes, opaque| {
                    if let Some(encode) = encode.take() {
                        encode(head, bytes, opaque);
                    }
                },
                read,
            )
            .await;
        out.pop()
            .unwrap_or_else(|| Err(unexpected(node, "no reply")))
    }

    /// A set of `write` on one given server.
    async fn set_on(
        &self,
        node: &Node,
        key: &StoreKey,
        write: &Write,
    ) -> Result<WriteStatus, StoreError> {
        let now = now_unix();
        // A lease from another memcached instance (before a restart) matches nothing.
        let instance = write.cas.map(|c| (c.instance, WriteStatus::Exists));
        let mut out = self
            .pipeline(
                node,
                &[0],
                instance,
                |_, head, bytes, opaque| encode_set(head, bytes, key, write, now, opaque),
                read_write_status,
            )
            .await;
        out.pop()
            .unwrap_or_else(|| Err(unexpected(node, "no reply")))
    }
}

/// What to send for a reply to one of `keys` (in batch order) that won an election for a
/// caller that left, or whose value could not be kept: the election is given back, so that
/// another reader wins it at once rather than after the refresh timeout. Only reads that can
/// win (`N`, `R`) have one.
fn give_back(opts: GetOpts, keys: impl FnOnce() -> Vec<StoreKey>) -> Option<Abandon> {
    if opts.vivify_for.is_none() && opts.recache_below.is_none() {
        return None;
    }
    let keys = keys();
    Some(Arc::new(move |index, meta, size, buf, opaque| {
        let (Some(key), true, Some(cas)) = (keys.get(index), meta.won, meta.cas) else {
            return false;
        };
        if size == 0 && meta.client_flags.unwrap_or(0) == 0 && !meta.stale {
            // The empty placeholder of a cold fill: removed, if nobody filled it since.
            wire::delete_if(buf, key, cas, opaque);
            return true;
        }
        let grace = meta.client_flags.and_then(envelope::grace_of).unwrap_or(0);
        let left = meta.ttl.and_then(|t| u64::try_from(t).ok());
        if !meta.stale && left.is_none_or(|t| t > grace) {
            // An early refresh of a value still fresh: invalidating it would serve it as
            // stale. Its election reopens after the refresh timeout, once it is stale.
            return false;
        }
        // A stale value: stale again for as long as it lives, with a new election.
        let stale_ttl = left.filter(|&t| t > 0).unwrap_or(grace);
        wire::invalidate(buf, key, stale_ttl.max(1), Some(cas), now_unix(), opaque);
        true
    }))
}

/// An error for a reply that does not fit the command.
fn unexpected(node: &Node, what: &str) -> StoreError {
    node.out_of_place(what)
}

/// The reply of `node` is either a refusal of this one command, or out of place.
fn refused_or_unexpected(node: &Node, reply: &Reply) -> StoreError {
    node.refusal(reply)
        .unwrap_or_else(|| unexpected(node, "unexpected reply to the command"))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn view(meta: Meta, value: Bytes, instance: u64) -> ItemView {
    ItemView {
        value,
        client_flags: meta.client_flags.unwrap_or(0),
        ttl_remaining: meta.ttl.and_then(|t| u64::try_from(t).ok()),
        cas: meta.cas.unwrap_or(0),
        instance,
        stale: meta.stale,
        win: if meta.won {
            Some(Win::Won)
        } else if meta.lost {
            Some(Win::Lost)
        } else {
            None
        },
        // memcached refreshes an item's access time at most once a minute
        // (ITEM_UPDATE_INTERVAL): `l` is anything up to 60 for a key read without pause.
        hot: meta.hit_before == Some(true)
            && meta
                .last_access
                .is_some_and(|l| l <= ACCESS_TIME_RESOLUTION_SECS),
    }
}

fn read_view(node: &Node, reply: Reply, instance: u64) -> Result<Option<ItemView>, StoreError> {
    match reply {
        Reply::Value(meta, data) => Ok(Some(view(meta, data, instance))),
        Reply::Skipped(_, size) => Err(StoreError::NotKept {
            node: node.addr().to_owned(),
            size,
        }),
        // A get without `v` answers `HD` for an item it found.
        Reply::Done(meta) => Ok(Some(view(meta, Bytes::new(), instance))),
        Reply::Miss(_) => Ok(None),
        other => Err(refused_or_unexpected(node, &other)),
    }
}

fn read_write_status(node: &Node, reply: Reply, _instance: u64) -> Result<WriteStatus, StoreError> {
    match reply {
        Reply::Done(_) => Ok(WriteStatus::Stored),
        Reply::NotStored(_) => Ok(WriteStatus::NotStored),
        Reply::Exists(_) => Ok(WriteStatus::Exists),
        Reply::NotFound(_) => Ok(WriteStatus::NotFound),
        other => Err(refused_or_unexpected(node, &other)),
    }
}

/// `HD` for a removal of an item that was there, `NF` (or `EX` when a CAS did not match, `NS`
/// for a batched expiry) when it was not.
fn read_removal(node: &Node, reply: Reply, _instance: u64) -> Result<bool, StoreError> {
    match reply {
        Reply::Done(_) => Ok(true),
        Reply::NotFound(_) | Reply::Exists(_) | Reply::NotStored(_) => Ok(false),
        other => Err(refused_or_unexpected(node, &other)),
    }
}

fn encode_set(
    head: &mut BytesMut,
    bytes: &mut Vec<Bytes>,
    key: &StoreKey,
    write: &Write,
    now: u64,
    opaque: u32,
) {
    encode_set_with(head, bytes, key, write, false, now, opaque);
}

/// [`encode_set`], asking for the stored item's CAS value with `return_cas`.
fn encode_set_with(
    head: &mut BytesMut,
    bytes: &mut Vec<Bytes>,
    key: &StoreKey,
    write: &Write,
    return_cas: bool,
    now: u64,
    opaque: u32,
) {
    wire::set(
        head,
        key,
        write,
        write.cas.map(|c| c.value),
        return_cas,
        now,
        opaque,
    );
    bytes.push(head.split().freeze());
    bytes.push(write.value.clone());
    bytes.push(CRLF);
}

impl Store for MemcachedStore {
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

    fn reply_bytes_buffered(&self) -> u64 {
        self.reply_budget.held() as u64
    }

    async fn get(&self, key: &StoreKey, opts: GetOpts) -> Result<Option<ItemView>, StoreError> {
        let now = now_unix();
        let node = &self.nodes[self.node_index(key)];
        let abandon = give_back(opts, || vec![key.clone()]);
        let mut out = self
            .pipeline_with(
                node,
                &[0],
                None,
                None,
                abandon,
                |_, head, _, opaque| wire::get(head, key, opts, now, opaque),
                read_view,
            )
            .await;
        out.pop()
            .unwrap_or_else(|| Err(unexpected(node, "no reply")))
    }

    async fn set(&self, key: &StoreKey, write: &Write) -> Result<WriteStatus, StoreError> {
        self.set_on(&self.nodes[self.node_index(key)], key, write)
            .await
    }

    async fn delete(&self, key: &StoreKey) -> Result<bool, StoreError> {
        self.one(
            key,
            None,
            |head, _, opaque| wire::delete(head, key, opaque),
            read_removal,
        )
        .await
    }

    async fn set_cas(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> Result<(WriteStatus, Option<Cas>), StoreError> {
        let now = now_unix();
        // A lease from another memcached instance (before a restart) matches nothing.
        let instance = write.cas.map(|c| (c.instance, (WriteStatus::Exists, None)));
        self.one(
            key,
            instance,
            |head, bytes, opaque| encode_set_with(head, bytes, key, write, true, now, opaque),
            |node, reply, instance| {
                let cas = match &reply {
                    Reply::Done(meta) => meta.cas.map(|value| Cas { instance, value }),
                    _ => None,
                };
                read_write_status(node, reply, instance).map(|status| (status, cas))
            },
        )
        .await
    }

    async fn delete_if(&self, key: &StoreKey, cas: Cas) -> Result<bool, StoreError> {
        self.one(
            key,
            Some((cas.instance, false)),
            |head, _, opaque| wire::delete_if(head, key, cas.value, opaque),
            read_removal,
        )
        .await
    }

    async fn invalidate(
        &self,
        key: &StoreKey,
        stale_ttl: u64,
        cas: Option<Cas>,
    ) -> Result<bool, StoreError> {
        let now = now_unix();
        self.one(
            key,
            cas.map(|c| (c.instance, false)),
            |head, _, opaque| {
                wire::invalidate(head, key, stale_ttl, cas.map(|c| c.value), now, opaque);
            },
            read_removal,
        )
        .await
    }

    async fn get_replicated(
        &self,
        key: &StoreKey,
        opts: GetOpts,
    ) -> Vec<Result<Option<ItemView>, StoreError>> {
        let now = now_unix();
        let copies = self.generation_nodes(key);
        let mut reads: FuturesUnordered<_> = copies
            .iter()
            .enumerate()
            .map(|(i, &n)| async move {
                let node = &self.nodes[n];
                let mut out = self
                    .pipeline(
                        node,
                        &[0],
                        None,
                        |_, head, _, opaque| wire::get(head, key, opts, now, opaque),
                        read_view,
                    )
                    .await;
                let answer = out
                    .pop()
                    .unwrap_or_else(|| Err(unexpected(node, "no reply")));
                (i, answer)
            })
            .collect();
        let mut answers: Vec<Option<Result<Option<ItemView>, StoreError>>> =
            copies.iter().map(|_| None).collect();
        let mut answered_by = None;
        loop {
            let next = match answered_by {
                None => reads.next().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, reads.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some((i, answer)) = next else {
                break;
            };
            if answer.is_ok() && answered_by.is_none() {
                answered_by = Some(tokio::time::Instant::now() + GENERATION_STRAGGLER_WAIT);
            }
            answers[i] = Some(answer);
        }
        copies
            .iter()
            .zip(answers)
            .map(|(&n, answer)| {
                answer.unwrap_or_else(|| {
                    Err(StoreError::Timeout {
                        node: self.nodes[n].addr().to_owned(),
                        stalled: false,
                    })
                })
            })
            .collect()
    }

    async fn set_each(
        &self,
        key: &StoreKey,
        writes: &[Option<Write>],
    ) -> Vec<Option<Result<WriteStatus, StoreError>>> {
        let copies = self.generation_nodes(key);
        join_all(copies.iter().zip(writes).map(|(&n, write)| async move {
            match write {
                Some(write) => Some(self.set_on(&self.nodes[n], key, write).await),
                None => None,
            }
        }))
        .await
    }

    async fn set_replicated(
        &self,
        key: &StoreKey,
        write: &Write,
    ) -> Vec<Result<WriteStatus, StoreError>> {
        let copies = self.generation_nodes(key);
        join_all(
            copies
                .iter()
                .map(|&n| self.set_on(&self.nodes[n], key, write)),
        )
        .await
    }

    async fn incr(
        &self,
        key: &StoreKey,
        delta: i64,
        create: Option<Create>,
    ) -> Result<IncrStatus, StoreError> {
        let now = now_unix();
        self.one(
            key,
            None,
            |head, _, opaque| wire::incr(head, key, delta, create, now, opaque),
            |node, reply, _| match reply {
                Reply::Value(_, digits) => std::str::from_utf8(&digits)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .map(IncrStatus::Value)
                    .ok_or_else(|| unexpected(node, "arithmetic answer is not a number")),
                Reply::NotFound(_) => Ok(IncrStatus::NotFound),
                Reply::ClientError(msg) if msg.contains("non-numeric") => {
                    Ok(IncrStatus::NotNumeric)
                }
                other => Err(refused_or_unexpected(node, &other)),
            },
        )
        .await
    }

    async fn get_many(
        &self,
        keys: &[StoreKey],
        opts: GetOpts,
        budget: Option<Arc<CallBudget>>,
    ) -> Vec<Result<Option<ItemView>, StoreError>> {
        let now = now_unix();
        let groups = self.by_node(keys.iter());
        let batches = groups.iter().map(|(node, positions)| {
            let abandon = give_back(opts, || {
                positions.iter().map(|&p| keys[p].clone()).collect()
            });
            let budget = budget.clone();
            async move {
                let answers = self
                    .pipeline_with(
                        &self.nodes[*node],
                        positions,
                        None,
                        budget,
                        abandon,
                        |pos, head, _, opaque| wire::get(head, &keys[pos], opts, now, opaque),
                        read_view,
                    )
                    .await;
                (positions, answers)
            }
        });
        scatter(keys.len(), join_all(batches).await)
    }

    async fn set_many(&self, items: &[(StoreKey, Write)]) -> Vec<Result<WriteStatus, StoreError>> {
        let now = now_unix();
        // Items with a lease go one by one (each must reach the instance its lease names); the
        // others are pipelined per server.
        let (leased, plain): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&i| items[i].1.cas.is_some());
        let groups = self.by_node(plain.iter().map(|&i| &items[i].0));
        let groups: Vec<(usize, Vec<usize>)> = groups
            .into_iter()
            .map(|(node, positions)| (node, positions.into_iter().map(|p| plain[p]).collect()))
            .chain(
                leased
                    .iter()
                    .map(|&i| (self.node_index(&items[i].0), vec![i])),
            )
            .collect();
        let batches = groups.iter().map(|(node, positions)| async move {
            let node = &self.nodes[*node];
            let instance = match positions[..] {
                [one] => items[one].1.cas.map(|c| (c.instance, WriteStatus::Exists)),
                _ => None,
            };
            let answers = self
                .pipeline(
                    node,
                    positions,
                    instance,
                    |pos, head, bytes, opaque| {
                        let (key, write) = &items[pos];
                        encode_set(head, bytes, key, write, now, opaque);
                    },
                    read_write_status,
                )
                .await;
            (positions, answers)
        });
        scatter(items.len(), join_all(batches).await)
    }

    async fn delete_many(&self, keys: &[StoreKey]) -> Vec<Result<bool, StoreError>> {
        let groups = self.by_node(keys.iter());
        let batches = groups.iter().map(|(node, positions)| async move {
            let answers = self
                .pipeline(
                    &self.nodes[*node],
                    positions,
                    None,
                    |pos, head, _, opaque| wire::delete(head, &keys[pos], opaque),
                    read_removal,
                )
                .await;
            (positions, answers)
        });
        scatter(keys.len(), join_all(batches).await)
    }
}

/// The answers of one server's group, with the request positions they belong to.
type GroupAnswers<'a, T> = (&'a Vec<usize>, Vec<Result<T, StoreError>>);

/// Puts the answers of per-server groups back in request order.
fn scatter<T>(len: usize, groups: Vec<GroupAnswers<'_, T>>) -> Vec<Result<T, StoreError>> {
    let mut out: Vec<Option<Result<T, StoreError>>> = (0..len).map(|_| None).collect();
    for (positions, answers) in groups {
        for (&pos, answer) in positions.iter().zip(answers) {
            out[pos] = Some(answer);
        }
    }
    out.into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                Err(StoreError::Protocol {
                    node: "-".to_owned(),
                    reason: "no answer for a batched key".to_owned(),
                })
            })
        })
        .collect()
}
