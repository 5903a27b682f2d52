//! The format of values in memcached.
//!
//! memcached's 32-bit client flags say which format an item has:
//!
//! | client flags | value bytes | meaning |
//! |---|---|---|
//! | [`FORMAT_V1`] (`0x6d630001`) | `grace: u32 BE`, `flags: u32 BE`, payload | a value set through mintcache |
//! | `0`, empty value | — | a placeholder memcached created for a cold-miss lease (`mg … N`) |
//! | `0`, non-empty value | the number, in ASCII | a counter (`Increment`; counters are not minted) |
//! | anything else | — | a format this server does not know: read as a miss |
//!
//! The grace travels with the value because memcached only keeps the hard expiry
//! (ttl + grace): the soft expiry is `hard remaining - grace`. A new server version that
//! changes the format must add a new flags value and keep reading this one, so that during a
//! rolling upgrade old and new replicas read each other's items; an old replica reads a newer
//! format as a miss (and recomputes) rather than as garbage.

use bytes::{BufMut, Bytes, BytesMut};

/// Client flags marking a version-1 envelope ("mc", format 1).
pub const FORMAT_V1: u32 = 0x6d63_0001;
/// Bytes the version-1 header adds before the payload.
pub const HEADER_LEN: usize = 8;

/// What an item's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
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

/// Wraps a payload in a version-1 envelope; returns the bytes and the client flags to store.
pub fn encode(payload: &[u8], grace: u64, flags: u32) -> (Bytes, u32) {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u32(u32::try_from(grace).unwrap_or(u32::MAX));
    out.put_u32(flags);
    out.put_slice(payload);
    (out.freeze(), FORMAT_V1)
}

/// Reads an item's bytes according to its client flags.
pub fn decode(client_flags: u32, mut data: Bytes) -> Decoded {
    match client_flags {
        FORMAT_V1 if data.len() >= HEADER_LEN => {
            let header = data.split_to(HEADER_LEN);
            let grace = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let flags = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            Decoded::Value {
                grace: u64::from(grace),
                flags,
                payload: data,
            }
        }
        0 if data.is_empty() => Decoded::Placeholder,
        0 => Decoded::Counter(data),
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
            decode(FORMAT_V1, Bytes::from_static(b"short")),
            Decoded::Unknown
        );
        assert_eq!(
            decode(0x6d63_0002, Bytes::from_static(b"12345678x")),
            Decoded::Unknown
        );
        let (bytes, cf) = encode(b"", 30, 7);
        assert_eq!(
            decode(cf, bytes),
            Decoded::Value {
                grace: 30,
                flags: 7,
                payload: Bytes::new()
            }
        );
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512), grace in 0u64..=u32::MAX as u64, flags: u32) {
            let (bytes, cf) = encode(&payload, grace, flags);
            prop_assert_eq!(bytes.len(), payload.len() + HEADER_LEN);
            prop_assert_eq!(decode(cf, bytes), Decoded::Value { grace, flags, payload: Bytes::from(payload) });
        }
    }
}
