//! Client for [mintcache](https://github.com/mintcache/mintcache), a versioned mint cache over
//! memcached served over gRPC.
//!
//! - [`Client`] — the typed wrapper: one method per RPC with typed results ([`Lookup`],
//!   [`Outcome`], `bool`s, [`KeyError`]s), default and per-call version / namespace / debug
//!   mode, deadlines, load balancing over several endpoints, TLS, bounded jittered retries on
//!   `UNAVAILABLE` ([`Backoff`]), [`Client::get_or_compute`], which follows the mint
//!   protocol so that an expiring key is recomputed once, fleet-wide, [`Client::peek`], which
//!   looks at a key without joining the refresh election, and [`Client::flush`].
//! - [`ClientBuilder`] — how a [`Client`] is configured.
//! - [`proto`] — the generated protobuf messages and the raw tonic client ([`CacheClient`]) of
//!   the `mintcache.v1.Cache` service, for anything the wrapper does not cover.
//! - Header name constants ([`VERSION_HEADER`], ...) and [`code_name`] for raw-client users.
//!
//! The command-line tool (`mintcache`, crate `mintcache-cli`) and the load generator
//! (`mintcache-bench`) are built on this crate; an application depending on it compiles
//! neither.
//!
//! ```no_run
//! # // no_run: needs a mintcache server on 127.0.0.1:50051 (the e2e tests in tests/ run one).
//! use std::time::Duration;
//! use mintcache_client::{Client, Outcome};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mintcache_client::Error> {
//! let cache = Client::builder()
//!     .endpoints(["http://10.0.0.1:50051", "http://10.0.0.2:50051"])
//!     .version("r42")
//!     .build()?;
//! cache.set("user:42", "Ada", Duration::from_secs(60)).await?;
//! let lookup = cache.get("user:42").await?;
//! if lookup.outcome == Outcome::Hit {
//!     println!("{}", String::from_utf8_lossy(&lookup.value));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Without the TLS dependencies: `mintcache-client = { version = "…", default-features = false }`
//! (feature `tls`, on by default).
//!
//! Inside, dependencies point one way: `types`, `client`, `builder`, `many` and `mint` use
//! `error`, `headers`, `backoff` and `proto`, and each of the five only those before it in
//! this list; no module uses this file.
#![forbid(unsafe_code)]

mod backoff;
mod builder;
mod client;
mod coalesce;
mod error;
mod headers;
mod many;
mod mint;
mod types;

#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto;

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub use client::Client;
pub use error::{BoxError, Error, code_name};
pub use headers::{
    AUTHORIZATION_HEADER, CONSISTENCY_HEADER, DEBUG_APPLIED_HEADER, DEBUG_HEADER, DEGRADED_HEADER,
    NAMESPACE_HEADER, VERSION_HEADER,
};
pub use proto::cache_client::CacheClient;
pub use tonic_health::pb::health_check_response::ServingStatus;
pub use types::{
    DebugMode, KeyError, LeaseToken, Lookup, Outcome, ParseDebugModeError, ParseLeaseTokenError,
    SetOptions,
};
