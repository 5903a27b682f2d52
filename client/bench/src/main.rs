//! `mintcache-bench`: the load generator. All logic is in the `mintcache_bench` library; this file
//! picks the runtime's thread count, shows progress only on a terminal, and turns Ctrl-C into
//! an orderly stop.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use mintcache_bench::{Exit, execute, parse};

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let options = match parse(std::env::args_os(), &mut out, &mut err) {
        Ok(options) => options.with_progress(std::io::stdout().is_terminal()),
        Err(exit) => return ExitCode::from(exit.code()),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = options.threads() {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                err,
                "mintcache-bench: error: cannot start the async runtime: {e}"
            );
            return ExitCode::from(Exit::Error.code());
        }
    };
    let interrupt = async {
        // Without a signal handler the run simply cannot be interrupted early.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let exit = runtime.block_on(execute(options, &mut out, &mut err, interrupt));
    ExitCode::from(exit.code())
}
