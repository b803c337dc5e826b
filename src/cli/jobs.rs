//! The scheduled side of the command line: `serve` (the loop that runs the
//! jobs), the `jobs` commands, and `export` (a job as an Airflow DAG).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::EndpointArgs;
use super::help::*;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Messages per processor batch (1-5000) [default: 1000]. [env: TRIBUTARY_BATCH_SIZE]
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Address of the dashboard, JSON API and /metrics, or "off"
    /// [default: 127.0.0.1:8080; port 0 picks a free one]. Any address that
    /// is not loopback needs TRIBUTARY_WEB_TOKEN (or [web] token_file). [env: TRIBUTARY_WEB_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Name, schedule, next run, paused or not, last run's state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Queue a run now (a running `serve` starts it within a second).
    Trigger { name: String },
    /// Stop starting runs of this job (persists across restarts).
    Pause { name: String },
    /// Start runs of this job again.
    Unpause { name: String },
    /// A job's recent runs, newest first; one run with what it did (--run).
    #[command(after_help = JOBS_RUNS_AFTER_HELP)]
    Runs {
        name: String,
        /// Runs to show (1-1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Only runs older than this run id (the next page: the id printed
        /// after "older runs:").
        #[arg(long, value_name = "RUN", conflicts_with = "run")]
        before: Option<i64>,
        /// This run, with its lines: queued, attempts started and failed
        /// (with their errors), counts, the outcome.
        #[arg(long, value_name = "RUN")]
        run: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Queue a run for every slot of the schedule in (FROM, TO].
    #[command(after_help = JOBS_BACKFILL_AFTER_HELP)]
    Backfill {
        name: String,
        /// RFC 3339, e.g. 2026-11-01T00:00:00Z.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Queue more than 100 runs without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Cancel queued runs (a backfill too large, a trigger by mistake): they
    /// show as cancelled and never start, even after `serve` restarts.
    #[command(after_help = JOBS_CANCEL_AFTER_HELP)]
    Cancel {
        name: String,
        /// This queued run.
        #[arg(long, value_name = "RUN", required_unless_present = "queued")]
        run: Option<i64>,
        /// Every queued run of the job.
        #[arg(long, conflicts_with = "run")]
        queued: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// An Airflow DAG file that runs `tributary ingest` with a job's burst.
    AirflowDag {
        /// The job [default: the first one].
        #[arg(long)]
        job: Option<String>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}
