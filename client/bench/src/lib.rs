//! `mintcache-bench`, the load generator, as a library ([`parse`], [`execute`], [`run`]) so
//! that it can be run in-process by tests; `src/main.rs` only wires it to the
//! process's arguments, streams, runtime and Ctrl-C.
//!
//! A run: validate the command line (`options`), connect (C HTTP/2 connections, or C TCP
//! connections to memcached), store the keys that should hit, then keep C x S calls in flight
//! (`control` decides warm-up, measurement and the end) and merge what each connection
//! recorded (`record`) into one report (`report`).
//!
//! Modules: `args` (the command line's grammar), `options` (its validation into a plan),
//! `keys` (key names and distribution), `control` (phases and bounds), `record` (outcomes,
//! errors, HDR latency histograms), `grpc` (the workloads over gRPC), `memcached` (the same
//! workloads sent directly to memcached, meta or text protocol), `stampede` (the stampede
//! scenario), `fill` (the cold-fill scenario), `wire` (the lean gRPC client the workloads use), `report` (table, JSON,
//! progress), `error` (why a run could not be done). Dependencies point one way: `args`,
//! `error` and `keys` use nothing, `control` only `error`, `record` `control` and `error`,
//! `options` `args`, `control`, `keys` and `record`; the workloads and `report` use those;
//! this file uses the modules, and no module uses this file.

mod args;
mod control;
mod error;
mod fill;
mod grpc;
mod keys;
mod memcached;
mod options;
mod record;
mod report;
mod stampede;
mod wire;

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::control::{Limiter, Live};
use self::error::BenchError;
use self::options::{Plan, Target, Workload};
use self::record::{Recorder, Summary};
use self::report::{FillReport, Progress, Report, StampedeReport};

/// How often the progress line is updated.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The exit status of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: the run completed and every call succeeded (also `--help` and `--version`).
    Success,
    /// 1: the run completed but some calls (or keys of batched calls) failed; see the report.
    Failures,
    /// 2: bad usage; the message is on stderr.
    Usage,
    /// 3: the run could not be done (server unreachable, protocol error); the message is on
    /// stderr.
    Error,
}

impl Exit {
    /// The process exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failures => 1,
            Self::Usage => 2,
            Self::Error => 3,
        }
    }
}

/// A validated command line.
#[derive(Debug)]
pub struct Options {
    plan: Plan,
    progress: bool,
}

impl Options {
    /// The worker threads asked for with `--threads` (`None`: one per CPU).
    pub fn threads(&self) -> Option<usize> {
        self.plan.threads
    }

    /// Shows a live progress line on `out` while the run goes on, unless `--json` was given.
    /// For terminals only: the line is rewritten in place with carriage returns.
    pub fn with_progress(mut self, terminal: bool) -> Self {
        self.progress = terminal && !self.plan.json;
        self
    }
}

/// Parses the arguments (the first one is the program name). Help and version go to `out`
/// (`Err(Exit::Success)`), usage errors to `err` (`Err(Exit::Usage)`).
pub fn parse<I, T>(args: I, out: &mut impl Write, err: &mut impl Write) -> Result<Options, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match options::parse(args) {
        Ok(Ok(plan)) => Ok(Options {
            plan,
            progress: false,
        }),
        Ok(Err(usage)) => {
            let _ = writeln!(err, "mintcache-bench: error: {usage}");
            let _ = writeln!(err, "\nFor more information, try '--help'.");
            Err(Exit::Usage)
        }
        Err(e) if e.use_stderr() => {
            let _ = write!(err, "{}", e.render());
            Err(Exit::Usage)
        }
        Err(e) => {
            let _ = write!(out, "{}", e.render());
            Err(Exit::Success)
        }
    }
}

