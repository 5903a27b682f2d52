//! The one place where errors become the statuses callers see: the handlers' domain errors,
//! and the refusals of the request path's layers (authentication, load shedding, deadlines,
//! request size, memory and read time).
//! Backend details stay in the logs: statuses carry a clear message for the caller and nothing
//! about memcached's internals.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::proto;
use crate::cache::CacheError;
use crate::core::auth::AuthError;
use crate::core::meta::MetaError;
use crate::store::Refusal;

impl From<CacheError> for Status {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::EmptyKey
            | CacheError::KeyTooLong { .. }
            | CacheError::ValueTooLarge { .. }
            | CacheError::Ttl { .. }
            | CacheError::Lease(_)
            | CacheError::BadBeta
            | CacheError::Field { .. } => Status::invalid_argument(e.to_string()),
            CacheError::NoCounter => Status::not_found(e.to_string()),
            CacheError::NotACounter | CacheError::CacheOff => {
                Status::failed_precondition(e.to_string())
            }
            CacheError::Unavailable(source) => {
                if let Some(unlogged) = UNAVAILABLE_LOG.admit(Instant::now()) {
                    tracing::warn!(error = %source, similar_since_last_report = unlogged, "backend unavailable");
                }
                Status::unavailable("cache backend unavailable")
            }
            CacheError::Refused { node, refusal } => refused(&node, refusal),
            CacheError::NoRoom { .. } => Status::resource_exhausted(e.to_string()),
        }
    }
}

/// A memcached server refused one command. The server is fine and serves other keys, so this
/// is never UNAVAILABLE (clients retry that, and would send the same item again); each refusal
/// is counted in `mintcache_backend_errors_total{kind="refused"}`.
fn refused(node: &str, refusal: Refusal) -> Status {
    match refusal {
        Refusal::TooLarge => {
            tracing::debug!(%node, "memcached refused an item over its item size limit");
            Status::resource_exhausted(
                "value too large for memcached's item size limit (memcached -I)",
            )
        }
        Refusal::OutOfMemory => {
            tracing::debug!(%node, "memcached has no memory for an item");
            Status::resource_exhausted("memcached is out of memory for this item")
        }
        // Any other refusal (`CLIENT_ERROR …`, `ERROR`, an unknown `SERVER_ERROR …`) means that
        // the server would not take a command the service built: the two disagree about the
        // protocol (a memcached without the meta commands, or a bug here). Retrying cannot
        // help, so not UNAVAILABLE; INTERNAL is what alerts watch. The server's words go to
        // the log (rate-limited: every call may hit it), never to the caller.
        Refusal::Other(reason) => {
            if let Some(unlogged) = REFUSED_LOG.admit(Instant::now()) {
                tracing::warn!(%node, %reason, similar_since_last_report = unlogged, "memcached refused a command");
            }
            Status::internal("memcached refused the command")
        }
    }
}

/// At most one log line per this long about calls that failed the same way: during an outage
/// every call fails, and a line each would flood the logs (metrics count every one).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Calls failed because the backend is unavailable.
static UNAVAILABLE_LOG: LogLimit = LogLimit::new();
/// Commands memcached refused for a reason other than the item's size or its memory.
static REFUSED_LOG: LogLimit = LogLimit::new();

/// Lets one log line through per [`LOG_INTERVAL`] and counts the others.
struct LogLimit {
    /// When the last line went out. A std mutex: held for a few instructions, never across an
    /// await.
    last: Mutex<Option<Instant>>,
    unlogged: AtomicU64,
}

impl LogLimit {
    const fn new() -> Self {
        Self {
            last: Mutex::new(None),
            unlogged: AtomicU64::new(0),
        }
    }

    /// `Some(events not logged since the last line)` when a line may go out at `now`.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::AuthorizationTooLong
            | AuthError::MalformedAuthorization
            | AuthError::UnknownToken
            | AuthError::MissingToken => Status::unauthenticated(e.to_string()),
            AuthError::DebugNotAllowed => Status::permission_denied(e.to_string()),
            AuthError::BadDebugValue => Status::invalid_argument(e.to_string()),
        }
    }
}

/// A call refused because `server.max_concurrent_calls` calls are being served.
pub(crate) fn shed() -> Status {
    Status::resource_exhausted(
        "server is at its concurrency limit (server.max_concurrent_calls); retry with backoff",
    )
}

/// A call whose `grpc-timeout` ran out before it was answered.
pub(crate) fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

/// A call whose request did not arrive within `server.request_read_timeout_ms`.
pub(crate) fn request_read_timeout(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "request not received within server.request_read_timeout_ms ({} ms)",
        timeout.as_millis()
    ))
}

/// A request message announced over `server.max_message_bytes`.
pub(crate) fn message_too_large(len: u32, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "request message too large: {len} bytes, over server.max_message_bytes ({max})"
    ))
}

