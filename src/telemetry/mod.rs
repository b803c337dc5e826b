//! Log output setup: human-readable lines on stderr, fields first, level
//! chosen by -v/-q or RUST_LOG; Prometheus metrics in `prometheus.rs`.

pub mod prometheus;

use tracing_subscriber::EnvFilter;

/// Colour only for a person at a terminal: not in a file, a pipe or CI
/// logs, and never with `NO_COLOR` set (no-color.org).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. `verbose` 0 = info, 1 = debug, 2+ = trace;
/// `quiet` = warnings and errors only. RUST_LOG, when set, wins.
pub fn init(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        // scylla warns on every count(*) ("aggregation without partition key"),
        // which is what `count` means to do.
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,scylla=error,tributary={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_target(false)
        .compact()
        .try_init();
}
