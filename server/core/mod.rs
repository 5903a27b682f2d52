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
//! - [`deadline`]: the `grpc-timeout` header.

pub mod auth;
pub mod deadline;
pub mod envelope;
pub mod item;
pub mod key;
pub mod lease;
pub mod meta;
pub mod mint;
pub mod ttl;
