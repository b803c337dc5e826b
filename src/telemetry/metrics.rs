//! Every `tributary_*` metric, declared once: name, kind, unit, help text
//! and the labels it may carry. Code records through the `metrics` macros
//! with a declaration's name (`counter!(metrics::SINK_RETRIES.name)`),
//! `prometheus.rs` describes them from [`ALL`], and a test fails when a
//! macro names a metric by a string instead.
//!
//! Names follow `tributary_<stage>_<what>_<unit>`. Labels are bounded: a
//! stage name, an outcome, a route template, a status code, a configured
//! pipeline or job name, a run state. A record id is never a label. The
//! totals a pipeline's stages count (`Stats::for_pipeline`) and the gauges
//! the dashboard samples carry `pipeline="<name>"` under `serve`.

use metrics::Unit;

/// The kind of a metric, as Prometheus shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub help: &'static str,
    /// The labels it may carry (bounded sets only).
    pub labels: &'static [&'static str],
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        unit: Unit::Count,
        help,
        labels,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        unit: Unit::Count,
        help,
        labels,
    }
}

const fn seconds(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        unit: Unit::Seconds,
        help,
        labels,
    }
}

/// Fed by a `Stats` counter: labelled with the pipeline under `serve`.
const PIPELINE: &[&str] = &["pipeline"];

pub const SOURCE_RECORDS: Metric = counter(
    "tributary_source_records_total",
    PIPELINE,
    "Records received from the pipeline's source (decoded or not), by pipeline.",
);
pub const SOURCE_REJECTED_RECORDS: Metric = counter(
    "tributary_source_rejected_records_total",
    &[],
    "Users in an API answer that could not be decoded.",
);
pub const SOURCE_RETRIES: Metric = counter(
    "tributary_source_retries_total",
    &[],
    "HTTP source requests that were retried (5xx, 429, error bodies, timeouts).",
);
pub const SOURCE_FETCH_DURATION: Metric = seconds(
    "tributary_source_fetch_duration_seconds",
    &[],
    "Time to fetch one page from the source, retries included.",
);
pub const TRANSFORM_REJECTED_RECORDS: Metric = counter(
    "tributary_transform_rejected_records_total",
    &[],
    "Records a user pipeline's transform rejected or whose row does not fit its table.",
);
pub const INGEST_SKIPPED_TICKS: Metric = counter(
    "tributary_ingest_skipped_ticks_total",
    PIPELINE,
    "Burst ticks skipped because the previous tick was still busy, by pipeline.",
);
pub const LOG_APPENDED_RECORDS: Metric = counter(
    "tributary_log_appended_records_total",
    PIPELINE,
    "Messages durably appended to the pipeline's log, by pipeline.",
);
pub const LOG_APPEND_DURATION: Metric = seconds(
    "tributary_log_append_duration_seconds",
    &[],
    "Time for one batch to become durable in the log.",
);
pub const LOG_DEAD_LETTERS: Metric = counter(
    "tributary_log_dead_letters_total",
    &["stage"],
    "Dead letters stored, by the stage that gave up (source, transform, decode, sink).",
);
pub const LOG_DEAD_LETTERS_DISCARDED: Metric = counter(
    "tributary_log_dead_letters_discarded_total",
    &[],
    "Dead letters an operator discarded (kept for audit, never replayed).",
);
pub const LOG_DEAD_LETTERS_WAITING: Metric = gauge(
    "tributary_log_dead_letters_waiting",
    PIPELINE,
    "Dead letters neither replayed nor discarded, by pipeline (sampled).",
);
pub const LOG_LAG_MESSAGES: Metric = gauge(
    "tributary_log_lag_messages",
    PIPELINE,
    "Messages in the pipeline's log its processor's group has not committed, by pipeline (sampled).",
);
pub const LOG_LOST_MESSAGES: Metric = counter(
    "tributary_log_lost_messages_total",
    PIPELINE,
    "Messages retention dropped before the processor's group read them, by pipeline.",
);
pub const LOG_OFFSET_RESETS: Metric = counter(
    "tributary_log_offset_resets_total",
    &[],
    "Group positions moved by [log] offset_reset because a commit did not fit the log.",
);
pub const PROCESSOR_READ_RECORDS: Metric = counter(
    "tributary_processor_read_records_total",
    PIPELINE,
    "Messages the processor read from the log, by pipeline.",
);
pub const PROCESSOR_DECODE_DURATION: Metric = seconds(
    "tributary_processor_decode_duration_seconds",
    &[],
    "Time to decode and validate one batch read from the log.",
);
pub const PROCESSOR_READ_LATENCY: Metric = seconds(
    "tributary_processor_read_latency_seconds",
    &[],
    "Per message, from its append to the log to the processor reading it.",
);
pub const PROCESSOR_END_TO_END_LATENCY: Metric = seconds(
    "tributary_processor_end_to_end_latency_seconds",
    &[],
    "Per message, from its append to the log to the store's acknowledgement and the commit.",
);
pub const SINK_WRITTEN_ROWS: Metric = counter(
    "tributary_sink_written_rows_total",
    PIPELINE,
    "Rows the store inserted or changed (acknowledged), by pipeline.",
);
pub const SINK_UNCHANGED_ROWS: Metric = counter(
    "tributary_sink_unchanged_rows_total",
    PIPELINE,
    "Rows written again with the same values (replays, duplicates), by pipeline.",
);
pub const SINK_RETRIES: Metric = counter(
    "tributary_sink_retries_total",
    PIPELINE,
    "Sink writes retried because the store was unavailable, by pipeline.",
);
pub const SINK_WRITE_DURATION: Metric = seconds(
    "tributary_sink_write_duration_seconds",
    &["outcome"],
    "Time for the store to acknowledge one batch, by outcome.",
);
pub const SINK_STORED_ROWS: Metric = gauge(
    "tributary_sink_stored_rows",
    PIPELINE,
    "Rows in the pipeline's table, by pipeline (sampled; on Cassandra, where a count scans the \
     table, only while the pipeline's status or rows are being looked at).",
);
pub const SINK_CASSANDRA_NODES: Metric = gauge(
    "tributary_sink_cassandra_nodes",
    &["pipeline", "state"],
    "Cassandra nodes the driver knows, by pipeline and state: up (connected) or down (read every 2 s).",
);
pub const SINK_CONCURRENCY_LIMIT: Metric = gauge(
    "tributary_sink_concurrency_limit",
    PIPELINE,
    "Writes the store takes at once, at most: Cassandra's adaptive limit now, or its fixed `concurrency`, by pipeline (sampled).",
);
pub const SCHEDULER_RUNS: Metric = counter(
    "tributary_scheduler_runs_total",
    &["job", "state"],
    "Finished or skipped scheduled runs, by job and state.",
);
pub const WEB_REQUESTS: Metric = counter(
    "tributary_web_requests_total",
    &["route", "status"],
    "Requests to the dashboard, API and /metrics that passed the access checks, by route and status.",
);
pub const PROCESS_RESIDENT_MEMORY: Metric = Metric {
    name: "tributary_process_resident_memory_bytes",
    kind: Kind::Gauge,
    unit: Unit::Bytes,
    help: "Resident set size of the tributary process.",
    labels: &[],
};

