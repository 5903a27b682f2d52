//! `mintcache`: the command-line client. All logic is in the `mintcache_cli` library.

use std::process::ExitCode;

use mintcache_cli::{Exit, Terminal, run_with};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mintcache: error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    let exit = runtime.block_on(run_with(
        std::env::args_os(),
        Terminal::detect(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    ));
    ExitCode::from(exit.code())
}
