//! The command line as typed: clap definitions and their help texts. Parsing
//! only; what the flags mean is decided by `config` and `app`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

mod help;
mod jobs;
use help::*;

pub use jobs::{ExportCommand, JobsCommand, ServeArgs};

const ABOUT: &str = "Random User API → durable log → store, in one binary.";

const LONG_ABOUT: &str = "\
tributary does the job of the Airflow + Kafka + Spark + Cassandra pipeline in
one fast program: schedule → fetch → durable log → process → store.

With no configuration it runs on an embedded default: a built-in Random User
compatible generator, an SQLite log and an SQLite store under ./tributary-data.
Every record keeps a stable id (the user's login.uuid), offsets are committed
only after the store acknowledged the write, and writes are upserts: runs can
be repeated, killed and restarted without losing or duplicating a row.";

const AFTER_HELP: &str = "\
Examples:
  tributary run                              100,000 users end to end, embedded
  tributary run --records 20000 --seed 7     the same 20,000 users every time
  tributary count                            rows in the store
  tributary show --limit 5                   a few rows, like cqlsh's SELECT
  tributary run --duration 2m --interval 1s  the seed DAG: one user a second for 2 minutes
  tributary serve                            scheduled jobs + processor + dashboard
                                             at http://127.0.0.1:8080/ (see [[jobs]])
  tributary jobs trigger random_users        run a job now
  tributary mock-api --port 5080 &           a local Random User API
  tributary run --source http://127.0.0.1:5080/api/ --records 5000
  tributary dlq list                         records that could not be stored, and why
  tributary dlq discard --id 7 --reason \"test\"   set a dead letter aside for good, kept for audit
  tributary jobs runs random_users --run 12  what run #12 did, line by line
  tributary jobs cancel random_users --queued  take back queued runs before they start
  tributary status                           log lag per partition, rows, dead letters
  tributary verify                           is every record of the log in the store?

URL forms:
  --source  gen:[?seed=S&nat=US,GB&gender=female]  |  http(s)://host/api/[1.4/]
  --log     sqlite:  (DATA_DIR/log.db)  |  sqlite:PATH  |  kafka://host:9092[,host2:9092]/topic
  --sink    sqlite:  (DATA_DIR/store.db)  |  sqlite:PATH  |  cassandra://[user:pass@]host:9042/ks.table

Configuration: tributary.toml (or --config FILE), then TRIBUTARY_* variables,
then flags. `tributary config check` prints the result.
Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.";

#[derive(Debug, Parser)]
#[command(name = "tributary", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file [default: ./tributary.toml if it exists]. [env: TRIBUTARY_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded log and store [default: ./tributary-data]. [env: TRIBUTARY_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch users, log them and store them: the whole pipeline.
    Run(RunArgs),
    /// Fetch users into the log only (the seed stack's producer).
    Ingest(RunArgs),
    /// Move what is in the log into the store (the seed stack's Spark job).
    Process(ProcessArgs),
    /// Run the scheduled jobs, the processor (follow mode) and the dashboard
    /// (web page, JSON API, Prometheus /metrics) in one process. One per data
    /// dir (DATA_DIR/serve.lock); exits 1 if the scheduler or the processor
    /// stops with an error.
    Serve(ServeArgs),
    /// Scheduled jobs: list, trigger, pause, unpause, runs, backfill, cancel.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Write files for other tools (an Airflow DAG that runs tributary).
    #[command(subcommand)]
    Export(ExportCommand),
    /// Serve the built-in generator as a Random User-compatible HTTP API.
    MockApi(MockApiArgs),
    /// Print how many rows the store holds.
    Count(StoreArgs),
    /// Log position and lag per partition, rows stored, dead letters waiting.
    Status(StatusArgs),
    /// Print rows of the store as a table.
    Show(ShowArgs),
    /// Fetch the first records of the source and show the rows they would
    /// become, and the dead letters they would make; writes nothing.
    #[command(after_help = PREVIEW_AFTER_HELP)]
    Preview(PreviewArgs),
    /// Check that the store holds every record the log holds: missing rows,
    /// dead letters, undecodable messages, duplicates.
    #[command(long_about = VERIFY_ABOUT, after_help = VERIFY_AFTER_HELP)]
    Verify(VerifyArgs),
    /// Inspect and replay dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure throughput against ceilings measured in the same run.
    Bench(BenchArgs),
    /// Ask a running `serve` whether it is ready (GET /readyz on its
    /// dashboard address): exit 0 when it is, 1 when it is not or does not
    /// answer. A container's health check, with nothing else in the image.
    Healthcheck(HealthcheckArgs),
}

