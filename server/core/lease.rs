//! Lease tokens: the opaque handle a `REFRESH` or `MISS` hands to its caller.
//!
//! A `Set` that carries a token stores only if nothing happened to the key since the read
//! that handed it out:
//! - format `3` + store instance (u64 big-endian) + CAS (u64 big-endian), from a `REFRESH` or
//!   a cold-miss `MISS` (which created a placeholder): the item must still have that CAS value,
//!   in the same store instance. An `Invalidate`, `Delete` or other `Set` in between changes
//!   it, so a value computed before them never becomes fresh; and since memcached counts CAS
//!   values from 1 again when it restarts, a token from before a restart never matches an item
//!   stored after it.
//! - format `2` alone, from a plain `MISS`: the key must still hold no value (the write is an
//!   add), so a value computed from older data never overwrites one stored since.
//! - format `1` + CAS, handed out by earlier server versions, named no instance: it is read as
//!   an outdated lease (the write is refused as `stored = false`), never as a match.

use super::item::Cas;

const OLD_CAS_FORMAT: u8 = 1;
const ABSENT_FORMAT: u8 = 2;
const CAS_FORMAT: u8 = 3;
const OLD_CAS_LEN: usize = 9;
const CAS_LEN: usize = 17;
/// The instance no store has: an old-format token's, which therefore never matches.
const NO_INSTANCE: u64 = 0;

/// What a lease holder expects to find when it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseToken {
    /// The item with this CAS value.
    Cas(Cas),
    /// No item.
    Absent,
}

/// Why a lease token is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("lease_token is malformed (pass back the token a Get returned, unchanged)")]
pub(crate) struct LeaseTokenError;

impl LeaseToken {
    /// The opaque bytes handed to callers.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        match self {
            Self::Cas(cas) => {
                let mut out = Vec::with_capacity(CAS_LEN);
                out.push(CAS_FORMAT);
                out.extend_from_slice(&cas.instance.to_be_bytes());
                out.extend_from_slice(&cas.value.to_be_bytes());
                out
            }
            Self::Absent => vec![ABSENT_FORMAT],
        }
    }

    /// Reads a token from a request; empty means "no lease".
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Self>, LeaseTokenError> {
        match bytes {
            [] => Ok(None),
            [ABSENT_FORMAT] => Ok(Some(Self::Absent)),
            [CAS_FORMAT, rest @ ..] if bytes.len() == CAS_LEN => Ok(Some(Self::Cas(Cas {
                instance: be_u64(&rest[..8]),
                value: be_u64(&rest[8..]),
            }))),
            [OLD_CAS_FORMAT, rest @ ..] if bytes.len() == OLD_CAS_LEN => Ok(Some(Self::Cas(Cas {
                instance: NO_INSTANCE,
                value: be_u64(rest),
            }))),
            _ => Err(LeaseTokenError),
        }
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    u64::from_be_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats() {
        assert_eq!(LeaseToken::parse(b""), Ok(None));
        assert_eq!(LeaseToken::parse(b"\x02"), Ok(Some(LeaseToken::Absent)));
        assert_eq!(LeaseToken::Absent.to_bytes(), b"\x02");
        assert_eq!(
            LeaseToken::parse(b"\x02\0\0\0\0\0\0\0\x01"),
            Err(LeaseTokenError)
        );
        assert_eq!(LeaseToken::parse(b"\x01\0"), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(&[1u8; 10]), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(b"\x03"), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(&[3u8; 9]), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(b"\x04"), Err(LeaseTokenError));
        // Tokens of earlier versions name no instance: they never match an item.
        assert_eq!(
            LeaseToken::parse(b"\x01\0\0\0\0\0\0\0\x07"),
            Ok(Some(LeaseToken::Cas(Cas {
                instance: NO_INSTANCE,
                value: 7
            })))
        );
    }

    proptest! {
        #[test]
        fn round_trip(instance: u64, value: u64) {
            let token = LeaseToken::Cas(Cas { instance, value });
            prop_assert_eq!(LeaseToken::parse(&token.to_bytes()), Ok(Some(token)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some(token)) = LeaseToken::parse(&bytes)
                && bytes[0] != OLD_CAS_FORMAT {
                    prop_assert_eq!(token.to_bytes(), bytes);
                }
        }
    }
}