/// Runs a parsed command line: the report goes to `out`, errors to `err`. When `interrupt`
/// resolves (Ctrl-C), no new call starts, the calls in flight finish, and what was measured
/// is reported.
pub async fn execute(
    options: Options,
    out: &mut impl Write,
    err: &mut impl Write,
    interrupt: impl Future<Output = ()>,
) -> Exit {
    let Options { plan, progress } = options;
    match bench(&plan, progress, out, interrupt).await {
        Ok(report) => {
            let written = if plan.json {
                report.write_json(out)
            } else {
                report.write_table(out)
            };
            if let Err(e) = written.and_then(|()| out.flush()) {
                let _ = writeln!(err, "mintcache-bench: error: cannot write the report: {e}");
                return Exit::Error;
            }
            if report.has_failures() {
                Exit::Failures
            } else {
                Exit::Success
            }
        }
        Err(e) => {
            let _ = writeln!(err, "mintcache-bench: error: {e}");
            Exit::Error
        }
    }
}

/// [`parse`] then [`execute`], without progress line or interrupt: for tests and embedding.
pub async fn run<I, T>(args: I, out: &mut impl Write, err: &mut impl Write) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match parse(args, out, err) {
        Ok(options) => execute(options, out, err, std::future::pending()).await,
        Err(exit) => exit,
    }
}

/// What a workload hands back.
struct Ran {
    recorders: Vec<Recorder>,
    stampede: Option<StampedeReport>,
    fill: Option<FillReport>,
}

/// Connects, prepares, runs (with the progress line and the interrupt), and builds the report.
async fn bench(
    plan: &Plan,
    progress: bool,
    out: &mut impl Write,
    interrupt: impl Future<Output = ()>,
) -> Result<Report, BenchError> {
    let mut interrupt = std::pin::pin!(interrupt);
    let live = Arc::new(Live::default());
    let prepared = tokio::select! {
        prepared = prepare(plan) => prepared?,
        () = &mut interrupt => return Err(BenchError::Interrupted),
    };

    let started = Instant::now();
    let cpu_before = control::process_cpu_time();
    let limiter = Arc::new(Limiter::new(started, plan.warmup, plan.bound));
    let work = prepared.run(plan, limiter.clone(), live.clone());
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_INTERVAL,
        PROGRESS_INTERVAL,
    );
    let mut line = Progress::new();
    let ran = loop {
        tokio::select! {
            ran = &mut work => break ran,
            () = &mut interrupt, if !limiter.stopped() => limiter.stop(),
            _ = ticks.tick(), if progress => {
                let now = Instant::now();
                // A terminal that went away must not stop the run.
                let _ = line.update(
                    out,
                    now - started,
                    now < limiter.measure_start(),
                    live.totals(),
                    PROGRESS_INTERVAL,
                );
            }
        }
    };
    // The load generator's share of the machine, over the warm-up and the measurement.
    let wall = started.elapsed().as_secs_f64();
    let client_cpu_cores = cpu_before
        .zip(control::process_cpu_time())
        .filter(|_| wall > 0.0)
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64() / wall);
    if progress {
        let _ = Progress::clear(out);
    }
    let ran = ran?;
    let summary = Summary::merge(ran.recorders, limiter.measure_start())?;
    let mut report = Report::new(plan, &summary, limiter.stopped(), ran.stampede);
    report.fill = ran.fill;
    report.client_cpu_cores = client_cpu_cores;
    Ok(report)
}

/// A target, connected and ready to run.
enum Prepared {
    Grpc {
        conns: Vec<(wire::Conn, wire::Driver)>,
        job: grpc::Job,
    },
    Stampede {
        conns: Vec<(wire::Conn, wire::Driver)>,
        job: Arc<stampede::Job>,
        endpoints: usize,
    },
    Fill {
        conns: Vec<(wire::Conn, wire::Driver)>,
        job: Arc<fill::Job>,
    },
    Memcached {
        streams: Vec<tokio::net::TcpStream>,
        job: Arc<memcached::Job>,
    },
}

