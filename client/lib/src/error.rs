//! The client's error type.

use std::fmt;

use tonic::Code;

/// A boxed error from a caller's compute function (see [`Client::get_or_compute`]).
///
/// [`Client::get_or_compute`]: crate::Client::get_or_compute
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a [`Client`](crate::Client) call.
///
/// Errors answered by the server (and transport failures, which tonic reports as
/// `UNAVAILABLE`) are [`Error::Status`]; [`Error::code`] gives their gRPC code.
///
/// ```
/// use mintcache_client::Error;
///
/// let error = Error::from(tonic::Status::not_found("no such counter"));
/// assert_eq!(error.code(), Some(tonic::Code::NotFound));
/// assert_eq!(error.to_string(), "NOT_FOUND: no such counter");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given no endpoint.
    #[error("no endpoint configured")]
    NoEndpoint,
    /// More endpoints than one client can balance over.
    #[error("{given} endpoints given, at most {max} are supported")]
    TooManyEndpoints {
        /// How many were given.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// An endpoint is not a valid URI (or its TLS settings were rejected).
    #[error("invalid endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What was wrong with it.
        #[source]
        source: tonic::transport::Error,
    },
    /// [`ClientBuilder::connect`](crate::ClientBuilder::connect) could not reach the server.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint that was tried.
        endpoint: String,
        /// Why the connection failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// A metadata value (version, namespace, token) cannot be sent as an ASCII header value.
    #[error("invalid {header} value: must be visible ASCII")]
    InvalidMetadata {
        /// The metadata key.
        header: &'static str,
    },
    /// The server answered with an error status, or the call failed in transport
    /// (`UNAVAILABLE`) or ran out of time (`DEADLINE_EXCEEDED`).
    #[error("{}", StatusDisplay(.0))]
    Status(#[from] tonic::Status),
    /// The server sent something this client does not understand (e.g. an unknown outcome).
    #[error("unexpected response from server: {0}")]
    Protocol(String),
    /// The compute function of [`Client::get_or_compute`](crate::Client::get_or_compute) failed.
    #[error("computing the value failed: {0}")]
    Compute(#[source] BoxError),
}

impl Error {
    /// The gRPC status code, for [`Error::Status`].
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }

    /// The compute error, for [`Error::Compute`].
    pub fn into_compute_error(self) -> Option<BoxError> {
        match self {
            Self::Compute(e) => Some(e),
            _ => None,
        }
    }
}

/// Formats a status as `CODE_NAME: message` (tonic's own `Display` also dumps metadata).
struct StatusDisplay<'a>(&'a tonic::Status);

impl fmt::Display for StatusDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", code_name(self.0.code()))?;
        if !self.0.message().is_empty() {
            write!(f, ": {}", self.0.message())?;
        }
        Ok(())
    }
}

/// The canonical upper-case name of a gRPC code (`UNAVAILABLE`, `NOT_FOUND`, ...), as the gRPC
/// specification spells it: what the CLI prints and the load generator counts failures by.
///
/// The server has its own copy (for its metric labels): neither crate depends on the other, so
/// that users of this client never compile the server.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_display_is_code_and_message() {
        let e = Error::from(tonic::Status::unavailable("tcp connect error"));
        assert_eq!(e.to_string(), "UNAVAILABLE: tcp connect error");
        let e = Error::from(tonic::Status::new(Code::Internal, ""));
        assert_eq!(e.to_string(), "INTERNAL");
        assert_eq!(e.code(), Some(Code::Internal));
        assert_eq!(Error::NoEndpoint.code(), None);
    }

    #[test]
    fn code_names_follow_the_grpc_spec() {
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
    }
}