/// Where the pipeline reads and writes.
#[derive(Debug, Clone, Default, Args)]
pub struct EndpointArgs {
    /// The pipeline to work on, by its name in [[pipelines]] [default: the
    /// only one]. `serve` runs only this one. [env: TRIBUTARY_PIPELINE]
    #[arg(long, value_name = "NAME")]
    pub pipeline: Option<String>,
    /// Log URL: sqlite:, sqlite:PATH, or kafka://host:9092[,host2:9092]/topic. [env: TRIBUTARY_LOG]
    #[arg(long, value_name = "URL")]
    pub log: Option<String>,
    /// Topic in the log [default: users_created]. [env: TRIBUTARY_TOPIC]
    #[arg(long)]
    pub topic: Option<String>,
    /// Consumer group of the processor [default: tributary]. [env: TRIBUTARY_GROUP]
    #[arg(long)]
    pub group: Option<String>,
    /// Sink URL: sqlite:, sqlite:PATH, or cassandra://[user:pass@]host:9042/keyspace.table. [env: TRIBUTARY_SINK]
    #[arg(long, value_name = "URL")]
    pub sink: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Source URL: gen:[?seed=..&nat=..] or http(s)://host/api/. [env: TRIBUTARY_SOURCE]
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Records to fetch [default: 100000]. Not with --duration.
    #[arg(long, value_name = "N", conflicts_with = "duration", allow_negative_numbers = true, value_parser = parse_count)]
    pub records: Option<u64>,
    /// Burst mode: keep fetching for this long (e.g. 2m), like the seed DAG.
    #[arg(long, value_parser = parse_burst_duration, requires = "interval")]
    pub duration: Option<Duration>,
    /// Burst mode: one request every INTERVAL (e.g. 1s; 10ms to 1d).
    #[arg(long, value_parser = parse_interval, requires = "duration")]
    pub interval: Option<Duration>,
    /// Burst mode: records per request (1-5000) [default: 1].
    #[arg(long, value_name = "N", requires = "duration", value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub per_tick: Option<u64>,
    /// Records per request, log append and store write (1-5000) [default: 1000]. [env: TRIBUTARY_BATCH_SIZE]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Seed of the user sequence: same seed, same users [default: random, printed]. [env: TRIBUTARY_SEED]
    #[arg(long)]
    pub seed: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ProcessArgs {
    /// Keep following the log until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub follow: bool,
    /// Messages per batch (1-5000) [default: 1000]. [env: TRIBUTARY_BATCH_SIZE]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The address `serve` listens on [default: its `--listen`, i.e. [web]
    /// listen or TRIBUTARY_WEB_LISTEN]; an unspecified address such as
    /// 0.0.0.0:8080 is asked on loopback.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Ask only whether it is alive (/healthz), not whether its log, store
    /// and scheduler answer (/readyz).
    #[arg(long)]
    pub live: bool,
    /// Give up after this long (1ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_healthcheck_timeout)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

const PREVIEW_AFTER_HELP: &str = "\
Examples:
  tributary preview --config orders.toml --pipeline orders --limit 5
  tributary preview --config orders.toml --json | jq .dead_letters

A user pipeline's records go through its transform and its table's type
check, exactly as ingestion would run them; nothing is logged or stored.
When the table is not declared (no `columns`), it is read from the store.";

#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// Records to fetch (from the first page on).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub limit: u64,
    /// Rows and dead letters as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = SHOW_AFTER_HELP)]
pub struct ShowArgs {
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Every cell in full (up to 1024 characters), however wide the lines.
    #[arg(long, conflicts_with = "json")]
    pub wide: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

const VERIFY_ABOUT: &str = "\
Check that the store holds every record the log holds.

verify reads every message the log retains (all partitions, from the
earliest offset to the end when it starts; no consumer group is joined and
nothing is committed) and every id in the store, then reconciles them. Each
id of the log is either:
  present          in the store;
  dead-lettered    not in the store, but its message has a waiting dead
                   letter (tributary dlq list): accounted for;
  missing          not in the store although the processor's group (--group)
                   has committed past it, and no dead letter: lost;
  not processed    not in the store and past the group's commit: the
                   processor has not reached it yet.
Messages with no id (no key and no \"id\" in the JSON) are listed with their
dead letter, if any. An id logged twice with the same payload is a harmless
repeat; with different payloads, a conflict. Both are counted.

Memory stays small however long the log: ids are streamed into a scratch
SQLite file in the data dir, compared there, and the file is deleted.";

const VERIFY_AFTER_HELP: &str = "\
Examples:
  tributary verify                        the embedded log against the embedded store
  tributary verify --show 100             list up to 100 missing ids
  tributary verify --json > report.json   every missing id, as JSON
  tributary verify --strict               also fail on rows the log never had
  tributary verify --log kafka://127.0.0.1:9092/users_created \\
                   --sink cassandra://127.0.0.1:9042/spark_streams.created_users

Exit codes: 0 every id of the log is in the store or accounted for by a dead
letter; 1 ids are missing or not processed yet, a message with no id has no
dead letter, the log is gone or empty while the store has rows, or (with
--strict) the store has rows the log never had; 2 bad usage.";

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Also fail on ids in the store that the log never had. Off by default:
    /// a store legitimately keeps rows whose messages retention dropped.
    #[arg(long)]
    pub strict: bool,
    /// Pass even when messages past the group's commit are not stored yet
    /// (verifying while the processor runs).
    #[arg(long)]
    pub allow_pending: bool,
    /// How many ids of each list (missing, not processed, extra, no id) to
    /// print; --json always writes every one.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub show: usize,
    /// Print the report as one JSON object on stdout, with the full lists.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (the waiting ones, unless --all or --discarded).
    #[command(after_help = DLQ_LIST_AFTER_HELP)]
    List {
        /// Every letter: replayed and discarded ones too.
        #[arg(long, conflicts_with = "discarded")]
        all: bool,
        /// Only discarded letters, with when and why.
        #[arg(long)]
        discarded: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line (payload as text and base64-free UTF-8 where it is).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Set dead letters aside for good: kept for audit with a reason, never
    /// replayed, not counted as waiting.
    #[command(after_help = DLQ_DISCARD_AFTER_HELP)]
    Discard {
        /// These letters (repeat for more).
        #[arg(long = "id", value_name = "ID", required_unless_present = "all")]
        ids: Vec<i64>,
        /// Every waiting letter (needs --reason).
        #[arg(long, conflicts_with = "ids", requires = "reason")]
        all: bool,
        /// Why, kept with each letter.
        #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
        reason: Option<String>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Run dead letters through decoding and the store again (after a fix).
    ///
    /// Exit codes: 0 every letter asked for is now in the store; 1 some still
    /// fail (they stay waiting, with their new reason) or an id was not found.
    Replay {
        /// Only these ids [default: all not yet replayed].
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<i64>,
        /// Write a letter's row even where the store holds another row of
        /// its key. Without it such a letter stays waiting: its record was
        /// never stored, so the row there came from another record, most
        /// often a newer one.
        #[arg(long)]
        overwrite: bool,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it resolved, secrets redacted.
    Check {
        #[command(flatten)]
        endpoints: EndpointArgs,
        /// Source URL to resolve as `run` would. [env: TRIBUTARY_SOURCE]
        #[arg(long, value_name = "URL")]
        source: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct MockApiArgs {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 5080)]
    pub port: u16,
    /// Address to bind: a loopback address (the mock API has no authentication).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
    /// Share of requests answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub rate_limit_rate: f64,
    /// Share of requests answered 200 with an {"error": ...} body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub error_body_rate: f64,
    /// Share of users sent without their `login` (no id): each becomes a
    /// dead letter of the source stage. Chosen by seed and the user's place
    /// in the sequence, so the same user is always malformed.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub malformed_rate: f64,
    /// Answer page 1 whatever `page` asks for (and say so in `info`), as a
    /// broken compatible API or a cache in front of one does.
    #[arg(long)]
    pub ignore_page: bool,
    /// Retry-After seconds sent with a 429.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Delay before every answer (e.g. 20ms).
    #[arg(long, value_parser = parse_latency, default_value = "0s")]
    pub latency: Duration,
    /// Seed of the fault dice, for reproducible fault sequences [default: random].
    #[arg(long)]
    pub fault_seed: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Records per measurement.
    #[arg(long, default_value_t = 100_000)]
    pub records: u64,
    /// Write the results as JSON to this file too.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also measure the Kafka log on this cluster (bootstrap servers), beside
    /// Kafka's own ProducerPerformance and ConsumerPerformance.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
    /// Also measure the Cassandra sink on this node, beside a raw driver
    /// insert loop. With --kafka, the path Kafka → Cassandra as well: the
    /// full path against the sink alone, `process` draining at least
    /// 200,000 messages (rows/s, peak RSS), the time to its first row,
    /// the half-load latency (as --latency) and the write-limit sweep.
    #[arg(long, value_name = "HOST:PORT")]
    pub cassandra: Option<String>,
    /// Only measure burst tick precision: ticks every 100 ms for this many
    /// seconds while `tributary run` processes at full speed beside it.
    #[arg(long, value_name = "SECONDS")]
    pub ticks: Option<u64>,
    /// Only measure what an open dashboard costs: `serve` runs a job of
    /// --records users without and with this browser (headless) on its page.
    #[arg(long, value_name = "CHROMIUM", num_args = 0..=1, default_missing_value = "/usr/bin/chromium")]
    pub dashboard: Option<PathBuf>,
    /// Only measure how long records wait between the log and the store at
    /// half load (p50, p99): `serve` at full speed for --records users, then
    /// at half that rate for 30 s; on Kafka and/or Cassandra when --kafka
    /// and/or --cassandra are given.
    #[arg(long)]
    pub latency: bool,
    /// Only measure scale-out: 1, 2, … N `process` in one group draining a
    /// topic of 6 partitions into Cassandra (needs --kafka and --cassandra).
    #[arg(long, value_name = "N", requires_all = ["kafka", "cassandra"], value_parser = clap::value_parser!(u32).range(1..=8))]
    pub scale_out: Option<u32>,
    /// The half-load burst appends a page every this many milliseconds
    /// (smaller pages more often: more even arrivals).
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub tick_ms: u64,
    /// With --cassandra: also the sink alone at fixed limits 16, 64, 256
    /// and 512 beside its default adaptive limit, in three interleaved
    /// rounds (each starting one setting later), medians kept (always,
    /// with --kafka too).
    #[arg(long)]
    pub concurrency_sweep: bool,
    /// The script that runs Kafka's tools (see docs/infra.md).
    #[arg(long, value_name = "PATH", default_value = "scripts/infra")]
    pub infra: PathBuf,
}

/// A duration between `min` and `max`: anything outside is a typo (`1ns`
/// between requests, a burst of a thousand years), refused before it runs.
fn parse_duration_within(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 1s, 2m)"))?;
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

fn parse_burst_duration(s: &str) -> Result<Duration, String> {
    parse_duration_within(
        s,
        Duration::from_millis(10),
        Duration::from_secs(31_557_600),
    )
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, Duration::from_millis(10), Duration::from_secs(86_400))
}

fn parse_healthcheck_timeout(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, Duration::from_millis(1), Duration::from_secs(3600))
}

fn parse_latency(s: &str) -> Result<Duration, String> {
    parse_duration_within(s, Duration::ZERO, Duration::from_secs(600))
}

/// A count of records: a whole number from 1 up.
fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= i128::from(u64::MAX) => Ok(n as u64),
        Ok(_) => Err(format!(
            "{s} is not a count of records: give a whole number from 1 up (e.g. 1000)"
        )),
        Err(_) => Err(format!(
            "{s:?} is not a whole number: give a count of records from 1 up (e.g. 1000)"
        )),
    }
}

/// A discard's reason: some text, kept to 1000 characters.
fn parse_reason(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("give a reason, e.g. --reason \"test records\"".into());
    }
    if s.chars().count() > 1000 {
        return Err("at most 1000 characters".into());
    }
    Ok(s.to_owned())
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

impl EndpointArgs {
    /// The overrides these flags make (the environment's are read by
    /// [`Overrides::from_env`]).
    pub fn overrides(&self, data_dir: Option<PathBuf>) -> Overrides {
        Overrides {
            data_dir,
            pipeline: self.pipeline.clone(),
            log: self.log.clone(),
            sink: self.sink.clone(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            ..Overrides::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
