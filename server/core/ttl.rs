//! TTL and grace arithmetic.
//!
//! A value is *fresh* for its ttl, then *stale but servable* for its grace period; memcached
//! holds it for the sum (the hard ttl) and forgets it after. memcached reads an expiry above
//! 30 days as an absolute Unix time, so long hard ttls are converted (see
//! [`memcached_exptime`]).

/// The largest expiry memcached reads as relative seconds; above it, a Unix timestamp.
pub const MEMCACHED_RELATIVE_MAX: u64 = 60 * 60 * 24 * 30;
/// The longest accepted ttl or grace: 10 years.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;

/// Why a ttl or grace is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// Negative seconds.
    #[error("must not be negative, got {0}")]
    Negative(i64),
    /// More than the longest accepted length.
    #[error("must be at most {max} seconds, got {got}")]
    TooLong {
        /// The requested seconds.
        got: i64,
        /// The limit.
        max: u64,
    },
}

/// Resolves requested seconds: 0 means `default`, negatives and absurd lengths are refused.
pub fn resolve_seconds(requested: i64, default: u64) -> Result<u64, TtlError> {
    match requested {
        0 => Ok(default),
        n if n < 0 => Err(TtlError::Negative(n)),
        n if n as u64 > MAX_TTL_SECONDS => Err(TtlError::TooLong {
            got: n,
            max: MAX_TTL_SECONDS,
        }),
        n => Ok(n as u64),
    }
}

/// How long an item lives from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// This many seconds (at least one).
    After(u64),
    /// Until it is deleted, replaced or evicted.
    Never,
}

impl Expiry {
    /// memcached's expiry field for this lifetime: 0 for never, relative seconds up to 30 days,
    /// an absolute Unix time beyond (see [`memcached_exptime`]).
    pub fn memcached(self, now_unix: u64) -> u64 {
        match self {
            Self::Never => 0,
            Self::After(ttl) => memcached_exptime(ttl.max(1), now_unix),
        }
    }
}

/// How long memcached keeps an item: fresh period plus grace, at least one second; never, for
/// a value that never expires.
pub fn hard_ttl(ttl: Expiry, grace: u64) -> Expiry {
    match ttl {
        Expiry::Never => Expiry::Never,
        Expiry::After(ttl) => Expiry::After(ttl.saturating_add(grace).max(1)),
    }
}

/// The expiry to send to memcached for a relative `ttl`, given the current Unix time.
///
/// Up to 30 days memcached takes relative seconds; beyond, it takes an absolute Unix time (a
/// relative 40 days would be read as a date in January 1970, expiring the item at once).
pub fn memcached_exptime(ttl: u64, now_unix: u64) -> u64 {
    if ttl <= MEMCACHED_RELATIVE_MAX {
        ttl
    } else {
        now_unix.saturating_add(ttl)
    }
}

/// Seconds a value stays fresh, given the remaining hard ttl reported by the store and the
/// item's grace. `None` once the value is stale.
pub fn fresh_remaining(hard_remaining: u64, grace: u64) -> Option<u64> {
    hard_remaining.checked_sub(grace).filter(|&fresh| fresh > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_means_default_and_negative_is_refused() {
        assert_eq!(resolve_seconds(0, 300), Ok(300));
        assert_eq!(resolve_seconds(7, 300), Ok(7));
        assert_eq!(resolve_seconds(-1, 300), Err(TtlError::Negative(-1)));
        assert_eq!(
            resolve_seconds(MAX_TTL_SECONDS as i64 + 1, 300),
            Err(TtlError::TooLong {
                got: MAX_TTL_SECONDS as i64 + 1,
                max: MAX_TTL_SECONDS
            })
        );
        assert_eq!(
            resolve_seconds(MAX_TTL_SECONDS as i64, 300),
            Ok(MAX_TTL_SECONDS)
        );
    }

    #[test]
    fn thirty_days_is_the_switch_to_absolute_time() {
        let now = 1_800_000_000;
        assert_eq!(memcached_exptime(60, now), 60);
        assert_eq!(
            memcached_exptime(MEMCACHED_RELATIVE_MAX, now),
            MEMCACHED_RELATIVE_MAX
        );
        let forty_days = 40 * 24 * 3600;
        assert_eq!(memcached_exptime(forty_days, now), now + forty_days);
    }

    #[test]
    fn freshness_ends_when_only_grace_is_left() {
        assert_eq!(fresh_remaining(90, 30), Some(60));
        assert_eq!(fresh_remaining(31, 30), Some(1));
        assert_eq!(fresh_remaining(30, 30), None);
        assert_eq!(fresh_remaining(5, 30), None);
        assert_eq!(hard_ttl(Expiry::After(0), 0), Expiry::After(1));
        assert_eq!(hard_ttl(Expiry::After(60), 30), Expiry::After(90));
        assert_eq!(hard_ttl(Expiry::Never, 30), Expiry::Never);
    }

    #[test]
    fn never_is_memcached_zero() {
        let now = 1_800_000_000;
        assert_eq!(Expiry::Never.memcached(now), 0);
        assert_eq!(Expiry::After(0).memcached(now), 1);
        assert_eq!(Expiry::After(60).memcached(now), 60);
        let forty_days = 40 * 24 * 3600;
        assert_eq!(Expiry::After(forty_days).memcached(now), now + forty_days);
    }

    proptest! {
        /// Whatever the ttl, memcached ends up holding the item for exactly that long.
        #[test]
        fn exptime_always_means_the_same_duration(ttl in 1u64..=MAX_TTL_SECONDS, now in 1_000_000_000u64..4_000_000_000) {
            let exp = memcached_exptime(ttl, now);
            let held = if exp > MEMCACHED_RELATIVE_MAX { exp - now } else { exp };
            prop_assert_eq!(held, ttl);
        }
    }
}
