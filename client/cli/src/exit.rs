//! What a command came to, as the process's exit status.

/// The exit status of a command (documented in `mintcache --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// 0: found or done (a hit, a value stored, a key deleted, `SERVING`, ...).
    Success,
    /// 1: not found or not done: `MISS`, `REFRESH`, `PENDING`, a value not stored, a missing
    /// key or counter, a health status other than `SERVING`; for a batch, at least one key.
    Miss,
    /// 2: a usage error: bad arguments or input, an unreadable file. Nothing was sent.
    Usage,
    /// 3: no mintcache server could be reached: connection refused, TLS failure, something
    /// that is not a mintcache gRPC port, no answer.
    Unreachable,
    /// 4: the server refused or failed the call (an error status such as
    /// `INVALID_ARGUMENT`, `UNAUTHENTICATED`, `DEADLINE_EXCEEDED`).
    Failed,
    /// 5: the cache backend behind the server (memcached) is unavailable.
    BackendUnavailable,
}

impl Exit {
    /// The process exit code: 0 to 5.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Miss => 1,
            Self::Usage => 2,
            Self::Unreachable => 3,
            Self::Failed => 4,
            Self::BackendUnavailable => 5,
        }
    }

    /// 0 when done, 1 when not.
    pub(crate) fn from_bool(done: bool) -> Self {
        if done { Self::Success } else { Self::Miss }
    }
}
