//! The processor's loop over batches: read and decode, hand each batch to
//! its own write task (a bounded number at once), commit in read order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::seam::{Batches, Target};
use super::{
    Counter, Decoded, POLL_WAIT, ProcessError, ProcessorConfig, Rows, Until, WriteStage, Written,
    decode,
};
use crate::pipeline::log::LogMessage;

/// The processor's loop over batches, through its seams (see
/// [`super::Processor::run`]).
///
/// Up to `in_flight` batches are written at once, each by its own task;
/// a committer task takes them in read order and commits a batch only when
/// it and every batch before it are acknowledged, so commits stay in order
/// whatever order the store answers in. A slot is taken before the next
/// poll: while every slot is busy, messages gather in the log and the next
/// poll takes a full batch; under light load a partial batch goes at once.
/// A batch that shares a key with a batch still in flight waits for that
/// one's commit, so two writes of one key never race in the store.
pub(super) async fn drive<B: Batches, T: Target>(
    reader: &mut B,
    stage: WriteStage<T>,
    config: ProcessorConfig,
    until: Until,
    shutdown: CancellationToken,
) -> Result<(), ProcessError> {
    let in_flight = if stage.scope.is_some() {
        1
    } else {
        config.in_flight.max(1)
    };
    let slots = Arc::new(Semaphore::new(in_flight));
    let (to_commit, queue) = mpsc::channel::<InFlight>(in_flight);
    // Cancelled by the committer when it stops early (an error, or shutdown
    // while the store is down): nothing more is read.
    let stopped = CancellationToken::new();
    let (committed_tx, mut committed) = watch::channel(0u64);
    let committer = tokio::spawn(
        commit_in_order(stage.clone(), queue, stopped.clone(), committed_tx).in_current_span(),
    );
    let mut keys: VecDeque<(u64, Option<HashSet<Vec<u8>>>)> = VecDeque::new();
    let mut seq = 0u64;
    let result: Result<(), ProcessError> = 'batches: loop {
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = stopped.cancelled() => break Ok(()),
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
        };
        // Read before checking the ingest flag, so the last append before
        // the flag was raised is never missed.
        let ingest_finished = match &until {
            Until::DrainedAfter(done) => done.is_cancelled(),
            _ => false,
        };
        let batch = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            _ = stopped.cancelled() => break Ok(()),
            batch = reader.poll(config.batch_size, POLL_WAIT) => batch,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => break Err(e.into()),
        };
        let lost = reader.take_lost();
        stage.stats.add(Counter::LostToRetention, lost);
        let decoded = if !batch.is_empty() {
            stage.stats.add(Counter::Read, batch.len() as u64);
            record_read_latency(&batch);
            if seq == 0 {
                tracing::debug!(messages = batch.len(), "start: first messages read");
            }
            let decoding = Instant::now();
            let decoded = decode(
                batch,
                stage.target.topic(),
                config.max_message_bytes,
                stage.target.schema().map(|s| &**s),
            );
            metrics::histogram!(crate::telemetry::metrics::PROCESSOR_DECODE_DURATION.name)
                .record(decoding.elapsed().as_secs_f64());
            decoded
        } else if lost > 0 {
            // The position moved past messages retention dropped, with
            // nothing to write: it is committed like an empty batch, so
            // the loss is counted once, not again at every start.
            Decoded {
                messages: Vec::new(),
                rows: Rows::none(stage.target.schema()),
                row_messages: Vec::new(),
                letters: Vec::new(),
                checkpoint: reader.checkpoint(),
            }
        } else {
            let stop = match &until {
                Until::Drained => reader.caught_up().await,
                Until::DrainedAfter(_) => {
                    if ingest_finished {
                        reader.caught_up().await
                    } else {
                        Ok(false)
                    }
                }
                Until::Shutdown => Ok(false),
            };
            match stop {
                Ok(true) => break Ok(()),
                Ok(false) => continue,
                Err(e) => break Err(e.into()),
            }
        };
        seq += 1;
        if in_flight > 1 {
            let mine = batch_keys(&decoded.messages);
            loop {
                let done = *committed.borrow_and_update();
                while keys.front().is_some_and(|(s, _)| *s <= done) {
                    keys.pop_front();
                }
                if !keys.iter().any(|(_, theirs)| overlap(&mine, theirs)) {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'batches Ok(()),
                    _ = stopped.cancelled() => break 'batches Ok(()),
                    _ = committed.changed() => {}
                }
            }
            keys.push_back((seq, mine));
        }
        let task = {
            let (stage, shutdown) = (stage.clone(), shutdown.clone());
            tokio::spawn(async move { stage.write(decoded, &shutdown).await }.in_current_span())
        };
        let entry = InFlight { seq, task, slot };
        if let Err(mpsc::error::SendError(entry)) = to_commit.send(entry).await {
            // The committer has stopped: this batch is not committed.
            entry.task.abort();
            break Ok(());
        }
    };
    // The batches in flight are finished and committed in order (or, if
    // the sink is down at shutdown, abandoned uncommitted) before
    // returning; then the last commit is made durable.
    drop(to_commit);
    let finished = committer.await.expect("the committer panicked");
    result?;
    finished?;
    stage.target.flush().await?;
    Ok(())
}

/// How long each message of a batch waited in the log before it was read.
fn record_read_latency(batch: &[LogMessage]) {
    super::record_age(
        crate::telemetry::metrics::PROCESSOR_READ_LATENCY.name,
        batch.iter().map(|m| m.timestamp_ms),
    );
}

/// A batch handed to its write task, waiting for its commit.
struct InFlight {
    seq: u64,
    task: JoinHandle<Result<Option<Written>, ProcessError>>,
    /// Given back once the batch is committed.
    slot: OwnedSemaphorePermit,
}

/// The keys of a batch's messages; `None` when one has no key (such a
/// batch is not written beside any other).
fn batch_keys(messages: &[LogMessage]) -> Option<HashSet<Vec<u8>>> {
    messages.iter().map(|m| m.key.clone()).collect()
}

fn overlap(a: &Option<HashSet<Vec<u8>>>, b: &Option<HashSet<Vec<u8>>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            small.iter().any(|k| large.contains(k))
        }
        _ => true,
    }
}

/// Takes the batches in read order and commits each once it, and so every
/// batch before it, is acknowledged. The first that fails (or finds the
/// store down at shutdown) ends it: the batches after it are abandoned
/// uncommitted and `stopped` is cancelled.
async fn commit_in_order<T: Target>(
    stage: WriteStage<T>,
    mut queue: mpsc::Receiver<InFlight>,
    stopped: CancellationToken,
    committed: watch::Sender<u64>,
) -> Result<(), ProcessError> {
    while let Some(InFlight { seq, task, slot }) = queue.recv().await {
        let outcome = match task.await.expect("write stage panicked") {
            Ok(Some(written)) => stage.commit(written).await.map(|()| true),
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        };
        if let Ok(true) = outcome {
            if seq == 1 {
                tracing::debug!("start: first batch stored and committed");
            }
            committed.send_replace(seq);
            drop(slot);
            continue;
        }
        stopped.cancel();
        queue.close();
        while let Some(later) = queue.recv().await {
            later.task.abort();
            let _ = later.task.await;
        }
        return outcome.map(|_| ());
    }
    Ok(())
}
