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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cache::fit_reads;
    use crate::core::batch::{MESSAGE_OVERHEAD, RESULT_OVERHEAD, answer_room};
    use crate::core::item::Cas;
    use crate::core::lease::LeaseToken;
    use crate::store::StoreError;

    /// A batched answer built by [`fit_reads`] within [`answer_room`] always fits in one
    /// message, whatever its keys (duplicates too), values, leases and errors: what
    /// `core::batch` counts per result covers what a result encodes to.
    #[test]
    fn batched_answers_fit_in_one_message() {
        use proptest::prelude::*;
        use prost::Message as _;
        let key = proptest::collection::vec(any::<u8>(), 1..300);
        let answer = prop_oneof![
            (0usize..200_000, any::<u64>(), any::<u64>()).prop_map(|(len, ttl, cas)| {
                let mut lookup = Lookup::miss();
                lookup.outcome = MintOutcome::Refresh;
                lookup.value = Bytes::from(vec![7u8; len]);
                lookup.flags = u32::MAX;
                lookup.ttl_seconds = ttl;
                lookup.grace_seconds = ttl;
                lookup.lease = Some(LeaseToken::Cas(Cas {
                    instance: cas,
                    value: cas,
                }));
                Ok(Read {
                    lookup,
                    degraded: false,
                })
            }),
            Just(Ok(Read {
                lookup: Lookup::miss(),
                degraded: true
            })),
            any::<usize>().prop_map(|size| Err(CacheError::NoRoom { size })),
            Just(Err(CacheError::Unavailable(StoreError::Timeout {
                node: "10.0.0.1:11211".to_owned(),
                stalled: true
            }))),
            (any::<usize>(), any::<usize>())
                .prop_map(|(len, max)| Err(CacheError::KeyTooLong { len, max })),
        ];
        let cases = (
            proptest::collection::vec((key, answer), 1..60),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
            10_000usize..2_000_000,
        );
        proptest!(|((distinct, repeats, max_message) in cases)| {
            let mut keys: Vec<Bytes> = distinct.iter().map(|(k, _)| Bytes::from(k.clone())).collect();
            let mut of_position: Vec<usize> = (0..keys.len()).collect();
            for r in repeats {
                let i = r.index(distinct.len());
                keys.push(keys[i].clone());
                of_position.push(i);
            }
            let answers: Vec<Result<Read, CacheError>> =
                distinct.into_iter().map(|(_, a)| a).collect();
            let fixed: usize = keys.iter().map(|k| k.len() + RESULT_OVERHEAD).sum();
            prop_assume!(fixed + MESSAGE_OVERHEAD <= max_message);
            let room = answer_room(max_message, &keys);
            let fitted = fit_reads(&answers, &of_position, room);
            let results = keys
                .into_iter()
                .zip(fitted)
                .map(|(key, read)| get_many_result(key, read))
                .collect();
            let response = proto::GetManyResponse { results };
            // gRPC frames a message with 5 bytes.
            prop_assert!(response.encoded_len() + 5 <= max_message);
        });
    }
}
