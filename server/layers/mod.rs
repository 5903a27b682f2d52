//! Request-path layers around the gRPC service.
//!
//! - [`call_meta`]: parses `x-cache-version` / `x-cache-namespace` once per call and attaches
//!   the resulting key space to the request (bad metadata → `INVALID_ARGUMENT` before any
//!   handler runs);
//! - [`auth`]: bearer tokens, TLS client certificates, admin-only debug modes
//!   (`UNAUTHENTICATED` / `PERMISSION_DENIED` before any handler runs).

pub mod auth;
pub mod call_meta;
