//! The processor's delivery guarantee against fakes: a reader that hands out
//! scripted batches, and a store whose acknowledgements the test controls
//! (held back, refusing rows, failing for good or for a while).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::seam::{Batches, Target};
use super::*;
use crate::pipeline::sink::Position;
use crate::pipeline::source::generator::Generator;

/// What the fakes saw, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// A write began with these row ids.
    WriteStarted(Vec<String>),
    /// The store acknowledged a write of these ids (rejected ones left out).
    Acked(Vec<String>),
    /// A write failed.
    Failed { retryable: bool },
    /// Dead letters stored: stage and origin (partition, offset).
    Letters(Vec<(Stage, i32, i64)>),
    /// A commit: the next offset per partition.
    Commit(BTreeMap<i32, i64>),
}

/// How the fake store answers one write.
enum Reply {
    Ack,
    /// Acknowledges only once the test notifies.
    HoldThenAck(Arc<Notify>),
    /// Acknowledges, refusing the rows at these indexes for good.
    Reject(Vec<usize>),
    Fail {
        retryable: bool,
    },
}

#[derive(Clone, Default)]
struct FakeTarget {
    events: Arc<Mutex<Vec<Event>>>,
    /// Replies to the next writes, in order; an empty script acknowledges.
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Notified whenever a write begins.
    write_began: Arc<Notify>,
}

impl FakeTarget {
    fn with_script(replies: impl IntoIterator<Item = Reply>) -> FakeTarget {
        let fake = FakeTarget::default();
        fake.script.lock().unwrap().extend(replies);
        fake
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }

    fn commits(&self) -> Vec<BTreeMap<i32, i64>> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Commit(next) => Some(next),
                _ => None,
            })
            .collect()
    }
}

fn ids(rows: &Rows) -> Vec<String> {
    match rows {
        Rows::Users(rows) => rows.iter().map(|r| r.id.to_string()).collect(),
        Rows::Table(_) => panic!("the fake store takes seed rows"),
    }
}

impl Target for FakeTarget {
    fn topic(&self) -> &str {
        "users"
    }

    fn schema(&self) -> Option<&Arc<TableSchema>> {
        None
    }

    async fn dead_letter(&self, letters: Vec<DeadLetter>) -> Result<(), LogError> {
        if !letters.is_empty() {
            let origins = letters
                .iter()
                .map(|l| {
                    let o = l.origin.as_ref().expect("a processor letter has an origin");
                    (l.stage, o.partition, o.offset)
                })
                .collect();
            self.push(Event::Letters(origins));
        }
        Ok(())
    }

    async fn write(&self, rows: Rows) -> Result<WriteAck, SinkError> {
        let ids = ids(&rows);
        self.push(Event::WriteStarted(ids.clone()));
        self.write_began.notify_one();
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Reply::Ack);
        let rejected = match reply {
            Reply::Ack => Vec::new(),
            Reply::HoldThenAck(gate) => {
                gate.notified().await;
                Vec::new()
            }
            Reply::Reject(at) => at,
            Reply::Fail { retryable } => {
                self.push(Event::Failed { retryable });
                return Err(SinkError::Cassandra {
                    message: "the fake store fails".into(),
                    retryable,
                });
            }
        };
        let acked = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(i))
            .map(|(_, id)| id.clone())
            .collect::<Vec<_>>();
        self.push(Event::Acked(acked.clone()));
        Ok(WriteAck {
            written: acked.len() as u64,
            unchanged: 0,
            rejected: rejected
                .into_iter()
                .map(|i| (i, "refused by the fake store".to_owned()))
                .collect(),
        })
    }

    async fn write_at(&self, rows: Rows, _: &str, _: &Position) -> Result<WriteAck, SinkError> {
        self.write(rows).await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        self.push(Event::Commit(checkpoint.next.clone()));
        Ok(())
    }

    async fn flush(&self) -> Result<(), LogError> {
        Ok(())
    }
}

/// A reader over scripted batches; caught up once they are all handed out.
struct FakeReader {
    batches: VecDeque<Vec<LogMessage>>,
    position: Checkpoint,
}

impl Batches for FakeReader {
    async fn poll(&mut self, _: usize, wait: Duration) -> Result<Vec<LogMessage>, LogError> {
        match self.batches.pop_front() {
            Some(batch) => {
                let past = Checkpoint::after(&batch);
                self.position.next.extend(past.next);
                Ok(batch)
            }
            None => {
                tokio::time::sleep(wait).await;
                Ok(Vec::new())
            }
        }
    }

    fn take_lost(&mut self) -> u64 {
        0
    }

    fn checkpoint(&self) -> Checkpoint {
        self.position.clone()
    }

