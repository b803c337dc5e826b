//! The processor's two seams: `Batches`, what it reads from (a group's
//! reader), and `Target`, what its write stage writes to (the store, the
//! log's dead letters and the group's commit). The pipeline's log, reader,
//! committer and sink implement them; the unit tests implement them with
//! fakes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::log::{
    Checkpoint, DeadLetter, Log, LogCommitter, LogError, LogMessage, LogReader,
};
use crate::pipeline::sink::{Position, Rows, Sink, SinkError, WriteAck};
use crate::pipeline::table::TableSchema;

/// Where the processor reads batches from.
pub(super) trait Batches: Send {
    /// Up to `max` messages after the position, waiting up to `wait`.
    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<LogMessage>, LogError>> + Send;
    /// Messages retention dropped before they were read, since the last call.
    fn take_lost(&mut self) -> u64;
    /// Where the next poll reads.
    fn checkpoint(&self) -> Checkpoint;
    /// Whether the position has reached the end of the log.
    fn caught_up(&self) -> impl Future<Output = Result<bool, LogError>> + Send;
}

/// Where the write stage writes a batch: the store, the dead letters, and
/// the commit that follows both.
pub(super) trait Target: Clone + Send + Sync + 'static {
    /// The log's topic (a dead letter's origin).
    fn topic(&self) -> &str;
    /// The store's table; `None` for the seed table.
    fn schema(&self) -> Option<&Arc<TableSchema>>;
    /// Stores dead letters durably (see [`Log::dead_letter`]).
    fn dead_letter(
        &self,
        letters: Vec<DeadLetter>,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Writes rows (see [`Sink::write`]).
    fn write(&self, rows: Rows) -> impl Future<Output = Result<WriteAck, SinkError>> + Send;
    /// Writes rows with the position past them (see [`Sink::write_at`]).
    fn write_at(
        &self,
        rows: Rows,
        scope: &str,
        position: &Position,
    ) -> impl Future<Output = Result<WriteAck, SinkError>> + Send;
    /// Commits the group's position (see [`LogCommitter::commit`]).
    fn commit(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<(), LogError>> + Send;
    /// Makes every commit so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), LogError>> + Send;
}

impl Batches for LogReader {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogMessage>, LogError> {
        LogReader::poll(self, max, wait).await
    }

    fn take_lost(&mut self) -> u64 {
        LogReader::take_lost(self)
    }

    fn checkpoint(&self) -> Checkpoint {
        LogReader::checkpoint(self)
    }

    async fn caught_up(&self) -> Result<bool, LogError> {
        LogReader::caught_up(self).await
    }
}

/// The pipeline's own target: its log, store and group committer.
#[derive(Clone)]
pub(super) struct Parts {
    pub log: Log,
    pub sink: Sink,
    pub committer: LogCommitter,
}

impl Target for Parts {
    fn topic(&self) -> &str {
        self.log.topic()
    }

    fn schema(&self) -> Option<&Arc<TableSchema>> {
        self.sink.schema()
    }

    async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        self.log.dead_letter(letters).await
    }

    async fn write(&self, rows: Rows) -> Result<WriteAck, SinkError> {
        self.sink.write(rows).await
    }

    async fn write_at(
        &self,
        rows: Rows,
        scope: &str,
        position: &Position,
    ) -> Result<WriteAck, SinkError> {
        self.sink.write_at(rows, scope, position).await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        self.committer.commit(checkpoint).await
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.committer.flush().await
    }
}
