//! Conversion between protobuf messages and domain types, in one file.

use super::proto;
use super::status::key_error;
use crate::cache::{CacheError, Read, SetArgs};
use crate::core::mint::{Lookup, MintOutcome};

impl From<MintOutcome> for proto::Outcome {
    fn from(o: MintOutcome) -> Self {
        match o {
            MintOutcome::Hit => Self::Hit,
            MintOutcome::Stale => Self::Stale,
            MintOutcome::Refresh => Self::Refresh,
            MintOutcome::Miss => Self::Miss,
            MintOutcome::Pending => Self::Pending,
        }
    }
}

/// Seconds as the API's signed type (values are bounded far below `i64::MAX`).
fn seconds(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl From<Lookup> for proto::GetResponse {
    fn from(l: Lookup) -> Self {
        Self {
            counter: l.counter,
            outcome: proto::Outcome::from(l.outcome).into(),
            value: l.value,
            flags: l.flags,
            ttl_seconds: seconds(l.ttl_seconds),
            lease_token: l
                .lease
                .map(|t| t.to_bytes_issued(l.issued_at_ms).into())
                .unwrap_or_default(),
            no_expiry: l.no_expiry,
            grace_seconds: seconds(l.grace_seconds),
        }
    }
}

/// One result of a batched read.
pub(crate) fn get_many_result(
    key: bytes::Bytes,
    read: Result<Read, CacheError>,
) -> proto::GetManyResult {
    match read {
        Ok(read) => {
            let r = proto::GetResponse::from(read.lookup);
            proto::GetManyResult {
                counter: r.counter,
                key,
                error: None,
                outcome: r.outcome,
                value: r.value,
                flags: r.flags,
                ttl_seconds: r.ttl_seconds,
                lease_token: r.lease_token,
                no_expiry: r.no_expiry,
                grace_seconds: r.grace_seconds,
            }
        }
        Err(e) => proto::GetManyResult {
            key,
            error: Some(key_error(e)),
            ..Default::default()
        },
    }
}

/// The per-key error and the flag of one result of a batched write.
fn flag_or_error(result: Result<bool, CacheError>) -> (Option<proto::KeyError>, bool) {
    match result {
        Ok(flag) => (None, flag),
        Err(e) => (Some(key_error(e)), false),
    }
}

/// One result of a batched store.
pub(crate) fn set_many_result(
    key: bytes::Bytes,
    stored: Result<bool, CacheError>,
) -> proto::SetManyResult {
    let (error, stored) = flag_or_error(stored);
    proto::SetManyResult { key, error, stored }
}

/// One result of a batched removal.
pub(crate) fn delete_many_result(
    key: bytes::Bytes,
    deleted: Result<bool, CacheError>,
) -> proto::DeleteManyResult {
    let (error, deleted) = flag_or_error(deleted);
    proto::DeleteManyResult {
        key,
        error,
        deleted,
    }
}

/// The fields every store request shares (`SetRequest`, `SetManyItem`, `AddRequest` name
/// them alike), with its lease token.
macro_rules! set_args {
    ($r:expr, $lease_token:expr) => {
        SetArgs {
            key: $r.key,
            value: $r.value,
            ttl_seconds: $r.ttl_seconds,
            grace_seconds: $r.grace_seconds,
            flags: $r.flags,
            lease_token: $lease_token,
            no_expiry: $r.no_expiry,
            no_grace: $r.no_grace,
            counter: $r.counter,
            recompute_ms: $r.recompute_ms,
        }
    };
}

impl From<proto::SetRequest> for SetArgs {
    fn from(r: proto::SetRequest) -> Self {
        set_args!(r, r.lease_token)
    }
}

impl From<proto::SetManyItem> for SetArgs {
    fn from(r: proto::SetManyItem) -> Self {
        set_args!(r, r.lease_token)
    }
}

impl From<proto::AddRequest> for SetArgs {
    fn from(r: proto::AddRequest) -> Self {
        set_args!(r, bytes::Bytes::new())
    }
}