    async fn caught_up(&self) -> Result<bool, LogError> {
        Ok(self.batches.is_empty())
    }
}

/// A log message holding user `index`'s row, at `partition`/`offset`.
fn message(partition: i32, offset: i64, index: u64) -> LogMessage {
    let row = Generator::new("processor-tests", vec![], None)
        .user(index)
        .to_row()
        .unwrap();
    LogMessage {
        partition,
        offset,
        timestamp_ms: 1_700_000_000_000 + offset,
        key: Some(row.key()),
        payload: row.to_json(),
    }
}

/// Batches of `size` messages on partition 0, offsets from 0.
fn batches(count: usize, size: usize) -> Vec<Vec<LogMessage>> {
    (0..count)
        .map(|b| {
            (0..size)
                .map(|i| {
                    let offset = (b * size + i) as i64;
                    message(0, offset, offset as u64)
                })
                .collect()
        })
        .collect()
}

fn stage(target: FakeTarget) -> WriteStage<FakeTarget> {
    WriteStage {
        target,
        stats: Arc::new(Stats::default()),
        scope: None,
        outage_limit: None,
        give_up: CancellationToken::new(),
    }
}

/// One batch in flight at a time (as for a store that keeps its position).
const CONFIG: ProcessorConfig = ProcessorConfig {
    batch_size: 100,
    max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
    max_outage: Duration::from_secs(300),
    in_flight: 1,
};

/// Three batches in flight at once.
const OVERLAPPED: ProcessorConfig = ProcessorConfig {
    in_flight: 3,
    ..CONFIG
};

/// Runs the processor's loop over `batches` to the end of the log.
async fn drain(
    batches: Vec<Vec<LogMessage>>,
    stage: WriteStage<FakeTarget>,
) -> Result<(), ProcessError> {
    drain_with(CONFIG, batches, stage).await
}

async fn drain_with(
    config: ProcessorConfig,
    batches: Vec<Vec<LogMessage>>,
    stage: WriteStage<FakeTarget>,
) -> Result<(), ProcessError> {
    let mut reader = FakeReader {
        batches: batches.into(),
        position: Checkpoint::default(),
    };
    drive(
        &mut reader,
        stage,
        config,
        Until::Drained,
        CancellationToken::new(),
    )
    .await
}

