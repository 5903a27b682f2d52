//! `mintcache-server`: loads the configuration, sets up logs and telemetry, binds the gRPC and
//! admin listeners, serves until SIGTERM or SIGINT, then drains and exits 0.
//!
//! A failure is said once: before serving (configuration, telemetry, a port that cannot be
//! bound) as one plain line on stderr with what to do about it; while serving, as one
//! `ERROR` log line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mintcache::config::{CONFIG_ENV, Config, Settings};
use mintcache::{BindError, Listeners, telemetry};

/// jemalloc rather than the system's malloc: glibc gives each thread its own arena and keeps
/// what was freed there, so a busy embedded store whose entries are allocated and evicted on
/// different worker threads grew to about twice `embedded.max_bytes` in resident memory (and
/// more with more threads). jemalloc hands emptied pages back — within 100 ms, with the
/// settings compiled in from `.cargo/config.toml` (by default it keeps them for 10 s, and a
/// store under a stream of writes held up to 1.9 times its budget) — and memory stays within
/// the budget (docs/OPERATIONS.md, "Embedded store memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for a configuration error (EX_CONFIG is 78; 64 is EX_USAGE, used for bad input).
const EXIT_BAD_CONFIG: u8 = 64;

/// The mintcache gRPC server.
#[derive(Debug, Parser)]
#[command(name = "mintcache-server", version, about)]
struct Args {
    /// TOML configuration file (settings not in it come from defaults and MINTCACHE_* variables).
    #[arg(long, env = CONFIG_ENV, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the effective configuration, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match Config::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("mintcache-server: invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check_config {
        #[allow(clippy::print_stdout)]
        {
            println!("# mintcache-server: configuration is valid; effective configuration:");
            print!("{}", settings.to_toml());
        }
        return ExitCode::SUCCESS;
    }
    match serve(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stopped::AtStartup(message)) => {
            eprintln!("mintcache-server: {message}");
            ExitCode::FAILURE
        }
        // Already logged.
        Err(Stopped::WhileServing) => ExitCode::FAILURE,
    }
}

/// How the server failed.
enum Stopped {
    /// Before serving: the line to print.
    AtStartup(String),
    /// While serving: logged as it happened.
    WhileServing,
}

#[tokio::main]
async fn serve(settings: Settings) -> Result<(), Stopped> {
    let telemetry = telemetry::init(&settings).map_err(|e| Stopped::AtStartup(error_text(&e)))?;
    let listeners = Listeners::bind(&settings)
        .await
        .map_err(|e| Stopped::AtStartup(bind_failure(&e)))?;
    announce(&listeners);
    let result = mintcache::run(settings, listeners, shutdown_signal()).await;
    match &result {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => tracing::error!("stopped: {}", error_text(e)),
    }
    telemetry.shutdown();
    result.map_err(|_| Stopped::WhileServing)
}

/// An error and its causes in one line, each said once (a message that already includes its
/// cause's words does not repeat them).
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A port that cannot be bound, with the way forward: the setting to change, as a variable or
/// in the configuration file.
fn bind_failure(e: &BindError) -> String {
    let variable = format!(
        "MINTCACHE_{}",
        e.key.to_ascii_uppercase().replacen('.', "__", 1)
    );
    let elsewhere =
        std::net::SocketAddr::new(e.addr.ip(), e.addr.port().checked_add(10).unwrap_or(0));
    let fix = format!(
        "listen elsewhere: {variable}={elsewhere} (port 0: any free port, printed on the \
         `listening` line), or {} in a --config file",
        e.key
    );
    let why = match e.source.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another process holds this port (another mintcache-server?): stop it, or {fix}"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("ports below 1024 need privileges: {fix}")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("this machine has no such address: {fix}")
        }
        _ => fix,
    };
    format!(
        "cannot listen on {} ({}): {}; {why}",
        e.addr, e.key, e.source
    )
}

/// Prints the bound addresses as one line on stdout, `listening grpc=ADDR admin=ADDR`: with
/// port 0 in the configuration, this is how a supervisor (or a test) learns the ports.
fn announce(listeners: &Listeners) {
    let addr = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_or_else(|e| format!("unknown({e})"), |a| a.to_string())
    };
    // Not println!: a closed stdout must not stop the server.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "listening grpc={} admin={}",
        addr(&listeners.grpc),
        addr(&listeners.admin)
    );
    let _ = stdout.flush();
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}
