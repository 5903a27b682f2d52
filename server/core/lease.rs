//! Lease tokens: the opaque handle a `REFRESH` or `MISS` hands to its caller.
//!
//! A token is one format byte (`1`) followed by the item's CAS value (u64 big-endian) as the
//! store reported it. A `Set` carrying a token stores only if the item's CAS is still that one:
//! an `Invalidate`, `Delete` or other `Set` in between changes the CAS, so a value computed
//! before it can never become fresh.

const FORMAT: u8 = 1;
const LEN: usize = 9;

/// A lease on one item: the CAS value the refresher must still find when it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseToken(u64);

/// Why a lease token is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("lease_token is malformed (pass back the token a Get returned, unchanged)")]
pub struct LeaseTokenError;

impl LeaseToken {
    /// The lease on an item with this CAS value.
    pub fn new(cas: u64) -> Self {
        Self(cas)
    }

    /// The CAS value the item must still have.
    pub fn cas(self) -> u64 {
        self.0
    }

    /// The opaque bytes handed to callers.
    pub fn to_bytes(self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0] = FORMAT;
        out[1..].copy_from_slice(&self.0.to_be_bytes());
        out
    }

    /// Reads a token from a request; empty means "no lease".
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, LeaseTokenError> {
        match bytes {
            [] => Ok(None),
            [FORMAT, rest @ ..] if bytes.len() == LEN => {
                let mut cas = [0u8; 8];
                cas.copy_from_slice(rest);
                Ok(Some(Self(u64::from_be_bytes(cas))))
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
    fn malformed_tokens_are_refused() {
        assert_eq!(LeaseToken::parse(b""), Ok(None));
        assert_eq!(
            LeaseToken::parse(b"\x02\0\0\0\0\0\0\0\x01"),
            Err(LeaseTokenError)
        );
        assert_eq!(LeaseToken::parse(b"\x01\0"), Err(LeaseTokenError));
        assert_eq!(LeaseToken::parse(&[1u8; 10]), Err(LeaseTokenError));
    }

    proptest! {
        #[test]
        fn round_trip(cas: u64) {
            let token = LeaseToken::new(cas);
            prop_assert_eq!(LeaseToken::parse(&token.to_bytes()), Ok(Some(token)));
        }
    }
}
