//! Client for [mintcache](https://github.com/mintcache/mintcache), a versioned mint cache over
//! memcached served over gRPC.
//!
//! This crate re-exports the generated protobuf types and the raw tonic client
//! ([`CacheClient`]) for the `mintcache.v1.Cache` service, and the names of the per-call
//! metadata keys the server understands.
//!
//! ```no_run
//! # // no_run: needs a running mintcache server.
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mintcache_client::{CacheClient, GetRequest, Outcome, VERSION_HEADER};
//!
//! let mut client = CacheClient::connect("http://127.0.0.1:50051").await?;
//! let mut request = tonic::Request::new(GetRequest { key: b"user:42".to_vec(), ..Default::default() });
//! request.metadata_mut().insert(VERSION_HEADER, "v2".parse()?);
//! let response = client.get(request).await?.into_inner();
//! if response.outcome() == Outcome::Hit {
//!     println!("{} bytes", response.value.len());
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

/// The generated protobuf messages and gRPC client of package `mintcache.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("mintcache.v1");
}

pub use proto::cache_client::CacheClient;
pub use proto::*;

/// Metadata key selecting the application version that namespaces keys.
pub const VERSION_HEADER: &str = "x-cache-version";
/// Metadata key selecting the namespace (tenant or application name).
pub const NAMESPACE_HEADER: &str = "x-cache-namespace";
/// Metadata key selecting a per-call debug mode (`off` or `write-only`, admin callers only).
pub const DEBUG_HEADER: &str = "x-cache-debug";
/// Response metadata key set to `1` when a read was answered as a miss because the backend failed.
pub const DEGRADED_HEADER: &str = "x-cache-degraded";
