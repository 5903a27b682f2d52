//! Why a run could not be done: one error type for every part of the run.

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("storing the keys before the run failed: {0}")]
    Prefill(String),
    #[error("memcached {addr}: {reason}")]
    Memcached { addr: String, reason: String },
    #[error("stampede setup: {0}")]
    Setup(String),
    #[error("interrupted before the load started")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
}
