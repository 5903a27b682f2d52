//! Writes as the mint cache builds them and as readers then see them: the write of a counter,
//! the recomputation time a value records (for early refresh), the item a write stored (for
//! readers waiting on its fill), and the placeholder of a fill still under way.

use bytes::Bytes;

use super::envelope;
use super::item::{ItemView, Write, WriteMode};
use super::ttl::Expiry;

/// A request field that does not go with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The request field.
    pub(crate) field: &'static str,
    /// What is wrong.
    pub(crate) reason: &'static str,
}

/// A counter's value as a `Set` gives it (`counter` set).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CounterSet<'a> {
    /// The value: must be the decimal digits of a `u64`.
    pub(crate) value: &'a [u8],
    /// The caller's flags: must be 0.
    pub(crate) flags: u32,
    /// Requested grace: must be 0 (counters have no grace).
    pub(crate) grace_seconds: i64,
    /// Lease token bytes: must be empty.
    pub(crate) lease_token: &'a [u8],
}

/// The write of a counter value: canonical decimal digits, no envelope, no grace (counters
/// are not minted).
pub(crate) fn counter_write(
    set: CounterSet<'_>,
    ttl: Expiry,
    mode: WriteMode,
) -> Result<Write, FieldError> {
    let refuse = |field, reason| Err(FieldError { field, reason });
    if set.flags != 0 {
        return refuse("flags", "must be 0 for a counter");
    }
    if set.grace_seconds != 0 {
        return refuse(
            "grace_seconds",
            "must be 0 for a counter (counters have no grace)",
        );
    }
    if !set.lease_token.is_empty() {
        return refuse("lease_token", "must be empty for a counter");
    }
    let digits = std::str::from_utf8(set.value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    let Some(number) = digits else {
        return refuse(
            "value",
            "must be the decimal digits of an unsigned 64-bit number for a counter",
        );
    };
    Ok(Write {
        value: Bytes::from(number.to_string()),
        client_flags: 0,
        ttl,
        mode,
        cas: None,
    })
}

/// How long a value took to recompute: what the caller reported (`reported_ms`, 0: nothing),
/// else the time since its lease was issued (at least 1 ms; a lease from a replica whose clock
/// is ahead counts as 1 ms); `None` when neither says.
pub(crate) fn recompute_ms(
    reported_ms: u32,
    issued_at_ms: Option<u64>,
    now_ms: u64,
) -> Option<u32> {
    if reported_ms > 0 {
        return Some(reported_ms);
    }
    issued_at_ms.map(|issued| {
        let took = now_ms.saturating_sub(issued).max(1);
        u32::try_from(took).unwrap_or(u32::MAX)
    })
}

/// The item a write stored, as a read right after it would see it (for readers waiting on
/// its fill).
pub(crate) fn stored_view(write: &Write) -> ItemView {
    ItemView {
        value: write.value.clone(),
        client_flags: write.client_flags,
        ttl_remaining: match write.ttl {
            Expiry::After(seconds) => Some(seconds),
            Expiry::Never => None,
        },
        cas: 0,
        instance: 0,
        stale: false,
        win: None,
        hot: false,
    }
}

/// Whether an item is a cold fill's placeholder: someone is computing the value.
pub(crate) fn is_fill_under_way(view: &ItemView) -> bool {
    matches!(
        envelope::decode(view.client_flags, view.value.clone()),
        envelope::Decoded::Placeholder
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(value: &[u8]) -> CounterSet<'_> {
        CounterSet {
            value,
            flags: 0,
            grace_seconds: 0,
            lease_token: b"",
        }
    }

    #[test]
    fn a_counter_is_stored_as_canonical_digits() {
        let write =
            counter_write(counter(b"0042"), Expiry::After(60), WriteMode::Add).expect("digits");
        assert_eq!(write.value, Bytes::from("42"));
        assert_eq!(write.client_flags, 0);
        assert_eq!(write.ttl, Expiry::After(60));
        assert_eq!(write.mode, WriteMode::Add);
    }

    #[test]
    fn a_counter_refuses_what_only_values_have() {
        let refused = |set: CounterSet<'_>| {
            counter_write(set, Expiry::Never, WriteMode::Set)
                .expect_err("refused")
                .field
        };
        assert_eq!(refused(counter(b"")), "value");
        assert_eq!(refused(counter(b"-1")), "value");
        assert_eq!(refused(counter(b"18446744073709551616")), "value");
        assert_eq!(
            refused(CounterSet {
                flags: 1,
                ..counter(b"1")
            }),
            "flags"
        );
        let graced = CounterSet {
            grace_seconds: 5,
            ..counter(b"1")
        };
        assert_eq!(refused(graced), "grace_seconds");
        let leased = CounterSet {
            lease_token: b"x",
            ..counter(b"1")
        };
        assert_eq!(refused(leased), "lease_token");
    }

    #[test]
    fn recompute_time_is_reported_or_measured_from_the_lease() {
        assert_eq!(recompute_ms(120, Some(1_000), 5_000), Some(120));
        assert_eq!(recompute_ms(0, Some(1_000), 1_250), Some(250));
        // A lease from a replica whose clock is ahead.
        assert_eq!(recompute_ms(0, Some(9_000), 1_000), Some(1));
        assert_eq!(recompute_ms(0, Some(0), u64::MAX), Some(u32::MAX));
        assert_eq!(recompute_ms(0, None, 1_000), None);
    }

    #[test]
    fn a_stored_value_is_seen_as_written_and_a_placeholder_as_a_fill() {
        let (value, client_flags) = envelope::encode(b"v", 30, 7, None);
        let write = Write {
            value,
            client_flags,
            ttl: Expiry::After(90),
            mode: WriteMode::Set,
            cas: None,
        };
        let view = stored_view(&write);
        assert_eq!(view.ttl_remaining, Some(90));
        assert!(!is_fill_under_way(&view));
        let placeholder = ItemView {
            value: Bytes::new(),
            client_flags: 0,
            ..view
        };
        assert!(is_fill_under_way(&placeholder));
    }
}
