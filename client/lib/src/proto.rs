//! The generated protobuf messages and gRPC client of package `mintcache.v1` (from
//! `proto/mintcache/v1/cache.proto`, compiled by this crate's `build.rs`).

tonic::include_proto!("mintcache.v1");
