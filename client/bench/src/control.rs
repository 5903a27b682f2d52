//! When calls are made and counted: the warm-up, then the measurement until the duration has
//! passed or the call budget is spent (or the run is interrupted). Every call stream asks the
//! [`Limiter`] before each call, so the bound holds across all of them without a coordinator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::BenchError;

/// When the measurement ends (`--duration` or `--count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Duration(Duration),
    Count(u64),
}

/// What a call stream should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Make a call and do not count it.
    Warmup,
    /// Make a call and count it.
    Measure,
    /// Make no more calls.
    Stop,
}

/// Decides the phase of each call.
#[derive(Debug)]
pub(crate) struct Limiter {
    measure_start: Instant,
    end: Option<Instant>,
    /// Calls left to measure, for `--count`.
    budget: Option<AtomicU64>,
    stopped: AtomicBool,
}

impl Limiter {
    /// Warm-up from `now` for `warmup`, then measurement within `bound`.
    pub(crate) fn new(now: Instant, warmup: Duration, bound: Bound) -> Self {
        let measure_start = now + warmup;
        let (end, budget) = match bound {
            Bound::Duration(d) => (Some(measure_start + d), None),
            Bound::Count(n) => (None, Some(AtomicU64::new(n))),
        };
        Self {
            measure_start,
            end,
            budget,
            stopped: AtomicBool::new(false),
        }
    }

    /// The phase of a call about to start at `now`. A `Measure` answer under `--count` takes one
    /// call from the budget, so exactly `count` calls are measured however many streams ask.
    pub(crate) fn next(&self, now: Instant) -> Phase {
        if self.stopped.load(Ordering::Relaxed) {
            return Phase::Stop;
        }
        if now < self.measure_start {
            return Phase::Warmup;
        }
        if self.end.is_some_and(|end| now >= end) {
            return Phase::Stop;
        }
        match &self.budget {
            None => Phase::Measure,
            Some(left) => {
                let taken =
                    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if taken.is_ok() {
                    Phase::Measure
                } else {
                    Phase::Stop
                }
            }
        }
    }

    /// Stops every stream before its next call (an interrupt, or a fatal error elsewhere).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether [`Limiter::stop`] was called.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// When measurement starts (warm-up calls start before it).
    pub(crate) fn measure_start(&self) -> Instant {
        self.measure_start
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`; `None`
/// where that file does not exist. Reported so that a reader can see how much of the machine
/// the load generator itself took.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_time_of_stat(&stat)
}

/// utime + stime of a `/proc/PID/stat` line. Both are in clock ticks of USER_HZ, which Linux
/// fixes at 100 per second for this interface.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    // The command name (field 2) is in parentheses and may contain spaces: start after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_secs(ticks / USER_HZ) + Duration::from_millis(ticks % USER_HZ * 10))
}

/// Running totals of measured calls, for the live progress line.
#[derive(Debug, Default)]
pub(crate) struct Live {
    calls: AtomicU64,
    errors: AtomicU64,
}

impl Live {
    pub(crate) fn add(&self, calls: u64, errors: u64) {
        self.calls.fetch_add(calls, Ordering::Relaxed);
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }

    /// (measured calls, failed calls) so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Waits for every task; on the first error, stops the others (through the limiter) and
/// returns that error once they have finished.
pub(crate) async fn join_tasks<T: Send + 'static>(
    mut tasks: tokio::task::JoinSet<Result<T, BenchError>>,
    limiter: &Limiter,
) -> Result<Vec<T>, BenchError> {
    let mut done = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined
            .map_err(|e| BenchError::Internal(format!("call stream: {e}")))
            .and_then(|r| r);
        match result {
            Ok(value) => done.push(value),
            Err(e) => {
                limiter.stop();
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn duration_bound_warms_up_measures_then_stops() {
        let t0 = Instant::now();
        let limiter = Limiter::new(t0, SECOND, Bound::Duration(2 * SECOND));
        assert_eq!(limiter.measure_start(), t0 + SECOND);
        assert_eq!(limiter.next(t0), Phase::Warmup);
        assert_eq!(limiter.next(t0 + SECOND / 2), Phase::Warmup);
        assert_eq!(limiter.next(t0 + SECOND), Phase::Measure);
        assert_eq!(limiter.next(t0 + 2 * SECOND), Phase::Measure);
        assert_eq!(limiter.next(t0 + 3 * SECOND), Phase::Stop);
        assert_eq!(limiter.next(t0 + 4 * SECOND), Phase::Stop);
    }

    #[test]
    fn count_bound_measures_exactly_count_calls_after_the_warmup() {
        let t0 = Instant::now();
        let limiter = Limiter::new(t0, SECOND, Bound::Count(3));
        // Warm-up calls do not spend the budget.
        for _ in 0..10 {
            assert_eq!(limiter.next(t0), Phase::Warmup);
        }
        let later = t0 + 100 * SECOND;
        let phases: Vec<_> = (0..5).map(|_| limiter.next(later)).collect();
        assert_eq!(
            phases,
            [
                Phase::Measure,
                Phase::Measure,
                Phase::Measure,
                Phase::Stop,
                Phase::Stop
            ]
        );
    }

    #[test]
    fn count_budget_is_shared_between_threads() {
        let t0 = Instant::now();
        let limiter = Limiter::new(t0, Duration::ZERO, Bound::Count(10_000));
        let measured = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut n = 0u64;
                        while limiter.next(t0) == Phase::Measure {
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .sum::<u64>()
        });
        assert_eq!(measured, 10_000);
    }

    #[test]
    fn stop_ends_every_phase() {
        let t0 = Instant::now();
        let limiter = Limiter::new(t0, SECOND, Bound::Count(100));
        assert!(!limiter.stopped());
        limiter.stop();
        assert!(limiter.stopped());
        assert_eq!(limiter.next(t0), Phase::Stop);
        assert_eq!(limiter.next(t0 + 2 * SECOND), Phase::Stop);
    }

    #[test]
    fn cpu_time_comes_from_utime_and_stime() {
        let stat = "4242 (mintcache bench) S 1 2 3 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 3 0 \
                    99 123456 789 18446744073709551615";
        assert_eq!(cpu_time_of_stat(stat), Some(Duration::from_millis(2870)));
        assert_eq!(cpu_time_of_stat("garbage"), None);
        assert_eq!(cpu_time_of_stat("1 (x) S 1 2"), None);
        if cfg!(target_os = "linux") {
            assert!(process_cpu_time().is_some());
        }
    }

    #[test]
    fn live_totals_add_up() {
        let live = Live::default();
        live.add(5, 0);
        live.add(3, 2);
        assert_eq!(live.totals(), (8, 2));
    }
}
