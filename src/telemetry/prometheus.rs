//! Prometheus metrics: the exporter's recorder, installed once by `serve`,
//! describing every metric declared in `metrics.rs`. Stages record through
//! the `metrics` macros where the work happens; without a recorder those
//! calls cost an atomic load and do nothing.

use std::sync::OnceLock;

use ::metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::metrics::{self, Kind};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of the `_seconds` histograms: 0.5 ms to 30 s, closer together
/// between 5 and 150 ms, where a pipeline's per-message latencies fall, so
/// a quantile read from them is not a guess across a 50 ms wide bucket.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder (first call) and returns its handle.
/// Later calls, and a process whose recorder is already set, get the same
/// handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was set first (never, in this
            // binary); the handle then renders nothing but stays usable.
            let _ = ::metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// A recorder with this exporter's buckets, not yet installed.
pub(super) fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// The exposition text, with the process gauges brought up to date.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(rss) = resident_bytes() {
        ::metrics::gauge!(metrics::PROCESS_RESIDENT_MEMORY.name).set(rss as f64);
    }
    handle.render()
}

/// The process's current resident set size (VmRSS), where /proc tells it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Describes every declared metric (`metrics.rs`): its help text and unit.
pub(super) fn describe() {
    for m in metrics::ALL {
        match m.kind {
            Kind::Counter => describe_counter!(m.name, m.unit, m.help),
            Kind::Gauge => describe_gauge!(m.name, m.unit, m.help),
            Kind::Histogram => describe_histogram!(m.name, m.unit, m.help),
        }
    }
}
