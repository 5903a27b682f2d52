//! The format of values in memcached.
//!
//! memcached's 32-bit client flags say which format an item has:
//!
//! | client flags | value bytes | meaning |
//! |---|---|---|
//! | `0x6d` in the top byte, grace seconds in the low 24 bits | `flags: u32 BE`, then the payload | a value set through mintcache (format 1) |
//! | `0x6e` in the top byte, grace seconds in the low 24 bits | `flags: u32 BE`, `recompute_ms: u32 BE`, then the payload | a value with the time its last recomputation took (format 2), for early refresh |
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
//! replica reads an unknown format as a miss (and recomputes it) rather than as garbage. Format
//! 2 is written only for values whose recomputation time is known and only while early refresh
//! is on (`cache.early_refresh_beta` above 0); with it at 0, a server writes format 1 alone,
//! which is how a fleet upgrades from a version that reads format 1 only.

use bytes::{BufMut, Bytes, BytesMut};

/// Top byte of the client flags of a format-1 item (`'m'`).
pub(crate) const FORMAT_1: u32 = 0x6d00_0000;
/// Top byte of the client flags of a format-2 item (`'n'`): format 1 with the value's
/// recomputation time.
pub(crate) const FORMAT_2: u32 = 0x6e00_0000;
/// Mask of the format byte.
const FORMAT_MASK: u32 = 0xff00_0000;
/// Largest grace format 1 can carry: 2^24 - 1 seconds (about 194 days).
pub(crate) const MAX_GRACE_SECONDS: u64 = 0x00ff_ffff;
/// Bytes the format-1 header adds before the payload.
pub(crate) const HEADER_LEN: usize = 4;
/// Bytes the format-2 header adds before the payload: the largest header.
pub(crate) const MAX_HEADER_LEN: usize = 8;

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
        /// How long the value's last recomputation took, when known (format 2).
        recompute_ms: Option<u32>,
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
#[cfg(test)]
pub(crate) fn client_flags(grace: u64) -> u32 {
    FORMAT_1 | u32::try_from(grace.min(MAX_GRACE_SECONDS)).unwrap_or(0)
}

/// The grace bits of client flags.
fn grace_bits(grace: u64) -> u32 {
    u32::try_from(grace.min(MAX_GRACE_SECONDS)).unwrap_or(0)
}

/// The grace recorded in an item's client flags: `Some` for format-1 items, `Some(0)` for
/// counters and placeholders (flags 0), `None` for unknown formats.
pub(crate) fn grace_of(client_flags: u32) -> Option<u64> {
    match client_flags & FORMAT_MASK {
        FORMAT_1 | FORMAT_2 => Some(u64::from(client_flags & !FORMAT_MASK)),
        0 if client_flags == 0 => Some(0),
        _ => None,
    }
}

/// Wraps a payload in an envelope: format 2 when the time its recomputation took is given,
/// else format 1. Returns the bytes and the client flags to store.
pub(crate) fn encode(
    payload: &[u8],
    grace: u64,
    flags: u32,
    recompute_ms: Option<u32>,
) -> (Bytes, u32) {
    let header = if recompute_ms.is_some() {
        MAX_HEADER_LEN
    } else {
        HEADER_LEN
    };
    let mut out = BytesMut::with_capacity(header + payload.len());
    out.put_u32(flags);
    let format = match recompute_ms {
        Some(ms) => {
            out.put_u32(ms);
            FORMAT_2
        }
        None => FORMAT_1,
    };
    out.put_slice(payload);
    (out.freeze(), format | grace_bits(grace))
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
    let grace = u64::from(client_flags & !FORMAT_MASK);
    let timed = match client_flags & FORMAT_MASK {
        FORMAT_1 => false,
        FORMAT_2 => true,
        _ => return Decoded::Unknown,
    };
    let header = if timed { MAX_HEADER_LEN } else { HEADER_LEN };
    if data.len() < header {
        return Decoded::Unknown;
    }
    let header = data.split_to(header);
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Decoded::Value {
        grace,
        flags: word(0),
        payload: data,
        recompute_ms: timed.then(|| word(4)),
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
            decode(0x6e00_0001, Bytes::from_static(b"1234567")),
            Decoded::Unknown
        );
        assert_eq!(
            decode(0x6e00_0001, Bytes::from_static(b"\0\0\0\x07\0\0\x01\x2cx")),
            Decoded::Value {
                grace: 1,
                flags: 7,
                payload: Bytes::from_static(b"x"),
                recompute_ms: Some(300),
            }
        );
        assert_eq!(
            decode(0x6f00_0001, Bytes::from_static(b"12345678x")),
            Decoded::Unknown
        );
        assert_eq!(
            decode(7, Bytes::from_static(b"12345678x")),
            Decoded::Unknown
        );
        let (bytes, cf) = encode(b"", 30, 7, None);
        assert_eq!(cf, 0x6d00_001e);
        assert_eq!(
            decode(cf, bytes),
            Decoded::Value {
                grace: 30,
                flags: 7,
                payload: Bytes::new(),
                recompute_ms: None,
            }
        );
        let (bytes, cf) = encode(b"p", 30, 7, Some(250));
        assert_eq!(cf, 0x6e00_001e);
        assert_eq!(&bytes[..], b"\0\0\0\x07\0\0\0\xfap");
        assert_eq!(grace_of(cf), Some(30));
        assert_eq!(
            grace_of(client_flags(MAX_GRACE_SECONDS + 5)),
            Some(MAX_GRACE_SECONDS)
        );
        assert_eq!(grace_of(0), Some(0));
        assert_eq!(grace_of(0x0000_0005), None);
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512), grace in 0u64..=MAX_GRACE_SECONDS, flags: u32, recompute_ms: Option<u32>) {
            let (bytes, cf) = encode(&payload, grace, flags, recompute_ms);
            let header = if recompute_ms.is_some() { MAX_HEADER_LEN } else { HEADER_LEN };
            prop_assert_eq!(bytes.len(), payload.len() + header);
            prop_assert_eq!(grace_of(cf), Some(grace));
            prop_assert_eq!(decode(cf, bytes), Decoded::Value { grace, flags, payload: Bytes::from(payload), recompute_ms });
        }
    }
}
