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
//! - formats `4` (as `3`) and `5` (as `2`) followed by when the lease was issued (Unix
//!   milliseconds, u64 big-endian): the `Set` that carries it learns how long the value took to
//!   recompute, whichever replica it reaches, for early refresh. Issued only while early
//!   refresh is on, so that a fleet upgrading from a version without them can keep it off.

use super::item::Cas;

const OLD_CAS_FORMAT: u8 = 1;
const ABSENT_FORMAT: u8 = 2;
const CAS_FORMAT: u8 = 3;
const TIMED_CAS_FORMAT: u8 = 4;
const TIMED_ABSENT_FORMAT: u8 = 5;
const OLD_CAS_LEN: usize = 9;
const CAS_LEN: usize = 17;
const TIMED_CAS_LEN: usize = 25;
const TIMED_ABSENT_LEN: usize = 9;
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
        self.to_bytes_issued(None)
    }

    /// The opaque bytes handed to callers, with when the lease was issued (Unix ms) if given.
    pub(crate) fn to_bytes_issued(self, issued_at_ms: Option<u64>) -> Vec<u8> {
        let mut out = Vec::with_capacity(TIMED_CAS_LEN);
        match (self, issued_at_ms) {
            (Self::Cas(cas), issued) => {
                out.push(if issued.is_some() {
                    TIMED_CAS_FORMAT
                } else {
                    CAS_FORMAT
                });
                out.extend_from_slice(&cas.instance.to_be_bytes());
                out.extend_from_slice(&cas.value.to_be_bytes());
            }
            (Self::Absent, issued) => out.push(if issued.is_some() {
                TIMED_ABSENT_FORMAT
            } else {
                ABSENT_FORMAT
            }),
        }
        if let Some(at) = issued_at_ms {
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }

    /// Reads a token from a request; empty means "no lease".
    pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Self>, LeaseTokenError> {
        Self::parse_issued(bytes).map(|lease| lease.map(|(token, _)| token))
    }

    /// Reads a token and when it was issued (Unix ms), if it says.
    pub(crate) fn parse_issued(
        bytes: &[u8],
    ) -> Result<Option<(Self, Option<u64>)>, LeaseTokenError> {
        let cas = |rest: &[u8]| Cas {
            instance: be_u64(&rest[..8]),
            value: be_u64(&rest[8..16]),
        };
        match bytes {
            [] => Ok(None),
            [ABSENT_FORMAT] => Ok(Some((Self::Absent, None))),
            [TIMED_ABSENT_FORMAT, rest @ ..] if bytes.len() == TIMED_ABSENT_LEN => {
                Ok(Some((Self::Absent, Some(be_u64(rest)))))
            }
            [CAS_FORMAT, rest @ ..] if bytes.len() == CAS_LEN => {
                Ok(Some((Self::Cas(cas(rest)), None)))
            }
            [TIMED_CAS_FORMAT, rest @ ..] if bytes.len() == TIMED_CAS_LEN => {
                Ok(Some((Self::Cas(cas(rest)), Some(be_u64(&rest[16..])))))
            }
            [OLD_CAS_FORMAT, rest @ ..] if bytes.len() == OLD_CAS_LEN => Ok(Some((
                Self::Cas(Cas {
                    instance: NO_INSTANCE,
                    value: be_u64(rest),
                }),
                None,
            ))),
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
        assert_eq!(LeaseToken::parse(b"\x05"), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(&[6u8; 9]), Err(LeaseTokenError));
        // Timed tokens say when they were issued.
        let timed = LeaseToken::Absent.to_bytes_issued(Some(1_800_000_000_123));
        assert_eq!(timed.len(), 9);
        assert_eq!(
            LeaseToken::parse_issued(&timed),
            Ok(Some((LeaseToken::Absent, Some(1_800_000_000_123))))
        );
        let cas = Cas {
            instance: 9,
            value: 11,
        };
        let timed = LeaseToken::Cas(cas).to_bytes_issued(Some(5));
        assert_eq!(timed.len(), 25);
        assert_eq!(
            LeaseToken::parse_issued(&timed),
            Ok(Some((LeaseToken::Cas(cas), Some(5))))
        );
        assert_eq!(LeaseToken::parse(&timed), Ok(Some(LeaseToken::Cas(cas))));
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
        fn round_trip(instance: u64, value: u64, issued: Option<u64>) {
            let token = LeaseToken::Cas(Cas { instance, value });
            prop_assert_eq!(LeaseToken::parse(&token.to_bytes()), Ok(Some(token)));
            prop_assert_eq!(LeaseToken::parse_issued(&token.to_bytes_issued(issued)), Ok(Some((token, issued))));
            let absent = LeaseToken::Absent;
            prop_assert_eq!(LeaseToken::parse_issued(&absent.to_bytes_issued(issued)), Ok(Some((absent, issued))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..30)) {
            if let Ok(Some((token, issued))) = LeaseToken::parse_issued(&bytes)
                && bytes[0] != OLD_CAS_FORMAT {
                    prop_assert_eq!(token.to_bytes_issued(issued), bytes);
                }
        }
    }
}
