//! Label values, all from bounded sets: the RPCs of the Cache service, gRPC status codes by
//! their specification names, read outcomes. The request path's telemetry layer labels its spans
//! with the same names.

use opentelemetry::KeyValue;

use crate::core::mint::MintOutcome;

/// The RPCs of `mintcache.v1.Cache`, as metric and span labels (a closed set, so label
/// cardinality stays bounded whatever path a client sends; a test keeps it equal to the API's).
pub(crate) const RPCS: &[&str] = &[
    "Get",
    "Set",
    "Delete",
    "Add",
    "Touch",
    "Invalidate",
    "Increment",
    "GetMany",
    "SetMany",
    "DeleteMany",
    "Flush",
];

/// The name of a gRPC status code, as in the gRPC specification.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status codes whose request series exist from the start for every RPC: success, and the
/// failures an alert watches (client errors, refusals, overload, deadlines, backend and server
/// faults). Rarer codes appear with their first call.
pub(super) const WATCHED_CODES: [tonic::Code; 9] = [
    tonic::Code::Ok,
    tonic::Code::Cancelled,
    tonic::Code::InvalidArgument,
    tonic::Code::DeadlineExceeded,
    tonic::Code::Unauthenticated,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::Unavailable,
    tonic::Code::Internal,
];

/// The `read` label of `mintcache.mint.outcomes`: a read that takes part in the refresh
/// election (what applications do), or a peek (inspection tools, existence checks such as
/// Django's `has_key`), so that each has its own hit ratio.
pub(super) const READ_ELECT: &str = "elect";
/// See [`READ_ELECT`].
pub(super) const READ_PEEK: &str = "peek";

/// The outcomes a peek can have: it never wins an election, so never `refresh`.
pub(super) const PEEK_OUTCOMES: [MintOutcome; 4] = [
    MintOutcome::Hit,
    MintOutcome::Stale,
    MintOutcome::Miss,
    MintOutcome::Pending,
];

/// The labels of a read in `mintcache.mint.outcomes`.
pub(super) fn outcome_labels(outcome: MintOutcome, read: &'static str) -> [KeyValue; 2] {
    [
        KeyValue::new("outcome", outcome.as_str()),
        KeyValue::new("read", read),
    ]
}

/// The labels of a call in `mintcache.rpc.requests`.
pub(super) fn call_labels(
    rpc: &'static str,
    code: &'static str,
    outcome: &'static str,
) -> [KeyValue; 3] {
    [
        KeyValue::new("rpc", rpc),
        KeyValue::new("code", code),
        KeyValue::new("outcome", outcome),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_specification_name() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let name = code_name(code);
            assert_eq!(name, name.to_ascii_uppercase());
        }
        assert_eq!(
            code_name(tonic::Code::ResourceExhausted),
            "RESOURCE_EXHAUSTED"
        );
    }
}
