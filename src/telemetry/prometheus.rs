//! Prometheus metrics: the exporter's recorder, installed once by `serve`,
//! and the help text of every `tributary_*` metric. Stages record through
//! the `metrics` macros where the work happens; without a recorder those
//! calls cost an atomic load and do nothing.
//!
//! Names follow `tributary_<stage>_<what>_<unit>`. Labels are bounded: a
//! stage name, an outcome, a configured pipeline or job name, a run state.
//! A record id is never a label. Under `serve` the totals a pipeline's
//! stages count (`Stats::for_pipeline`) and the gauges the dashboard
//! samples carry `pipeline="<name>"`.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of the `_seconds` histograms: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder (first call) and returns its handle.
/// Later calls, and a process whose recorder is already set, get the same
/// handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was set first (never, in this
            // binary); the handle then renders nothing but stays usable.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// The exposition text, with the process gauges brought up to date.
pub fn render(handle: &PrometheusHandle) -> String {
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("tributary_process_resident_memory_bytes").set(rss as f64);
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

fn describe() {
    describe_counter!(
        "tributary_source_records_total",
        Unit::Count,
        "Records received from the pipeline's source (decoded or not), by pipeline."
    );
    describe_counter!(
        "tributary_source_rejected_records_total",
        Unit::Count,
        "Users in an API answer that could not be decoded."
    );
    describe_counter!(
        "tributary_source_retries_total",
        Unit::Count,
        "HTTP source requests that were retried (5xx, 429, error bodies, timeouts)."
    );
    describe_histogram!(
        "tributary_source_fetch_duration_seconds",
        Unit::Seconds,
        "Time to fetch one page from the source, retries included."
    );
    describe_counter!(
        "tributary_ingest_skipped_ticks_total",
        Unit::Count,
        "Burst ticks skipped because the previous tick was still busy, by pipeline."
    );
    describe_counter!(
        "tributary_log_appended_records_total",
        Unit::Count,
        "Messages durably appended to the pipeline's log, by pipeline."
    );
    describe_histogram!(
        "tributary_log_append_duration_seconds",
        Unit::Seconds,
        "Time for one batch to become durable in the log."
    );
    describe_counter!(
        "tributary_log_dead_letters_total",
        Unit::Count,
        "Dead letters stored, by the stage that gave up (source, decode, sink)."
    );
    describe_counter!(
        "tributary_log_dead_letters_discarded_total",
        Unit::Count,
        "Dead letters an operator discarded (kept for audit, never replayed)."
    );
    describe_gauge!(
        "tributary_log_dead_letters_waiting",
        Unit::Count,
        "Dead letters neither replayed nor discarded, by pipeline (sampled)."
    );
    describe_gauge!(
        "tributary_log_lag_messages",
        Unit::Count,
        "Messages in the pipeline's log its processor's group has not committed, by pipeline (sampled)."
    );
    describe_counter!(
        "tributary_processor_read_records_total",
        Unit::Count,
        "Messages the processor read from the log, by pipeline."
    );
    describe_histogram!(
        "tributary_processor_decode_duration_seconds",
        Unit::Seconds,
        "Time to decode and validate one batch read from the log."
    );
    describe_histogram!(
        "tributary_processor_end_to_end_latency_seconds",
        Unit::Seconds,
        "Per message, from its append to the log to the store's acknowledgement and the commit."
    );
    describe_counter!(
        "tributary_sink_written_rows_total",
        Unit::Count,
        "Rows the store inserted or changed (acknowledged), by pipeline."
    );
    describe_counter!(
        "tributary_sink_unchanged_rows_total",
        Unit::Count,
        "Rows written again with the same values (replays, duplicates), by pipeline."
    );
    describe_counter!(
        "tributary_sink_retries_total",
        Unit::Count,
        "Sink writes retried because the store was unavailable, by pipeline."
    );
    describe_histogram!(
        "tributary_sink_write_duration_seconds",
        Unit::Seconds,
        "Time for the store to acknowledge one batch, by outcome."
    );
    describe_gauge!(
        "tributary_sink_stored_rows",
        Unit::Count,
        "Rows in the pipeline's table, by pipeline (sampled)."
    );
    describe_counter!(
        "tributary_scheduler_runs_total",
        Unit::Count,
        "Finished or skipped scheduled runs, by job and state."
    );
    describe_counter!(
        "tributary_web_requests_total",
        Unit::Count,
        "Requests to the dashboard, API and /metrics that passed the access checks, by route and status."
    );
    describe_gauge!(
        "tributary_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident set size of the tributary process."
    );
}
