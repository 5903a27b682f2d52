//! Key-space generations as items: a `Flush` moves a key space to a new generation, and every
//! memcached server keeps a copy of the current one under the key space's generation key, as
//! the decimal digits of a counter that never expires. What the copies say, how one is
//! written, and how copies that fell behind are brought up to date without ever overwriting a
//! newer one.

use bytes::Bytes;

use super::envelope;
use super::item::{Cas, ItemView, Write, WriteMode};
use super::ttl::Expiry;

/// The generation recorded in a generation item (decimal digits, as a counter).
pub(crate) fn generation_of(view: &ItemView) -> u64 {
    match envelope::decode(view.client_flags, view.value.clone()) {
        envelope::Decoded::Counter(digits) => std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// The write that records a key space's generation: digits, never expiring.
pub(crate) fn generation_write(generation: u64) -> Write {
    Write {
        value: Bytes::from(generation.to_string()),
        client_flags: 0,
        ttl: Expiry::Never,
        mode: WriteMode::Set,
        cas: None,
    }
}

/// The writes that bring each server's copy of a generation up to `current`, given what each
/// answered: none for a server that failed or already has it. Each write only lands on what
/// was read (a copy must still have the CAS value it had; a missing one must still be
/// missing), so a repair never overwrites a newer generation a `Flush` wrote meanwhile.
pub(crate) fn generation_repairs<E>(
    answers: &[Result<Option<ItemView>, E>],
    current: u64,
) -> Vec<Option<Write>> {
    answers
        .iter()
        .map(|answer| match answer {
            Ok(None) if current > 0 => Some(Write {
                mode: WriteMode::Add,
                ..generation_write(current)
            }),
            Ok(Some(view)) if generation_of(view) < current => Some(Write {
                cas: Some(Cas {
                    instance: view.instance,
                    value: view.cas,
                }),
                ..generation_write(current)
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(generation: u64, cas: u64) -> Result<Option<ItemView>, &'static str> {
        Ok(Some(ItemView {
            value: Bytes::from(generation.to_string()),
            client_flags: 0,
            ttl_remaining: None,
            cas,
            instance: 7,
            stale: false,
            win: None,
            hot: false,
        }))
    }

    #[test]
    fn a_generation_is_read_back_as_written() {
        for generation in [0, 1, 1_733_000_000_000, u64::MAX] {
            let write = generation_write(generation);
            let view = copy(generation, 1).expect("a copy").expect("an item");
            assert_eq!(write.value, view.value);
            assert_eq!(generation_of(&view), generation);
        }
    }

    #[test]
    fn generation_repairs_only_land_on_what_was_read() {
        let answers = vec![copy(9, 100), copy(5, 200), Ok(None), Err("timed out")];
        let repairs = generation_repairs(&answers, 9);
        // Up to date, or failed: left alone.
        assert!(repairs[0].is_none());
        assert!(repairs[3].is_none());
        // Behind: replaced only if it still has the CAS value that was read.
        let behind = repairs[1].as_ref().expect("a repair of the copy behind");
        assert_eq!(behind.value, Bytes::from("9"));
        assert_eq!(
            behind.cas,
            Some(Cas {
                instance: 7,
                value: 200
            })
        );
        assert_eq!(behind.mode, WriteMode::Set);
        // Missing: added only if still missing.
        let missing = repairs[2].as_ref().expect("a repair of the missing copy");
        assert_eq!(missing.mode, WriteMode::Add);
        assert_eq!(missing.cas, None);
        assert_eq!(missing.value, Bytes::from("9"));
        // A key space never flushed (generation 0) needs no copies.
        let never_flushed: [Result<Option<ItemView>, &str>; 2] = [Ok(None), Ok(None)];
        assert!(
            generation_repairs(&never_flushed, 0)
                .iter()
                .all(Option::is_none)
        );
    }
}
