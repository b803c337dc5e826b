//! The `tributary` binary: flags → config → app, and errors → exit codes
//! (0 success, 1 runtime failure, 2 bad usage or configuration).

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: the pipeline makes many small,
/// short-lived strings per record, and glibc's malloc/free took a third of
/// the ingest profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = tributary::cli::Cli::parse();
    tributary::telemetry::init(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tributary")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(tributary::app::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
