//! Conversion between protobuf messages and domain types, in one file.

use super::proto;
use crate::cache::SetArgs;
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
            outcome: proto::Outcome::from(l.outcome).into(),
            value: l.value,
            flags: l.flags,
            ttl_seconds: seconds(l.ttl_seconds),
            lease_token: l
                .lease
                .map(|t| bytes::Bytes::copy_from_slice(&t.to_bytes()))
                .unwrap_or_default(),
        }
    }
}

impl From<proto::SetRequest> for SetArgs {
    fn from(r: proto::SetRequest) -> Self {
        Self {
            key: r.key,
            value: r.value,
            ttl_seconds: r.ttl_seconds,
            grace_seconds: r.grace_seconds,
            flags: r.flags,
            lease_token: r.lease_token,
        }
    }
}

impl From<proto::AddRequest> for SetArgs {
    fn from(r: proto::AddRequest) -> Self {
        Self {
            key: r.key,
            value: r.value,
            ttl_seconds: r.ttl_seconds,
            grace_seconds: r.grace_seconds,
            flags: r.flags,
            lease_token: bytes::Bytes::new(),
        }
    }
}
