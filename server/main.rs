//! `mintcache-server`: loads the configuration, sets up logs and telemetry, binds the gRPC and
//! admin listeners, serves until SIGTERM or SIGINT, then drains and exits 0.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mintcache::config::{CONFIG_ENV, Config, Settings};
use mintcache::{Listeners, telemetry};

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
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mintcache-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(settings: Settings) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&settings)?;
    let listeners = Listeners::bind(&settings).await?;
    announce(&listeners);
    let result = mintcache::run(settings, listeners, shutdown_signal()).await;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(result?)
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