/// Every declared metric, described at start-up in this order.
pub const ALL: &[Metric] = &[
    SOURCE_RECORDS,
    SOURCE_REJECTED_RECORDS,
    SOURCE_RETRIES,
    SOURCE_FETCH_DURATION,
    TRANSFORM_REJECTED_RECORDS,
    INGEST_SKIPPED_TICKS,
    LOG_APPENDED_RECORDS,
    LOG_APPEND_DURATION,
    LOG_DEAD_LETTERS,
    LOG_DEAD_LETTERS_DISCARDED,
    LOG_DEAD_LETTERS_WAITING,
    LOG_LAG_MESSAGES,
    LOG_LOST_MESSAGES,
    LOG_OFFSET_RESETS,
    PROCESSOR_READ_RECORDS,
    PROCESSOR_DECODE_DURATION,
    PROCESSOR_READ_LATENCY,
    PROCESSOR_END_TO_END_LATENCY,
    SINK_WRITTEN_ROWS,
    SINK_UNCHANGED_ROWS,
    SINK_RETRIES,
    SINK_WRITE_DURATION,
    SINK_STORED_ROWS,
    SINK_CASSANDRA_NODES,
    SINK_CONCURRENCY_LIMIT,
    SCHEDULER_RUNS,
    WEB_REQUESTS,
    PROCESS_RESIDENT_MEMORY,
];

#[cfg(test)]
mod tests;
