//! The names of the metadata the service reads and answers with (see the README's "Per-call
//! metadata").

/// Metadata key selecting the application version that namespaces keys.
pub const VERSION_HEADER: &str = "x-cache-version";
/// Metadata key selecting the namespace (tenant or application name).
pub const NAMESPACE_HEADER: &str = "x-cache-namespace";
/// Metadata key selecting a per-call debug mode (`off` or `write-only`, admin callers only).
pub const DEBUG_HEADER: &str = "x-cache-debug";
/// Metadata key carrying the caller's credentials (`Bearer <token>`).
pub const AUTHORIZATION_HEADER: &str = "authorization";
/// Metadata key asking reads to skip the server's hot-key cache (`strong`).
pub const CONSISTENCY_HEADER: &str = "x-cache-consistency";
/// Response metadata key set to `1` when a read was answered as a miss because the backend failed.
pub const DEGRADED_HEADER: &str = "x-cache-degraded";
/// Response metadata key naming the debug mode the server applied to the call.
pub const DEBUG_APPLIED_HEADER: &str = "x-cache-debug-applied";
