//! The `tributary` binary: flags → config → app, and errors → exit codes
//! (0 success, 1 runtime failure, 2 bad usage or configuration).

use std::process::ExitCode;

use clap::Parser;

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
