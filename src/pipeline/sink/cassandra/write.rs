//! Rows written under the sink's concurrency limit, their answers sorted
//! into an acknowledgement.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;

use super::{Failure, classify};
use crate::pipeline::sink::concurrency::{Limiter, Outcome, Slot};
use crate::pipeline::sink::{SinkError, WriteAck};

/// Runs `write(i)` for every row index below `rows`, as many at once as
/// `limiter` allows (its limit is shared with the sink's other batches and
/// learns from each answer), and sorts the outcomes into an
/// acknowledgement: a row Cassandra refuses for good is listed in
/// `rejected`; any other failure fails the batch, as retryable unless it is
/// one no retry can cure (authentication, permissions).
pub(in crate::pipeline::sink) async fn write_all<F>(
    rows: usize,
    limiter: &Arc<Limiter>,
    mut write: impl FnMut(usize) -> F,
) -> Result<WriteAck, SinkError>
where
    F: Future<Output = Result<QueryResult, ExecutionError>>,
{
    let mut pending = FuturesUnordered::new();
    let mut results: Vec<(usize, Result<(), Failure>)> = Vec::with_capacity(rows);
    let mut next = 0;
    let settle = |(i, slot, result): (usize, Slot, Result<QueryResult, ExecutionError>)| {
        let outcome = result.map(|_| ()).map_err(|e| classify(&e));
        slot.done(match &outcome {
            Err(Failure::Transient(_)) => Outcome::Overload,
            _ => Outcome::Done,
        });
        (i, outcome)
    };
    while next < rows || !pending.is_empty() {
        if next < rows {
            tokio::select! {
                slot = limiter.acquire() => {
                    let written = write(next);
                    let i = next;
                    pending.push(async move { (i, slot, written.await) });
                    next += 1;
                }
                Some(done) = pending.next(), if !pending.is_empty() => results.push(settle(done)),
            }
        } else if let Some(done) = pending.next().await {
            results.push(settle(done));
        }
    }
    let mut ack = WriteAck::default();
    for (i, result) in results {
        match result {
            Ok(()) => ack.written += 1,
            Err(Failure::Rejected(reason)) => ack.rejected.push((i, reason)),
            Err(Failure::Transient(reason)) => {
                return Err(SinkError::Cassandra {
                    message: reason,
                    retryable: true,
                });
            }
            Err(Failure::Fatal(reason)) => {
                return Err(SinkError::Cassandra {
                    message: reason,
                    retryable: false,
                });
            }
        }
    }
    ack.rejected.sort_by_key(|(i, _)| *i);
    Ok(ack)
}
