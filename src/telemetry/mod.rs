//! Log output setup: human-readable lines on stderr, fields first, level
//! chosen by -v/-q or RUST_LOG; every metric declared in `metrics.rs`, the
//! Prometheus exporter in `prometheus.rs`.

pub mod metrics;
pub mod prometheus;

use std::io::Write;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The progress bar on the terminal, if one is drawn: a log line is written
/// with the bar lifted (`suspend`), so no stale copy of the bar is left
/// above it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Says which progress bar is drawn (`None` once it is cleared).
pub fn drawing(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// stderr, around the progress bar. The formatter writes each event in one
/// `write_all`, so each line is written whole between two draws of the bar.
struct LogLines;

impl Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let bar = BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

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
        .with_writer(|| LogLines)
        .with_ansi(colour())
        .with_target(false)
        .compact()
        .try_init();
}