async fn prepare(plan: &Plan) -> Result<Prepared, BenchError> {
    match (&plan.target, &plan.workload) {
        (Target::Grpc(target), Workload::Mix(mix)) => {
            let mix = Arc::new(mix.clone());
            let value = Arc::new(keys::value(mix.value_size));
            grpc::prefill(target, plan.connections, plan.timeout, &mix, &value).await?;
            let conns = grpc::connect(target, plan.connections, plan.timeout).await?;
            Ok(Prepared::Grpc {
                conns,
                job: grpc::Job {
                    mix,
                    value,
                    streams: plan.streams,
                    seed: plan.seed,
                },
            })
        }
        (Target::Grpc(target), Workload::Stampede(settings)) => {
            let conns = grpc::connect(target, plan.connections, plan.timeout).await?;
            let job = stampede::Job {
                key: stampede::hot_key(&settings.key_prefix),
                value: keys::value(64),
                ttl: settings.ttl,
                grace: settings.grace,
                recompute: settings.recompute,
                streams: plan.streams,
            };
            stampede::seed(target, plan.timeout, &job).await?;
            Ok(Prepared::Stampede {
                conns,
                job: Arc::new(job),
                endpoints: target.endpoints.len().min(plan.connections),
            })
        }
        (Target::Grpc(target), Workload::Fill(settings)) => {
            let conns = grpc::connect(target, plan.connections, plan.timeout).await?;
            let job = fill::Job {
                key_prefix: settings.key_prefix.clone(),
                value: keys::value(64),
                recompute: settings.recompute,
                wait_ms: settings.wait_ms,
                streams: plan.streams,
                endpoints: target.endpoints.len().min(plan.connections),
            };
            Ok(Prepared::Fill {
                conns,
                job: Arc::new(job),
            })
        }
        (Target::Memcached { addr, protocol }, Workload::Mix(mix)) => {
            let mut streams = memcached::connect(addr, plan.connections, plan.timeout).await?;
            let job = memcached::Job {
                addr: addr.clone(),
                protocol: *protocol,
                value: keys::value(mix.value_size),
                mix: Arc::new(mix.clone()),
                streams: plan.streams,
                timeout: plan.timeout,
            };
            if let Some(first) = streams.first_mut() {
                memcached::prefill(&job, first).await?;
            }
            Ok(Prepared::Memcached {
                streams,
                job: Arc::new(job),
            })
        }
        // Refused when the command line is validated.
        (Target::Memcached { .. }, Workload::Stampede(_) | Workload::Fill(_)) => Err(
            BenchError::Internal("the stampede and fill scenarios need mintcache servers".into()),
        ),
    }
}

impl Prepared {
    async fn run(
        self,
        plan: &Plan,
        limiter: Arc<Limiter>,
        live: Arc<Live>,
    ) -> Result<Ran, BenchError> {
        match self {
            Self::Grpc { conns, job } => Ok(Ran {
                recorders: grpc::run(&job, conns, limiter, live).await?,
                stampede: None,
                fill: None,
            }),
            Self::Memcached { streams, job } => Ok(Ran {
                recorders: memcached::run(job, streams, limiter, live, plan.seed).await?,
                stampede: None,
                fill: None,
            }),
            Self::Stampede {
                conns,
                job,
                endpoints,
            } => {
                let (recorders, verdict) = stampede::run(job.clone(), conns, limiter, live).await?;
                Ok(Ran {
                    recorders,
                    stampede: Some(StampedeReport {
                        key: String::from_utf8_lossy(&job.key).into_owned(),
                        readers: plan.in_flight(),
                        endpoints,
                        ttl_seconds: job.ttl,
                        grace_seconds: job.grace,
                        recompute_ms: job.recompute.as_secs_f64() * 1000.0,
                        verdict,
                        reads: 0,
                        stale_percent: 0.0,
                    }),
                    fill: None,
                })
            }
            Self::Fill { conns, job } => {
                let (recorders, verdict) = fill::run(job.clone(), conns, limiter, live).await?;
                Ok(Ran {
                    recorders,
                    stampede: None,
                    fill: Some(FillReport {
                        readers: plan.in_flight(),
                        endpoints: job.endpoints,
                        recompute_ms: job.recompute.as_secs_f64() * 1000.0,
                        wait_ms: job.wait_ms,
                        verdict,
                    }),
                })
            }
        }
    }
}
