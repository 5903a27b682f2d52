//! Metric names (OpenTelemetry form; Prometheus replaces dots with underscores and adds
//! `_total` to counters and the unit to histograms), in one place: a test checks that they are
//! unique and namespaced.

/// Calls, by `rpc`, `code` and (for `Get`) `outcome`.
pub(crate) const RPC_REQUESTS: &str = "mintcache.rpc.requests";
/// Call latency in seconds, by `rpc` and `code`.
pub(crate) const RPC_DURATION: &str = "mintcache.rpc.duration";
/// Calls being served.
pub(crate) const RPC_IN_FLIGHT: &str = "mintcache.rpc.in_flight";
/// Calls refused at once because `server.max_concurrent_calls` were being served.
pub(crate) const RPC_SHED: &str = "mintcache.rpc.shed";
/// Read outcomes per key (`Get` and `GetMany`), by `outcome` and `read` (`elect`: a read
/// that takes part in the refresh election; `peek`: a look that never does).
pub(crate) const MINT_OUTCOMES: &str = "mintcache.mint.outcomes";
/// Reads answered as a miss because the backend failed (fail open).
pub(crate) const DEGRADED_READS: &str = "mintcache.reads.degraded";
/// memcached operation latency in seconds, by `node`.
pub(crate) const BACKEND_DURATION: &str = "mintcache.backend.duration";
/// memcached operation failures, by `node` and `kind` (connect, timeout, protocol, ejected).
pub(crate) const BACKEND_ERRORS: &str = "mintcache.backend.errors";
/// memcached servers ejected after consecutive failures, by `node`.
pub(crate) const BACKEND_EJECTIONS: &str = "mintcache.backend.ejections";
/// Pooled memcached connections, by `node` and `state` (in_use, idle).
pub(crate) const POOL_CONNECTIONS: &str = "mintcache.pool.connections";
/// Callers waiting for a pooled memcached connection, by `node`.
pub(crate) const POOL_WAITING: &str = "mintcache.pool.waiting";
/// Bytes of values read back from memcached and held until their answers are encoded
/// (unit `By`; bounded by `server.max_buffered_reply_bytes`).
pub(crate) const REPLY_BUFFERED: &str = "mintcache.reply.buffered";
/// Reads answered from the hot-key cache.
pub(crate) const HOT_CACHE_HITS: &str = "mintcache.hot_cache.hits";
/// Entries in the hot-key cache.
pub(crate) const HOT_CACHE_ENTRIES: &str = "mintcache.hot_cache.entries";
/// Bytes the hot-key cache counts its entries at (unit `By`).
pub(crate) const HOT_CACHE_SIZE: &str = "mintcache.hot_cache.size";
/// Entries in the embedded store.
pub(crate) const EMBEDDED_ENTRIES: &str = "mintcache.embedded.entries";
/// Bytes the embedded store counts against its budget (unit `By`).
pub(crate) const EMBEDDED_SIZE: &str = "mintcache.embedded.size";
/// The embedded store's budget, `embedded.max_bytes` (unit `By`).
pub(crate) const EMBEDDED_CAPACITY: &str = "mintcache.embedded.capacity";
/// Always 1, with the build's `version`, `profile` and `target` as labels.
pub(crate) const BUILD_INFO: &str = "mintcache.build.info";
/// User and system CPU time of the process (unit `s`).
pub(crate) const PROCESS_CPU: &str = "process.cpu";
/// Resident memory of the process (unit `By`).
pub(crate) const PROCESS_RESIDENT_MEMORY: &str = "process.resident_memory";
/// Virtual memory of the process (unit `By`).
pub(crate) const PROCESS_VIRTUAL_MEMORY: &str = "process.virtual_memory";
/// OS threads of the process.
pub(crate) const PROCESS_THREADS: &str = "process.threads";
/// Open file descriptors.
pub(crate) const PROCESS_OPEN_FDS: &str = "process.open_fds";
/// The limit on open file descriptors.
pub(crate) const PROCESS_MAX_FDS: &str = "process.max_fds";
/// When the process started, seconds since the Unix epoch (unit `s`).
pub(crate) const PROCESS_START_TIME: &str = "process.start_time";
/// Failed exports to the OTLP collector, by `signal` (spans, metrics).
pub(crate) const OTLP_EXPORT_FAILURES: &str = "mintcache.otlp.export_failures";

/// Every name above.
#[cfg(test)]
pub(crate) const ALL: &[&str] = &[
    RPC_REQUESTS,
    RPC_DURATION,
    RPC_IN_FLIGHT,
    RPC_SHED,
    MINT_OUTCOMES,
    DEGRADED_READS,
    BACKEND_DURATION,
    BACKEND_ERRORS,
    BACKEND_EJECTIONS,
    POOL_CONNECTIONS,
    POOL_WAITING,
    REPLY_BUFFERED,
    HOT_CACHE_HITS,
    HOT_CACHE_ENTRIES,
    HOT_CACHE_SIZE,
    EMBEDDED_ENTRIES,
    EMBEDDED_SIZE,
    EMBEDDED_CAPACITY,
    BUILD_INFO,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_VIRTUAL_MEMORY,
    PROCESS_THREADS,
    PROCESS_OPEN_FDS,
    PROCESS_MAX_FDS,
    PROCESS_START_TIME,
    OTLP_EXPORT_FAILURES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_namespaced() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(seen.insert(*name), "{name} declared twice");
            assert!(
                name.starts_with("mintcache.") || name.starts_with("process."),
                "{name}"
            );
        }
    }
}
