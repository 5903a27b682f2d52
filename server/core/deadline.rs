//! The `grpc-timeout` header: how long the caller will wait for the answer.
//!
//! Format (gRPC over HTTP/2): at most 8 ASCII digits followed by one unit letter,
//! `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds.

use std::time::Duration;

/// Parses a `grpc-timeout` value; `None` when it is malformed.
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time the service gives itself: the caller's budget less a small margin (a tenth, at
/// most 5 ms), so that the service answers `DEADLINE_EXCEEDED` itself before the caller's
/// own timer fires and the answer can no longer reach it.
pub(crate) fn budget(timeout: Duration) -> Duration {
    let margin = (timeout / 10).min(Duration::from_millis(5));
    timeout - margin
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("30S", Some(Duration::from_secs(30))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("", None),
            ("S", None),
            ("10", None),
            ("10s", None),
            ("123456789S", None),
            ("-1S", None),
            ("1.5S", None),
            (" 1S", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_grpc_timeout(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn budget_keeps_a_margin() {
        assert_eq!(budget(Duration::from_millis(10)), Duration::from_millis(9));
        assert_eq!(budget(Duration::from_secs(1)), Duration::from_millis(995));
        assert_eq!(budget(Duration::ZERO), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = parse_grpc_timeout(&bytes);
        }

        #[test]
        fn round_trips(n in 0u64..100_000_000, unit in proptest::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n'])) {
            let parsed = parse_grpc_timeout(format!("{n}{unit}").as_bytes()).expect("valid");
            let nanos: u128 = match unit {
                'H' => u128::from(n) * 3_600_000_000_000,
                'M' => u128::from(n) * 60_000_000_000,
                'S' => u128::from(n) * 1_000_000_000,
                'm' => u128::from(n) * 1_000_000,
                'u' => u128::from(n) * 1_000,
                _ => u128::from(n),
            };
            prop_assert_eq!(parsed.as_nanos(), nanos);
            prop_assert!(budget(parsed) <= parsed);
        }
    }
}
