//! Pure logic: no async, no sockets, no clock reads (time is always a parameter).
//!
//! - [`key`]: namespaces, versions and the injective, memcached-safe key encoding;
//! - [`ttl`]: ttl and grace arithmetic, including memcached's 30-day rule;
//! - [`envelope`]: the versioned format of values stored in memcached;
//! - [`item`]: memcached's meta-protocol item semantics (used as-is by the embedded store);
//! - [`mint`]: how a read of an item becomes a `HIT`, `STALE`, `REFRESH`, `MISS` or `PENDING`;
//! - [`lease`]: the opaque lease tokens handed to refreshers;
//! - [`meta`]: per-call gRPC metadata parsing;
//! - [`auth`]: bearer tokens, admin rights and per-call debug modes;
//! - [`deadline`]: the `grpc-timeout` header;
//! - [`framing`]: gRPC's message framing, followed as a request body arrives;
//! - [`generation`]: key-space generations as items (what `Flush` moves on), and their repair;
//! - [`write`](mod@write): a counter's write, a value's recomputation time, what a write leaves for
//!   readers waiting on its fill;
//! - [`batch`]: batched reads: each distinct key once, the answer within one message.

pub(crate) mod auth;
pub(crate) mod batch;
pub(crate) mod deadline;
pub(crate) mod envelope;
pub(crate) mod framing;
pub(crate) mod generation;
pub(crate) mod item;
pub(crate) mod key;
pub(crate) mod lease;
pub(crate) mod meta;
pub(crate) mod mint;
pub(crate) mod ttl;
pub(crate) mod write;