/// Every commit is in order and covers only messages that were acknowledged
/// by the store or stored as dead letters before it.
fn assert_commits_follow_acks(events: &[Event], messages: &[LogMessage]) {
    let by_id: HashMap<String, (i32, i64)> = messages
        .iter()
        .filter_map(|m| {
            let row = Row::from_json(&m.payload, usize::MAX).ok()?;
            Some((row.id.to_string(), (m.partition, m.offset)))
        })
        .collect();
    let mut settled = HashSet::new();
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for event in events {
        match event {
            Event::Acked(ids) => settled.extend(ids.iter().map(|id| by_id[id])),
            Event::Letters(letters) => settled.extend(letters.iter().map(|&(_, p, o)| (p, o))),
            Event::Commit(next) => {
                for (&p, &n) in next {
                    let before = last.insert(p, n).unwrap_or(0);
                    assert!(n > before, "commit {n} on {p} after {before}: {events:?}");
                    for m in messages.iter().filter(|m| m.partition == p && m.offset < n) {
                        assert!(
                            settled.contains(&(p, m.offset)),
                            "commit {n} covers offset {} before the store acknowledged it: \
                             {events:?}",
                            m.offset
                        );
                    }
                }
            }
            Event::WriteStarted(_) | Event::Failed { .. } => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_one_in_flight_a_held_ack_holds_the_commit_and_the_next_batch() {
    let gate = Arc::new(Notify::new());
    // The first write is acknowledged only when the test says so; any later
    // write at once, so a processor that wrote ahead would see acks out of
    // order.
    let fake = FakeTarget::with_script([Reply::HoldThenAck(gate.clone())]);
    let input = batches(3, 2);
    let messages: Vec<LogMessage> = input.concat();
    let running = tokio::spawn(drain(input, stage(fake.clone())));

    fake.write_began.notified().await;
    // With the clock paused, this sleep ends only once every task waits:
    // the processor has read what it can and is blocked on the held ack.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = fake.events();
    assert_eq!(events.len(), 1, "only the first write began: {events:?}");
    assert!(matches!(events[0], Event::WriteStarted(_)));
    assert!(fake.commits().is_empty());

    gate.notify_one();
    running.await.unwrap().unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    assert_eq!(
        fake.commits(),
        [2, 4, 6].map(|n| BTreeMap::from([(0, n)])),
        "one commit per batch, in order"
    );
    // Each write begins only after the previous batch's commit.
    let order = order(&events);
    assert_eq!(order, ["write", "ack", "commit"].repeat(3));
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_for_good_gets_nothing_committed() {
    let fake = FakeTarget::with_script([Reply::Ack, Reply::Fail { retryable: false }]);
    let input = batches(3, 2);
    let messages: Vec<LogMessage> = input.concat();
    let failed = drain(input, stage(fake.clone())).await;
    assert!(
        matches!(failed, Err(ProcessError::Sink(ref e)) if !e.is_retryable()),
        "{failed:?}"
    );
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    // The first batch is committed; the failed one is neither committed nor
    // dead-lettered (it stays in the log), and the third is never written.
    assert_eq!(fake.commits(), [BTreeMap::from([(0, 2)])]);
    assert!(!events.iter().any(|e| matches!(e, Event::Letters(_))));
    let writes = events
        .iter()
        .filter(|e| matches!(e, Event::WriteStarted(_)))
        .count();
    assert_eq!(writes, 2, "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_row_the_store_refuses_is_a_dead_letter_before_the_commit() {
    let fake = FakeTarget::with_script([Reply::Reject(vec![1])]);
    let input = batches(1, 3);
    let messages: Vec<LogMessage> = input.concat();
    let stage = stage(fake.clone());
    let stats = stage.stats.clone();
    drain(input, stage).await.unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    assert_eq!(
        events[1..],
        [
            Event::Acked(vec![ids_of(&messages[0]), ids_of(&messages[2])]),
            Event::Letters(vec![(Stage::Sink, 0, 1)]),
            Event::Commit(BTreeMap::from([(0, 3)])),
        ]
    );
    assert_eq!(stats.get(Counter::SinkRejected), 1);
    assert_eq!(stats.get(Counter::Stored), 2);
}

#[tokio::test(start_paused = true)]
async fn a_message_that_does_not_decode_is_a_dead_letter_and_is_committed() {
    let fake = FakeTarget::default();
    let mut input = batches(1, 2);
    input[0][0].payload = b"{\"id\": 1".to_vec();
    let messages: Vec<LogMessage> = input.concat();
    drain(input, stage(fake.clone())).await.unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    assert_eq!(
        events,
        [
            Event::Letters(vec![(Stage::Decode, 0, 0)]),
            Event::WriteStarted(vec![ids_of(&messages[1])]),
            Event::Acked(vec![ids_of(&messages[1])]),
            Event::Commit(BTreeMap::from([(0, 2)])),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_is_retried_without_a_commit() {
    let fail = || Reply::Fail { retryable: true };
    let fake = FakeTarget::with_script([fail(), fail(), fail()]);
    let input = batches(1, 2);
    let messages: Vec<LogMessage> = input.concat();
    let stage = stage(fake.clone());
    let stats = stage.stats.clone();
    drain(input, stage).await.unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    let attempt = Event::WriteStarted(messages.iter().map(ids_of).collect());
    let failed = Event::Failed { retryable: true };
    let mut expected: Vec<Event> = (0..3)
        .flat_map(|_| [attempt.clone(), failed.clone()])
        .collect();
    expected.extend([
        attempt,
        Event::Acked(messages.iter().map(ids_of).collect()),
        Event::Commit(BTreeMap::from([(0, 2)])),
    ]);
    assert_eq!(events, expected);
    assert_eq!(stats.get(Counter::SinkRetries), 3);
    assert_eq!(stats.get(Counter::Stored), 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_an_outage_commits_nothing() {
    let fake = FakeTarget::with_script((0..1000).map(|_| Reply::Fail { retryable: true }));
    let shutdown = CancellationToken::new();
    let mut reader = FakeReader {
        batches: batches(1, 2).into(),
        position: Checkpoint::default(),
    };
    let stage = stage(fake.clone());
    let stopping = shutdown.clone();
    let running = async { drive(&mut reader, stage, CONFIG, Until::Shutdown, shutdown).await };
    let stop = async {
        fake.write_began.notified().await;
        fake.write_began.notified().await;
        stopping.cancel();
    };
    let (done, ()) = tokio::join!(running, stop);
    done.unwrap();
    assert!(fake.commits().is_empty(), "{:?}", fake.events());
    assert!(!fake.events().contains(&Event::Failed { retryable: false }));
}

/// The writes, acks and commits, in order.
fn order(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            Event::WriteStarted(_) => "write",
            Event::Acked(_) => "ack",
            Event::Commit(_) => "commit",
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// How many writes began, so far.
fn writes_begun(fake: &FakeTarget) -> usize {
    fake.events()
        .iter()
        .filter(|e| matches!(e, Event::WriteStarted(_)))
        .count()
}

#[tokio::test(start_paused = true)]
async fn overlapped_batches_acknowledged_out_of_order_are_committed_in_order() {
    let gate = Arc::new(Notify::new());
    // The first batch's ack is held; the next ones are acknowledged at once,
    // so the store answers out of order.
    let fake = FakeTarget::with_script([Reply::HoldThenAck(gate.clone())]);
    let input = batches(5, 2);
    let messages: Vec<LogMessage> = input.concat();
    let running = tokio::spawn(drain_with(OVERLAPPED, input, stage(fake.clone())));

    fake.write_began.notified().await;
    // With the clock paused, this sleep ends only once every task waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = fake.events();
    // Three batches are in flight (the limit), the later two acknowledged,
    // and nothing is committed: the first is not.
    assert_eq!(writes_begun(&fake), 3, "{events:?}");
    let acked = events
        .iter()
        .filter(|e| matches!(e, Event::Acked(_)))
        .count();
    assert_eq!(acked, 2, "{events:?}");
    assert!(fake.commits().is_empty(), "{events:?}");

    gate.notify_one();
    running.await.unwrap().unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    let last = fake.commits().last().cloned();
    assert_eq!(last, Some(BTreeMap::from([(0, 10)])), "{events:?}");
    assert_eq!(writes_begun(&fake), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failure_for_good_in_flight_commits_nothing_past_it() {
    let gate = Arc::new(Notify::new());
    // Batch 1 is held, batch 2 fails for good, batch 3 is acknowledged.
    let fake = FakeTarget::with_script([
        Reply::HoldThenAck(gate.clone()),
        Reply::Fail { retryable: false },
        Reply::Ack,
    ]);
    let input = batches(4, 2);
    let messages: Vec<LogMessage> = input.concat();
    let running = tokio::spawn(drain_with(OVERLAPPED, input, stage(fake.clone())));
    fake.write_began.notified().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fake.commits().is_empty(), "{:?}", fake.events());
    gate.notify_one();
    let failed = running.await.unwrap();
    assert!(
        matches!(failed, Err(ProcessError::Sink(ref e)) if !e.is_retryable()),
        "{failed:?}"
    );
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    // Batch 1 is committed; batch 3, though acknowledged, is not: batch 2
    // before it is not stored, and stays in the log with it.
    assert_eq!(fake.commits(), [BTreeMap::from([(0, 2)])], "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Letters(_))));
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_in_flight_is_retried_and_holds_the_later_commits() {
    let fake = FakeTarget::with_script([Reply::Fail { retryable: true }]);
    let input = batches(3, 2);
    let messages: Vec<LogMessage> = input.concat();
    let stage = stage(fake.clone());
    let stats = stage.stats.clone();
    drain_with(OVERLAPPED, input, stage).await.unwrap();
    let events = fake.events();
    assert_commits_follow_acks(&events, &messages);
    // Batches 2 and 3 were acknowledged while batch 1 waited for its retry;
    // the commits still come one per batch, in order, after the retry.
    let first_commit = events
        .iter()
        .position(|e| matches!(e, Event::Commit(_)))
        .unwrap();
    let acks_before: usize = events[..first_commit]
        .iter()
        .filter(|e| matches!(e, Event::Acked(_)))
        .count();
    assert_eq!(acks_before, 3, "{events:?}");
    assert_eq!(
        fake.commits(),
        [2, 4, 6].map(|n| BTreeMap::from([(0, n)])),
        "{events:?}"
    );
    assert_eq!(stats.get(Counter::SinkRetries), 1);
    assert_eq!(stats.get(Counter::Stored), 6);
}

#[tokio::test(start_paused = true)]
async fn a_batch_sharing_a_key_with_one_in_flight_waits_for_its_commit() {
    let gate = Arc::new(Notify::new());
    let fake = FakeTarget::with_script([Reply::HoldThenAck(gate.clone())]);
    // Batch 2 holds user 0 again (a newer record of the same key).
    let input = vec![
        vec![message(0, 0, 0), message(0, 1, 1)],
        vec![message(0, 2, 0), message(0, 3, 3)],
    ];
    let running = tokio::spawn(drain_with(OVERLAPPED, input, stage(fake.clone())));
    fake.write_began.notified().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(writes_begun(&fake), 1, "{:?}", fake.events());
    gate.notify_one();
    running.await.unwrap().unwrap();
    let events = fake.events();
    let order = order(&events);
    assert_eq!(order, ["write", "ack", "commit"].repeat(2));
}

fn ids_of(m: &LogMessage) -> String {
    Row::from_json(&m.payload, usize::MAX)
        .unwrap()
        .id
        .to_string()
}
