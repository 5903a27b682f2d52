//! Bounded, jittered exponential backoff: how the client retries `UNAVAILABLE` calls and how
//! [`get_or_compute`](crate::Client::get_or_compute) waits out `PENDING`.

use std::time::Duration;

/// A bounded retry schedule: at most `max_attempts` tries, waiting between them
/// `initial`, `2 × initial`, `4 × initial`, ... capped at `max`, each wait jittered down to
/// somewhere between half and all of it (so that clients which failed together do not retry
/// together).
///
/// ```
/// use std::time::Duration;
/// use mintcache_client::Backoff;
///
/// let backoff = Backoff {
///     max_attempts: 5,
///     initial: Duration::from_millis(100),
///     max: Duration::from_millis(300),
/// };
/// let third = backoff.delay(3); // before the 4th attempt: 400 ms capped to 300, jittered
/// assert!(third >= Duration::from_millis(150) && third <= Duration::from_millis(300));
/// assert_eq!(Backoff::NONE.max_attempts, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Total attempts, the first included. `0` is treated as `1`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt (before jitter).
    pub initial: Duration,
    /// The longest wait (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// One attempt, no retries.
    pub const NONE: Self = Self {
        max_attempts: 1,
        initial: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The client's default for `UNAVAILABLE`: 4 attempts, waits from 50 ms up to 1 s.
    pub const UNAVAILABLE_DEFAULT: Self = Self {
        max_attempts: 4,
        initial: Duration::from_millis(50),
        max: Duration::from_secs(1),
    };

    /// The default for `PENDING` in `get_or_compute`: 10 reads, waits from 25 ms up to 250 ms
    /// (about 1–1.5 s in all), then the caller computes the value itself.
    pub const PENDING_DEFAULT: Self = Self {
        max_attempts: 10,
        initial: Duration::from_millis(25),
        max: Duration::from_millis(250),
    };

    /// The jittered wait after failed attempt number `failed` (1-based).
    pub fn delay(&self, failed: u32) -> Duration {
        let exponent = failed.saturating_sub(1).min(31);
        let base = self
            .initial
            .checked_mul(1 << exponent)
            .unwrap_or(self.max)
            .min(self.max);
        base.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// `max_attempts`, at least 1.
    pub(crate) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::UNAVAILABLE_DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            max_attempts: 40,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(1000),
        };
        for failed in 1..=40 {
            let base = Duration::from_millis(10 << (failed - 1).min(7)).min(b.max);
            for _ in 0..50 {
                let d = b.delay(failed);
                assert!(d >= base / 2 && d <= base, "{failed}: {d:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn huge_initial_saturates_to_max() {
        let b = Backoff {
            max_attempts: 3,
            initial: Duration::MAX,
            max: Duration::from_secs(2),
        };
        assert!(b.delay(32) <= Duration::from_secs(2));
        assert_eq!(Backoff::NONE.delay(1), Duration::ZERO);
        assert_eq!(
            Backoff {
                max_attempts: 0,
                ..Backoff::NONE
            }
            .attempts(),
            1
        );
    }
}
