//! Where the server reads the time: the system's clocks when serving, or a manual clock that
//! moves only when told, so that tests of ttl, grace and the refresh timeout advance time
//! instead of sleeping through it.
//!
//! The mint cache reads both kinds of time here: monotonic instants (when it first saw an
//! election decided, how old its copy of a generation is, how long a hot key's copy has been
//! served) and Unix milliseconds (when a lease was issued, a flush's new generation). The
//! embedded store keeps its items' times on it. memcached keeps its own clock, in whole
//! seconds: what it expires, a test over memcached still waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The time source of a server.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's clocks: `Instant::now()` and `SystemTime::now()`, read directly.
    #[default]
    System,
    /// A clock moved by [`ManualClock::advance`].
    Manual(ManualClock),
}

impl Clock {
    /// Now, on the monotonic clock.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual(clock) => clock.now(),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub(crate) fn unix_ms(&self) -> u64 {
        match self {
            Self::System => system_unix_ms(),
            Self::Manual(clock) => clock.started_unix_ms.saturating_add(clock.elapsed_ms()),
        }
    }
}

fn system_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A clock that starts at the time it is made and moves only when
/// [`advanced`](ManualClock::advance). Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    started: Instant,
    started_unix_ms: u64,
    elapsed_ms: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            started_unix_ms: system_unix_ms(),
            elapsed_ms: Arc::default(),
        }
    }
}

impl ManualClock {
    /// A clock at the present moment, which stays there until advanced.
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

    fn now(&self) -> Instant {
        let elapsed = Duration::from_millis(self.elapsed_ms());
        // Only a clock advanced by centuries overflows `Instant`.
        self.started.checked_add(elapsed).unwrap_or(self.started)
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

    #[test]
    fn both_kinds_of_time_move_with_a_manual_clock() {
        let manual = ManualClock::new();
        let clock = Clock::from(manual.clone());
        let (at, unix_at) = (clock.now(), clock.unix_ms());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), at, "wall time does not move it");
        assert_eq!(clock.unix_ms(), unix_at);
        manual.advance(Duration::from_millis(2500));
        assert_eq!(clock.now() - at, Duration::from_millis(2500));
        assert_eq!(clock.unix_ms() - unix_at, 2500);
        // It starts at the present moment, as the system's clock reads it.
        let system = Clock::System.unix_ms();
        assert!(unix_at <= system && system - unix_at < 60_000);
    }
}
