//! `mintcache-server`: loads the configuration, sets up logs and telemetry, binds the gRPC and
//! admin listeners, serves until SIGTERM or SIGINT, then drains and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mintcache::config::{CONFIG_ENV, Config};
use mintcache::{Listeners, telemetry};

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
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mintcache-server: configuration error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check_config {
        #[allow(clippy::print_stdout)]
        {
            println!("# mintcache-server: configuration is valid; effective configuration:");
            print!("{}", config.to_toml());
        }
        return ExitCode::SUCCESS;
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mintcache-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&config)?;
    let listeners = Listeners::bind(&config).await.with_context(|| {
        format!(
            "cannot listen on {} (server.listen) and {} (admin.listen)",
            config.server.listen, config.admin.listen
        )
    })?;
    let result = mintcache::run(config, listeners, shutdown_signal()).await;
    tracing::info!("stopped");
    telemetry.shutdown();
    Ok(result?)
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
