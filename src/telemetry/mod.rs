//! Log output setup: human-readable lines on stderr, fields first, level
//! chosen by -v/-q or RUST_LOG; Prometheus metrics in `prometheus.rs`.

pub mod prometheus;

use tracing_subscriber::EnvFilter;

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
        .with_target(false)
        .compact()
        .try_init();
}