/// A call refused because the request bytes held by calls reached
/// `server.max_buffered_request_bytes`.
pub(crate) fn request_budget_spent(budget: usize) -> Status {
    Status::resource_exhausted(format!(
        "server is at its request memory budget (server.max_buffered_request_bytes, {budget} bytes); retry with backoff"
    ))
}

/// A call whose request stopped arriving: its client reset the stream or the connection
/// closed. The client's doing, so never INTERNAL.
pub(crate) fn request_abandoned() -> Status {
    Status::cancelled("request not received: the call was cancelled or its connection closed")
}

/// A call whose request ended inside a message.
pub(crate) fn request_cut_short() -> Status {
    Status::invalid_argument("request ended inside a message")
}

/// The per-key error of a batched call.
pub(crate) fn key_error(e: CacheError) -> proto::KeyError {
    let status = Status::from(e);
    proto::KeyError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

/// The status of a call whose metadata layer did not run (a wiring bug, never a client error).
pub(crate) fn missing_call_meta() -> Status {
    tracing::error!("call context missing: a request-path layer is not wired");
    Status::new(Code::Internal, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn backend_text_never_reaches_the_caller() {
        let status = Status::from(CacheError::Unavailable(StoreError::Protocol {
            node: "10.1.2.3:11211".into(),
            reason: "SERVER_ERROR out of memory".into(),
        }));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("10.1.2.3"));
        assert!(!status.message().contains("SERVER_ERROR"));
    }

    #[test]
    fn refusals_of_the_request_path() {
        assert_eq!(
            Status::from(AuthError::UnknownToken).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            Status::from(AuthError::MissingToken).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            Status::from(AuthError::DebugNotAllowed).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            Status::from(AuthError::BadDebugValue).code(),
            Code::InvalidArgument
        );
        assert_eq!(shed().code(), Code::ResourceExhausted);
        assert!(shed().message().contains("server.max_concurrent_calls"));
        assert_eq!(deadline_exceeded().code(), Code::DeadlineExceeded);
        let slow = request_read_timeout(Duration::from_millis(1500));
        assert_eq!(slow.code(), Code::DeadlineExceeded);
        assert!(
            slow.message()
                .contains("server.request_read_timeout_ms (1500 ms)")
        );
        let large = message_too_large(5000, 4096);
        assert_eq!(large.code(), Code::ResourceExhausted);
        assert!(large.message().contains("too large"));
        assert!(large.message().contains("server.max_message_bytes (4096)"));
        let spent = request_budget_spent(1 << 20);
        assert_eq!(spent.code(), Code::ResourceExhausted);
        assert!(
            spent
                .message()
                .contains("server.max_buffered_request_bytes")
        );
        assert_eq!(request_abandoned().code(), Code::Cancelled);
        assert_eq!(request_cut_short().code(), Code::InvalidArgument);
        let repeated = Status::from(MetaError::Repeated {
            header: "x-cache-version",
        });
        assert_eq!(repeated.code(), Code::InvalidArgument);
        assert!(repeated.message().contains("x-cache-version"));
    }

    #[test]
    fn refusals_of_one_item_are_not_unavailable() {
        let refused = |refusal| {
            Status::from(CacheError::from(StoreError::Refused {
                node: "10.1.2.3:11211".into(),
                refusal,
            }))
        };
        let large = refused(Refusal::TooLarge);
        assert_eq!(large.code(), Code::ResourceExhausted);
        assert_eq!(
            large.message(),
            "value too large for memcached's item size limit (memcached -I)"
        );
        let memory = refused(Refusal::OutOfMemory);
        assert_eq!(memory.code(), Code::ResourceExhausted);
        assert_eq!(memory.message(), "memcached is out of memory for this item");
        let other = refused(Refusal::Other(
            "CLIENT_ERROR bad command line format".into(),
        ));
        assert_eq!(other.code(), Code::Internal);
        assert!(!other.message().contains("CLIENT_ERROR"));
        assert!(!other.message().contains("10.1.2.3"));
        // Every other failure still makes the backend unavailable.
        let timeout = Status::from(CacheError::from(StoreError::Timeout {
            node: "10.1.2.3:11211".into(),
            stalled: true,
        }));
        assert_eq!(timeout.code(), Code::Unavailable);
    }

    #[test]
    fn log_lines_are_limited_and_count_what_they_left_out() {
        let limit = LogLimit::new();
        let start = Instant::now();
        assert_eq!(limit.admit(start), Some(0));
        for i in 1..=5 {
            assert_eq!(limit.admit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.admit(start + LOG_INTERVAL), Some(5));
        assert_eq!(limit.admit(start + LOG_INTERVAL), None);
    }

    #[test]
    fn bad_input_is_invalid_argument_with_the_reason() {
        let status = Status::from(CacheError::KeyTooLong {
            len: 5000,
            max: 4096,
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("max_key_bytes"));
    }
}
