//! Lease tokens: the opaque handle a `REFRESH` or `MISS` hands to its caller.
//!
//! A `Set` that carries a token stores only if nothing happened to the key since the read
//! that handed it out:
//! - format `1` + CAS (u64 big-endian), from a `REFRESH` or a cold-miss `MISS` (which created a
//!   placeholder): the item must still have that CAS value. An `Invalidate`, `Delete` or other
//!   `Set` in between changes it, so a value computed before them never becomes fresh.
//! - format `2` alone, from a plain `MISS`: the key must still hold no value (the write is an
//!   add), so a value computed from older data never overwrites one stored since.

const CAS_FORMAT: u8 = 1;
const ABSENT_FORMAT: u8 = 2;
const CAS_LEN: usize = 9;

/// What a lease holder expects to find when it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseToken {
    /// The item with this CAS value.
    Cas(u64),
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
                out.extend_from_slice(&cas.to_be_bytes());
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
            [CAS_FORMAT, rest @ ..] if bytes.len() == CAS_LEN => {
                let mut cas = [0u8; 8];
                cas.copy_from_slice(rest);
                Ok(Some(Self::Cas(u64::from_be_bytes(cas))))
            }
            _ => Err(LeaseTokenError),
        }
    }
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
    }

    proptest! {
        #[test]
        fn round_trip(cas: u64) {
            let token = LeaseToken::Cas(cas);
            prop_assert_eq!(LeaseToken::parse(&token.to_bytes()), Ok(Some(token)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some(token)) = LeaseToken::parse(&bytes) {
                prop_assert_eq!(token.to_bytes(), bytes);
            }
        }
    }
}
