//! The data path, declared in flow order:
//!
//! ```text
//! source ──► ingest ──► log ──► processor ──► sink
//!  (pages)  (flatten)  (durable,  (decode,     (idempotent
//!                       offsets)   validate)    upserts)
//!                 └────────► dead letters ◄──────┘
//! ```
//!
//! This module wires the stages for the three shapes of a job: `run` (all of
//! it, ingest and processing concurrently), `ingest` and `process`.
//! It never imports the CLI or the web layer.

pub mod source;

pub mod transform;

pub mod ingest;

pub mod log;

pub mod processor;

pub mod sink;

pub mod table;

pub mod shape;

pub mod stats;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// What opening a log or store does with a topic or table that is not
/// there: the commands that write make it; the ones that only look refuse
/// it, naming it, so a mistyped name is said instead of made on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Make,
    Refuse,
}
use tracing::{Instrument, info_span};

use self::ingest::{Feed, IngestError, IngestPlan};
use self::log::{Log, LogError, LogReader};
use self::processor::{ProcessError, Processor, ProcessorConfig, Until};
use self::sink::Sink;
use self::stats::Stats;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// What processing needs, opened and validated: the log of the job and its
/// reader in the consumer group, the sink, settings, shared counters, the
/// shutdown signal.
pub struct Job {
    pub log: Log,
    pub reader: LogReader,
    pub sink: Sink,
    pub group: String,
    pub processor: ProcessorConfig,
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
}

/// The whole path: ingestion and processing run at once, the processor
/// following the log until ingestion is done and the log is drained.
/// If ingestion fails, what it logged is still processed (unless the store
/// is down: once ingestion has failed, a store outage is not waited out),
/// and ingestion's error is the one returned.
pub async fn run(feed: Feed, plan: IngestPlan, job: Job) -> Result<(), PipelineError> {
    // Before ingestion starts, so nothing this run appends counts.
    count_group_backlog(&job.log, &job.group, &job.reader, &job.stats)
        .await
        .map_err(ProcessError::from)?;
    let mut processor = Processor::new(
        job.reader,
        job.log.clone(),
        job.sink,
        job.processor,
        job.stats.clone(),
    );
    processor.prepare().await?;
    let give_up = processor.give_up_token();
    let ingest_done = CancellationToken::new();
    let processing = tokio::spawn(
        processor
            .run(
                Until::DrainedAfter(ingest_done.clone()),
                job.shutdown.clone(),
            )
            .instrument(info_span!("process")),
    );
    let ingested = ingest::run(feed, job.log, plan, job.stats, job.shutdown)
        .instrument(info_span!("ingest"))
        .await;
    if ingested.is_err() {
        give_up.cancel();
    }
    ingest_done.cancel();
    let processed = processing.await.expect("processor task panicked");
    if let Err(e) = ingested {
        if let Err(p) = processed {
            tracing::error!(error = %p, "processing also failed");
        }
        return Err(e.into());
    }
    processed?;
    Ok(())
}

/// Processing alone: until the log is drained, or until shutdown with `follow`.
pub async fn process(job: Job, follow: bool) -> Result<(), ProcessError> {
    if !follow {
        count_group_backlog(&job.log, &job.group, &job.reader, &job.stats).await?;
    }
    let until = if follow {
        Until::Shutdown
    } else {
        Until::Drained
    };
    let done = Processor::new(job.reader, job.log, job.sink, job.processor, job.stats)
        .run(until, job.shutdown)
        .instrument(info_span!("process"))
        .await;
    tracing::debug!("stop: processor closed");
    done
}

/// A Kafka reader learns its partitions only once it reads, so its backlog
/// is asked of the group's commits (the processor counts an embedded
/// reader's itself, from the position it starts at).
async fn count_group_backlog(
    log: &Log,
    group: &str,
    reader: &LogReader,
    counters: &Stats,
) -> Result<(), LogError> {
    if let LogReader::Kafka(_) = reader {
        let backlog = log.backlog(group).await?;
        counters.add(stats::Counter::Backlog, backlog);
    }
    Ok(())
}
