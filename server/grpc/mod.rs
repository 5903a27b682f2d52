//! The gRPC surface: the generated `mintcache.v1` code, the tonic service, proto <-> domain
//! conversion (`convert`) and the single error-to-status mapping (`status`).

pub(crate) mod convert;
pub(crate) mod service;
pub(crate) mod status;

/// Generated protobuf types and server stubs of `mintcache.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("mintcache.v1");

    /// The file descriptor set of the API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("mintcache_descriptor");
}

pub(crate) use service::CacheService;
