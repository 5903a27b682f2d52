//! Where the embedded store reads the time: the system's monotonic clock when serving, or a
//! manual clock that moves only when told, so that tests of ttl and grace advance time instead
//! of sleeping through it (memcached keeps its own clock; this one is the embedded store's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The time source of the embedded store.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's monotonic clock.
    #[default]
    System,
    /// A clock moved by [`ManualClock::advance`].
    Manual(ManualClock),
}

/// A clock that starts at zero and moves only when [`advanced`](ManualClock::advance). Clones
/// share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    elapsed_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (to the millisecond).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Milliseconds since the clock was made.
    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms.load(Ordering::SeqCst)
    }
}

impl From<ManualClock> for Clock {
    fn from(clock: ManualClock) -> Self {
        Self::Manual(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new();
        let shared = clock.clone();
        assert_eq!(shared.elapsed_ms(), 0);
        clock.advance(Duration::from_millis(1500));
        clock.advance(Duration::from_secs(2));
        assert_eq!(shared.elapsed_ms(), 3500);
    }
}
