//! The process's own resource use, read from `/proc` (Linux): CPU time, memory, threads, file
//! descriptors and start time, as the Prometheus client libraries report them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, …), so that the usual
//! dashboards and alerts work unchanged.
//!
//! The parsing is pure (tested on sample text); [`read`] and [`start_time`] do the reading, and
//! [`ProcessGauges`] shows what they read at each collection.
//! Elsewhere than on Linux there is no `/proc`, and the metrics are simply absent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};

use super::names;

/// The process's resource use: CPU time, memory, threads, file descriptors and start time,
/// observed at each collection for as long as they live.
pub(super) struct ProcessGauges {
    _cpu: ObservableCounter<f64>,
    _gauges: [ObservableGauge<u64>; 5],
    _start_time: ObservableGauge<f64>,
}

impl ProcessGauges {
    /// Registers them on `meter`.
    pub(super) fn new(meter: &Meter) -> Self {
        let started = start_time();
        Self {
            _cpu: meter
                .f64_observable_counter(names::PROCESS_CPU)
                .with_unit("s")
                .with_description("User and system CPU time spent")
                .with_callback(|observer| {
                    if let Some(stat) = read() {
                        observer.observe(stat.cpu_seconds, &[]);
                    }
                })
                .build(),
            _gauges: [
                gauge(
                    meter,
                    (names::PROCESS_RESIDENT_MEMORY, Some("By")),
                    "Resident memory size",
                    || read().map(|stat| stat.resident_bytes),
                ),
                gauge(
                    meter,
                    (names::PROCESS_VIRTUAL_MEMORY, Some("By")),
                    "Virtual memory size",
                    || read().map(|stat| stat.virtual_bytes),
                ),
                gauge(meter, (names::PROCESS_THREADS, None), "OS threads", || {
                    read().map(|stat| stat.threads)
                }),
                gauge(
                    meter,
                    (names::PROCESS_OPEN_FDS, None),
                    "Open file descriptors",
                    open_fds,
                ),
                gauge(
                    meter,
                    (names::PROCESS_MAX_FDS, None),
                    "Limit on open file descriptors",
                    max_fds,
                ),
            ],
            _start_time: meter
                .f64_observable_gauge(names::PROCESS_START_TIME)
                .with_unit("s")
                .with_description("Start time of the process since the Unix epoch")
                .with_callback(move |observer| observer.observe(started, &[]))
                .build(),
        }
    }
}

/// A gauge named `name` (with its unit, if any) showing what `observe` reads at each
/// collection; nothing when it reads nothing.
fn gauge(
    meter: &Meter,
    (name, unit): (&'static str, Option<&'static str>),
    description: &'static str,
    observe: fn() -> Option<u64>,
) -> ObservableGauge<u64> {
    let builder = meter
        .u64_observable_gauge(name)
        .with_description(description)
        .with_callback(move |observer| {
            if let Some(value) = observe() {
                observer.observe(value, &[]);
            }
        });
    match unit {
        Some(unit) => builder.with_unit(unit).build(),
        None => builder.build(),
    }
}

/// What `/proc/self/stat` says about the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessStat {
    /// User and system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub(crate) resident_bytes: u64,
    /// Virtual memory, in bytes.
    pub(crate) virtual_bytes: u64,
    /// OS threads.
    pub(crate) threads: u64,
    /// When the process started, in clock ticks after boot.
    pub(crate) start_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`, given the clock's ticks per second and the page size.
pub(crate) fn parse_stat(text: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcessStat> {
    // The command name (field 2) is in parentheses and may itself hold spaces and
    // parentheses: the fields that follow start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5) (the state): field N is at N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    if ticks_per_second == 0 {
        return None;
    }
    let cpu_ticks = field(14)?.saturating_add(field(15)?);
    Some(ProcessStat {
        cpu_seconds: cpu_ticks as f64 / ticks_per_second as f64,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
    })
}

/// The boot time (`btime`) of the text of `/proc/stat`, in seconds since the Unix epoch.
pub(crate) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The process's `/proc/self/stat`, now.
pub(crate) fn read() -> Option<ProcessStat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(
        &text,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )
}

/// When the process started, in seconds since the Unix epoch: from `/proc` where there is
/// one, else now (the metrics are set up as the process starts).
pub(crate) fn start_time() -> f64 {
    let from_proc = || {
        let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let ticks = rustix::param::clock_ticks_per_second();
        let stat = read()?;
        (ticks > 0).then(|| boot as f64 + stat.start_ticks as f64 / ticks as f64)
    };
    from_proc().unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    })
}

/// Open file descriptors (the entries of `/proc/self/fd`, the one listing them included, as
/// other Prometheus clients count them).
pub(crate) fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count() as u64)
}

/// The soft limit on open file descriptors; `None` when unlimited or unknown.
pub(crate) fn max_fds() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of `/proc/<pid>/stat` whose command name holds a space and a parenthesis.
    const STAT: &str = "4242 (mintcache (x) y) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                        250 75 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn the_fields_after_the_command_name_are_read() {
        let stat = parse_stat(STAT, 100, 4096).expect("parses");
        assert_eq!(
            stat,
            ProcessStat {
                cpu_seconds: 3.25,
                resident_bytes: 2560 * 4096,
                virtual_bytes: 104_857_600,
                threads: 9,
                start_ticks: 123_456,
            }
        );
    }

    #[test]
    fn truncated_or_odd_text_gives_nothing() {
        assert_eq!(parse_stat("", 100, 4096), None);
        assert_eq!(parse_stat("4242 (mintcache) S 1 2 3", 100, 4096), None);
        assert_eq!(parse_stat(STAT, 0, 4096), None);
    }

    #[test]
    fn the_boot_time_is_the_btime_line() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764120000\nprocesses 7\n";
        assert_eq!(parse_boot_time(text), Some(1_764_120_000));
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_can_be_read() {
        let stat = read().expect("/proc/self/stat parses");
        assert!(stat.resident_bytes > 0 && stat.threads >= 1, "{stat:?}");
        assert!(open_fds().is_some_and(|n| n >= 3));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let started = start_time();
        // The test process started a moment ago, not at boot and not in the future.
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
    }
}
