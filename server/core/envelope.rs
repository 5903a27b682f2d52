//! The format of values in memcached.
//!
//! memcached's 32-bit client flags say which format an item has:
//!
//! | client flags | value bytes | meaning |
//! |---|---|---|
//! | `0x6d` in the top byte, grace seconds in the low 24 bits | `flags: u32 BE`, then the payload | a value set through mintcache (format 1) |
//! | `0`, empty value | — | a placeholder memcached created for a cold-miss lease (`mg … N`) |
//! | `0`, non-empty value | the number, in ASCII (possibly space-padded by memcached) | a counter (`Increment`; counters are not minted) |
//! | anything else | — | a format this server does not know: read as a miss |
//!
//! The grace travels with the item because memcached only keeps the hard expiry
//! (ttl + grace): the soft expiry is `hard remaining - grace`. It sits in the client flags so
//! that operations needing it (`Invalidate`, `Touch`) can read it with `mg <key> f`, without
//! fetching the value. The caller's own flags sit in a 4-byte header in front of the payload.
//!
//! Rolling upgrades: a server version that changes the format must use a new top byte and keep
//! reading this one, and write the old format until every replica reads the new one. An older
//! replica reads an unknown format as a miss (and recomputes it) rather than as garbage.

use bytes::{BufMut, Bytes, BytesMut};

/// Top byte of the client flags of a format-1 item (`'m'`).
pub(crate) const FORMAT_1: u32 = 0x6d00_0000;
/// Mask of the format byte.
const FORMAT_MASK: u32 = 0xff00_0000;
/// Largest grace format 1 can carry: 2^24 - 1 seconds (about 194 days).
pub(crate) const MAX_GRACE_SECONDS: u64 = 0x00ff_ffff;
/// Bytes the format-1 header adds before the payload.
pub(crate) const HEADER_LEN: usize = 4;

/// What an item's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// A value set through mintcache.
    Value {
        /// Seconds of grace the value was stored with.
        grace: u64,
        /// The caller's flags.
        flags: u32,
        /// The caller's bytes.
        payload: Bytes,
    },
    /// A cold-miss placeholder: no value yet.
    Placeholder,
    /// A counter.
    Counter(Bytes),
    /// A format this server does not know.
    Unknown,
}

/// The client flags of a format-1 item with this grace (clamped to [`MAX_GRACE_SECONDS`];
/// callers validate before).
pub(crate) fn client_flags(grace: u64) -> u32 {
    FORMAT_1 | u32::try_from(grace.min(MAX_GRACE_SECONDS)).unwrap_or(0)
}

/// The grace recorded in an item's client flags: `Some` for format-1 items, `Some(0)` for
/// counters and placeholders (flags 0), `None` for unknown formats.
pub(crate) fn grace_of(client_flags: u32) -> Option<u64> {
    match client_flags & FORMAT_MASK {
        FORMAT_1 => Some(u64::from(client_flags & !FORMAT_MASK)),
        0 if client_flags == 0 => Some(0),
        _ => None,
    }
}

/// Wraps a payload in a format-1 envelope; returns the bytes and the client flags to store.
pub(crate) fn encode(payload: &[u8], grace: u64, flags: u32) -> (Bytes, u32) {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u32(flags);
    out.put_slice(payload);
    (out.freeze(), client_flags(grace))
}

/// Reads an item's bytes according to its client flags.
pub(crate) fn decode(client_flags: u32, mut data: Bytes) -> Decoded {
    if client_flags == 0 {
        if data.is_empty() {
            return Decoded::Placeholder;
        }
        // memcached may leave a decremented counter space-padded to its old length.
        let digits = data
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(0, |last| last + 1);
        return Decoded::Counter(data.slice(..digits));
    }
    match grace_of(client_flags) {
        Some(grace) if data.len() >= HEADER_LEN => {
            let header = data.split_to(HEADER_LEN);
            Decoded::Value {
                grace,
                flags: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
                payload: data,
            }
        }
        _ => Decoded::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        assert_eq!(decode(0, Bytes::new()), Decoded::Placeholder);
        assert_eq!(
            decode(0, Bytes::from_static(b"42")),
            Decoded::Counter(Bytes::from_static(b"42"))
        );
        assert_eq!(
            decode(0, Bytes::from_static(b"9  ")),
            Decoded::Counter(Bytes::from_static(b"9"))
        );
        assert_eq!(
            decode(FORMAT_1 | 30, Bytes::from_static(b"abc")),
            Decoded::Unknown
        );
        assert_eq!(
            decode(0x6e00_0001, Bytes::from_static(b"12345678x")),
            Decoded::Unknown
        );
        assert_eq!(
            decode(7, Bytes::from_static(b"12345678x")),
            Decoded::Unknown
        );
        let (bytes, cf) = encode(b"", 30, 7);
        assert_eq!(cf, 0x6d00_001e);
        assert_eq!(
            decode(cf, bytes),
            Decoded::Value {
                grace: 30,
                flags: 7,
                payload: Bytes::new()
            }
        );
        assert_eq!(
            grace_of(client_flags(MAX_GRACE_SECONDS + 5)),
            Some(MAX_GRACE_SECONDS)
        );
        assert_eq!(grace_of(0), Some(0));
        assert_eq!(grace_of(0x0000_0005), None);
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512), grace in 0u64..=MAX_GRACE_SECONDS, flags: u32) {
            let (bytes, cf) = encode(&payload, grace, flags);
            prop_assert_eq!(bytes.len(), payload.len() + HEADER_LEN);
            prop_assert_eq!(grace_of(cf), Some(grace));
            prop_assert_eq!(decode(cf, bytes), Decoded::Value { grace, flags, payload: Bytes::from(payload) });
        }
    }
}
