//! The one place where errors become the statuses callers see: the handlers' domain errors,
//! and the refusals of the request path's layers (authentication, load shedding, deadlines,
//! request size, memory and read time).
//! Backend details stay in the logs: statuses carry a clear message for the caller and nothing
//! about memcached's internals.

use std::time::Duration;

use tonic::{Code, Status};

use super::proto;
use crate::cache::CacheError;
use crate::core::auth::AuthError;
use crate::core::meta::MetaError;

impl From<CacheError> for Status {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::EmptyKey
            | CacheError::KeyTooLong { .. }
            | CacheError::ValueTooLarge { .. }
            | CacheError::Ttl { .. }
            | CacheError::Lease(_)
            | CacheError::Field { .. } => Status::invalid_argument(e.to_string()),
            CacheError::NoCounter => Status::not_found(e.to_string()),
            CacheError::NotACounter | CacheError::CacheOff => {
                Status::failed_precondition(e.to_string())
            }
            CacheError::Unavailable(source) => {
                tracing::warn!(error = %source, "backend unavailable");
                Status::unavailable("cache backend unavailable")
            }
        }
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
    fn bad_input_is_invalid_argument_with_the_reason() {
        let status = Status::from(CacheError::KeyTooLong {
            len: 5000,
            max: 4096,
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("max_key_bytes"));
    }
}
