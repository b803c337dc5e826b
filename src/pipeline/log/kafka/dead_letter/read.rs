//! Reading the dead-letter topic without a group, in bounded memory. A
//! letter's replay or discard is a marker message after it, so what a
//! letter's state is needs the whole topic: the [`Reader`] keeps only the
//! ids of the letters and of the markers (the [`Ledger`]), brought up to
//! date on each read from where the last one ended; a read of letters
//! then goes through the topic again from the first one wanted, and stops
//! once it holds as many as were asked for (or their payloads passed the
//! read's budget).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::super::{KafkaLogConfig, REQUEST_TIMEOUT, kafka_err};
use super::{
    DISCARD_REASON, DISCARDED, FAILED_AGAIN, OFFSET, PARTITION, REASON, REPLAYED, SOURCE_POSITION,
    STAGE, TOPIC, TRUNCATED_FROM,
};
use crate::pipeline::log::discard::{Discarded, Letters};
use crate::pipeline::log::preview::cut_copy;
use crate::pipeline::log::{
    DeadLetter, LetterPreview, LogError, Origin, Stage, StoredDeadLetter,
    fingerprint as fingerprint_of,
};

/// Every letter of the topic by id, and which were replayed or discarded:
/// a few bytes a letter, whatever their payloads.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The letters' ids (their offsets), ascending.
    letters: Vec<i64>,
    replayed: HashSet<i64>,
    /// The first discard's time and reason stand.
    discarded: HashMap<i64, Discarded>,
    /// The reasons replays gave letters that failed again, the latest.
    reasons: HashMap<i64, String>,
    /// The letters' names (see [`name_of`]) and their ids: a letter written
    /// again is left out, as the embedded log stores it once.
    names: HashMap<u128, i64>,
    /// The copies passed over, as (id, name), ascending: when retention
    /// drops the first copy of a name, the next one left is the letter (as
    /// a reader that starts afresh at the new earliest offset finds it).
    copies: Vec<(i64, u128)>,
}

/// What a letter's markers say of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Replayed,
    Discarded,
}

impl Ledger {
    /// The state of the letter `id`, `None` when no letter has that id.
    pub fn state(&self, id: i64) -> Option<State> {
        self.letters.binary_search(&id).ok()?;
        Some(if self.replayed.contains(&id) {
            State::Replayed
        } else if self.discarded.contains_key(&id) {
            State::Discarded
        } else {
            State::Waiting
        })
    }

    /// Whether the letter `id` was discarded (and maybe replayed too).
    pub fn is_discarded(&self, id: i64) -> bool {
        self.discarded.contains_key(&id) && self.letters.binary_search(&id).is_ok()
    }

    fn selects(&self, which: Letters, id: i64) -> bool {
        which.selects(
            self.replayed.contains(&id),
            self.discarded.contains_key(&id),
        )
    }

    /// The ids `which` selects, above `after` when given, ascending.
    pub fn ids(&self, which: Letters, after: Option<i64>) -> impl Iterator<Item = i64> + '_ {
        let from = after.map_or(0, |a| self.letters.partition_point(|&id| id <= a));
        self.letters[from..]
            .iter()
            .copied()
            .filter(move |&id| self.selects(which, id))
    }

    /// How many letters `which` selects, above `after` when given.
    pub fn count(&self, which: Letters, after: Option<i64>) -> u64 {
        self.ids(which, after).count() as u64
    }

    /// Takes in the message `m`, the next of the topic: a marker or a letter.
    fn note(&mut self, m: &BorrowedMessage<'_>) {
        if let Some(id) = marker_of(m, REPLAYED) {
            self.replayed.insert(id);
        } else if let Some(id) = marker_of(m, FAILED_AGAIN) {
            self.reasons
                .insert(id, header(m, REASON).unwrap_or_default());
        } else if let Some(id) = marker_of(m, DISCARDED) {
            self.discarded.entry(id).or_insert(Discarded {
                at_ms: m.timestamp().to_millis().unwrap_or_default(),
                reason: header(m, DISCARD_REASON),
            });
        } else {
            self.take_letter(m.offset(), name_of(m));
        }
    }

    /// Takes in the letter `id`, unless a letter of the same name came
    /// before it: a batch written again after a crash before its commit, or
    /// a page fetched again, writes the same letters again. The first one
    /// stands, with its reason, and markers name it.
    fn take_letter(&mut self, id: i64, name: Option<u128>) {
        if let Some(name) = name {
            if self.names.contains_key(&name) {
                self.copies.push((id, name));
                return;
            }
            self.names.insert(name, id);
        }
        self.letters.push(id);
    }

    /// Forgets the letters below `low`, the topic's earliest offset now
    /// (retention dropped them), and their markers.
    fn forget_below(&mut self, low: i64) {
        let gone = self.letters.partition_point(|&id| id < low);
        if gone == 0 {
            return;
        }
        self.letters.drain(..gone);
        self.replayed.retain(|&id| id >= low);
        self.discarded.retain(|&id, _| id >= low);
        self.names.retain(|_, &mut id| id >= low);
        self.reasons.retain(|&id, _| id >= low);
        self.copies.retain(|&(id, _)| id >= low);
        // A copy whose first is gone is the letter now, with no marker of
        // its own yet.
        let mut promoted = Vec::new();
        for &(id, name) in &self.copies {
            if let std::collections::hash_map::Entry::Vacant(first) = self.names.entry(name) {
                first.insert(id);
                promoted.push(id);
            }
        }
        if promoted.is_empty() {
            return;
        }
        self.copies.retain(|(id, _)| !promoted.contains(id));
        for id in promoted {
            let at = self.letters.partition_point(|&x| x < id);
            self.letters.insert(at, id);
        }
    }
}

/// The dead-letter topic as one process reads it: a consumer, and the
/// ledger of every message it read so far. Reads take turns; each first
/// reads what was added since the last one (a dashboard's count every few
/// seconds reads a few new messages, not the whole topic again).
#[derive(Default)]
pub struct Reader {
    /// Whose turn it is. Reads waiting for their turn wait here, holding
    /// no thread: a broker that stalls a read (up to its timeout) would
    /// otherwise fill the blocking pool with the dashboard's requests, and
    /// a request given up on stops waiting. A read's blocking task holds
    /// the turn until it is done, even when its caller went away.
    turn: Arc<tokio::sync::Mutex<()>>,
    kept: Mutex<Option<Kept>>,
}

struct Kept {
    topic: Topic,
    ledger: Ledger,
    /// The offset after the last message the ledger took in.
    next: i64,
    /// That message's fingerprint: found again at its offset, the topic
    /// is the one the ledger was read from (not one deleted and made
    /// again under the same name since).
    last: Option<u64>,
}

impl Reader {
    /// Runs `f` on the topic and its ledger, brought up to date. A read
    /// that fails drops what was kept: the next starts afresh.
    fn with_ledger<T>(
        &self,
        config: &KafkaLogConfig,
        f: impl FnOnce(&Topic, &Ledger, i64) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let mut slot = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let result = catch_up(&mut slot, config).and_then(|k| f(&k.topic, &k.ledger, k.next));
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// What `f` says of the ledger, brought up to date.
    pub async fn look<T: Send + 'static>(
        self: &Arc<Self>,
        config: &Arc<KafkaLogConfig>,
        f: impl FnOnce(&Ledger) -> T + Send + 'static,
    ) -> Result<T, LogError> {
        let turn = self.turn.clone().lock_owned().await;
        let (reader, config) = (self.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            reader.with_ledger(&config, |_, l, _| Ok(f(l)))
        })
        .await
        .expect("dead-letter task panicked")
    }

    /// The letters `wanted` selects, oldest first.
    pub async fn letters(
        self: &Arc<Self>,
        config: &Arc<KafkaLogConfig>,
        wanted: Wanted,
    ) -> Result<Vec<LetterPreview>, LogError> {
        let turn = self.turn.clone().lock_owned().await;
        let (reader, config) = (self.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // Retention may drop every letter chosen before the second
            // pass reaches it: the topic is then read again (an empty
            // answer would say that nothing waits).
            let mut attempts = 0;
            loop {
                attempts += 1;
                let out = reader.with_ledger(&config, |t, l, end| pick(t, l, end, &wanted))?;
                if !out.is_empty() || attempts == 3 {
                    return Ok(out);
                }
            }
        })
        .await
        .expect("dead-letter task panicked")
    }
}

/// Brings the kept ledger up to date: the messages since its last read,
/// the letters retention dropped forgotten. The last message it took in is
/// read again first: not found as it was, the topic was deleted and made
/// again, and it is read afresh from its start.
fn catch_up<'a>(
    slot: &'a mut Option<Kept>,
    config: &KafkaLogConfig,
) -> Result<&'a mut Kept, LogError> {
    let kept = match slot {
        Some(k) => k,
        None => slot.insert(Kept {
            topic: Topic::open(config)?,
            ledger: Ledger::default(),
            next: 0,
            last: None,
        }),
    };
    let (low, high) = kept.topic.watermarks()?;
    kept.ledger.forget_below(low);
    if !read_on(kept, (low, high))? {
        kept.ledger = Ledger::default();
        kept.next = 0;
        kept.last = None;
        read_on(kept, (low, high))?;
    }
    Ok(kept)
}

/// Reads the messages after the ledger's last into it; false, and the
/// ledger left half read, when the last is not at its offset as it was.
fn read_on(kept: &mut Kept, (low, high): (i64, i64)) -> Result<bool, LogError> {
    let Kept {
        topic,
        ledger,
        next,
        last,
    } = kept;
    // The last message taken in, to be found again; nothing to check when
    // nothing was read yet or retention dropped it (and with it every
    // letter the ledger held).
    let check = last.filter(|_| *next > low).map(|fp| (*next - 1, fp));
    if check.is_some_and(|_| *next > high) {
        return Ok(false);
    }
    let mut same = check.is_none();
    topic.scan(check.map_or(*next, |(at, _)| at), (low, high), |m| {
        let offset = m.offset();
        if !same {
            // The first message is the one to check.
            same = check == Some((offset, fingerprint(m)));
            return if same {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            };
        }
        if offset >= *next {
            ledger.note(m);
            *next = offset + 1;
            *last = Some(fingerprint(m));
        }
        ControlFlow::Continue(())
    })?;
    Ok(same)
}

/// A message's time, key, payload size and headers, hashed.
fn fingerprint(m: &BorrowedMessage<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    m.timestamp().to_millis().hash(&mut h);
    m.key().hash(&mut h);
    m.payload().map(<[u8]>::len).hash(&mut h);
    if let Some(headers) = m.headers() {
        for x in headers.iter() {
            (x.key, x.value).hash(&mut h);
        }
    }
    h.finish()
}

/// A consumer of the dead-letter topic's one partition, in no group.
struct Topic {
    consumer: BaseConsumer,
    name: String,
}

impl Topic {
    fn open(config: &KafkaLogConfig) -> Result<Topic, LogError> {
        let consumer: BaseConsumer = config
            .client()
            .set("group.id", "tributary-dlq-reader")
            .set("enable.auto.commit", "false")
            // What retention dropped between the passes is skipped, whatever
            // the log's `offset_reset` says.
            .set("auto.offset.reset", "earliest")
            // Bounded memory. Letters are compressed on the topic, and a
            // fetch is decompressed whole: 64 KiB of letters that compress
            // well can be many megabytes (a fetch still returns at least
            // one batch, so a letter of a megabyte comes through).
            .set("queued.max.messages.kbytes", "4096")
            .set("fetch.max.bytes", config.fetch_max_bytes(1 << 20))
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.queue.backoff.ms", "5")
            // A fetch past the end waits this long on the broker, and the
            // next request on the connection (the next read's watermarks)
            // waits behind it.
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| kafka_err("cannot create the Kafka consumer", e))?;
        Ok(Topic {
            consumer,
            name: config.dlq_topic(),
        })
    }

    /// The topic's earliest offset and the offset after its last message.
    fn watermarks(&self) -> Result<(i64, i64), LogError> {
        self.consumer
            .fetch_watermarks(&self.name, 0, REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("cannot read the dead-letter topic", e))
    }

    /// Hands each message from `from` up to `high` (within the watermarks
    /// `(low, high)`) to `each`, until it says stop. The topic giving
    /// nothing for [`REQUEST_TIMEOUT`] is an error, not a shorter list.
    fn scan(
        &self,
        from: i64,
        (low, high): (i64, i64),
        mut each: impl FnMut(&BorrowedMessage<'_>) -> ControlFlow<()>,
    ) -> Result<(), LogError> {
        let from = from.max(low);
        if from >= high {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.name, 0, Offset::Offset(from))
            .map_err(|e| kafka_err("bad offset", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| kafka_err("cannot read the dead-letter topic", e))?;
        let read = self.read(from, high, &mut each);
        // Nothing fetched in the background between reads.
        let _ = self.consumer.unassign();
        read
    }

    fn read(
        &self,
        from: i64,
        high: i64,
        each: &mut impl FnMut(&BorrowedMessage<'_>) -> ControlFlow<()>,
    ) -> Result<(), LogError> {
        let mut next = from;
        let mut last_progress = Instant::now();
        while next < high {
            let Some(m) = self.consumer.poll(Duration::from_millis(500)) else {
                if last_progress.elapsed() > REQUEST_TIMEOUT {
                    return Err(LogError::Kafka(format!(
                        "the dead-letter topic {} gave nothing for {} s at offset {next} of {high}",
                        self.name,
                        REQUEST_TIMEOUT.as_secs(),
                    )));
                }
                continue;
            };
            let m = m.map_err(|e| kafka_err("cannot read the dead-letter topic", e))?;
            last_progress = Instant::now();
            next = m.offset() + 1;
            if each(&m).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// The value of header `name`, as text.
fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// What names a letter, as the embedded log's unique keys do: its stage
/// and its origin in the log, or its stage and its fingerprint (source
/// position and bytes) when it never reached the log; `None` for a letter
/// with neither. Hashed to 128 bits, a few bytes a letter.
fn name_of(m: &BorrowedMessage<'_>) -> Option<u128> {
    let stage = header(m, STAGE).unwrap_or_default();
    let name = match (header(m, TOPIC), header(m, PARTITION), header(m, OFFSET)) {
        (Some(topic), Some(partition), Some(offset)) => {
            format!("{stage}\0origin\0{topic}\0{partition}\0{offset}")
        }
        _ => {
            let position = header(m, SOURCE_POSITION)?;
            let payload = m.payload().unwrap_or_default();
            format!("{stage}\0source\0{}", fingerprint_of(&position, payload))
        }
    };
    Some(twox_hash::XxHash3_128::oneshot(name.as_bytes()))
}

fn marker_of(m: &BorrowedMessage<'_>, name: &str) -> Option<i64> {
    header(m, name).and_then(|v| v.parse().ok())
}

fn is_marker(m: &BorrowedMessage<'_>) -> bool {
    [REPLAYED, DISCARDED, FAILED_AGAIN]
        .iter()
        .any(|name| marker_of(m, name).is_some())
}

/// The letter `m` is, its key and payload copied up to `cut` bytes.
fn letter_of(m: &BorrowedMessage<'_>, ledger: &Ledger, cut: usize) -> LetterPreview {
    let origin = match (header(m, TOPIC), header(m, PARTITION), header(m, OFFSET)) {
        (Some(topic), Some(p), Some(o)) => Some(Origin {
            topic,
            partition: p.parse().unwrap_or_default(),
            offset: o.parse().unwrap_or_default(),
        }),
        _ => None,
    };
    let payload = m.payload().unwrap_or_default();
    let payload_bytes = header(m, TRUNCATED_FROM)
        .and_then(|v| v.parse().ok())
        .unwrap_or(payload.len() as u64);
    let created_ms = m.timestamp().to_millis().unwrap_or_default();
    let id = m.offset();
    LetterPreview {
        payload_bytes,
        letter: StoredDeadLetter {
            id,
            created_ms,
            // The marker's own time is not kept; the letter is simply done.
            replayed_ms: ledger.replayed.contains(&id).then_some(created_ms),
            discarded: ledger.discarded.get(&id).cloned(),
            letter: DeadLetter {
                stage: header(m, STAGE)
                    .as_deref()
                    .and_then(Stage::parse)
                    .unwrap_or(Stage::Decode),
                reason: ledger
                    .reasons
                    .get(&id)
                    .cloned()
                    .or_else(|| header(m, REASON))
                    .unwrap_or_default(),
                origin,
                source_position: header(m, SOURCE_POSITION),
                key: m.key().map(|k| cut_copy(k, cut)),
                payload: cut_copy(payload, cut),
            },
        },
    }
}

/// The ids a second pass picks, in order, as offsets go by.
struct Picks {
    ids: std::iter::Peekable<std::vec::IntoIter<i64>>,
}

impl Picks {
    fn new(ids: Vec<i64>) -> Self {
        Picks {
            ids: ids.into_iter().peekable(),
        }
    }

    /// Whether the message at `offset` is one of the ids. Ids below it
    /// will not come any more (retention dropped them since the first
    /// pass): they are passed over.
    fn take(&mut self, offset: i64) -> bool {
        while self.ids.next_if(|&id| id < offset).is_some() {}
        self.ids.next_if_eq(&offset).is_some()
    }

    /// Whether every id was taken or passed over.
    fn done(&mut self) -> bool {
        self.ids.peek().is_none()
    }
}

/// What a read of letters asks for.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub which: Letters,
    /// Only ids above this.
    pub after: Option<i64>,
    /// Only these ids, when given.
    pub ids: Option<HashSet<i64>>,
    pub limit: usize,
    /// Keys and payloads are copied up to this many bytes.
    pub cut: usize,
    /// The read stops after the letter whose copied payload takes it past
    /// this many bytes.
    pub max_bytes: usize,
}

/// The second pass: the letters `wanted` selects, read from the first of
/// them up to `end`, where the ledger ends.
fn pick(
    topic: &Topic,
    ledger: &Ledger,
    end: i64,
    wanted: &Wanted,
) -> Result<Vec<LetterPreview>, LogError> {
    let chosen: Vec<i64> = ledger
        .ids(wanted.which, wanted.after)
        .filter(|id| wanted.ids.as_ref().is_none_or(|ids| ids.contains(id)))
        .take(wanted.limit)
        .collect();
    let mut out = Vec::with_capacity(chosen.len());
    let Some(&first) = chosen.first() else {
        return Ok(out);
    };
    let mut picks = Picks::new(chosen);
    let mut bytes = 0;
    topic.scan(first, (first, end), |m| {
        // A marker is never a letter, whatever the ledger says.
        if picks.take(m.offset()) && !is_marker(m) {
            let letter = letter_of(m, ledger, wanted.cut);
            bytes += letter.letter.letter.payload.len();
            out.push(letter);
        }
        if picks.done() || bytes >= wanted.max_bytes {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_pass_over_letters_dropped_between_the_passes() {
        let mut picks = Picks::new(vec![3, 5, 7, 9]);
        // 3 and 5 went with retention: the scan starts at 6.
        let taken: Vec<i64> = (6..=9).filter(|&o| picks.take(o)).collect();
        assert_eq!(taken, [7, 9]);
        assert!(picks.done());
        let mut picks = Picks::new(vec![2, 4]);
        assert!(!picks.take(1) && picks.take(2) && !picks.take(3));
        assert!(!picks.done(), "4 is still to come");
    }

    #[test]
    fn the_ledger_selects_by_state_and_cursor() {
        let mut ledger = Ledger {
            letters: vec![1, 4, 6, 9],
            ..Ledger::default()
        };
        ledger.replayed.insert(4);
        ledger.discarded.insert(
            6,
            Discarded {
                at_ms: 1,
                reason: None,
            },
        );
        // A marker of a letter retention dropped counts for nothing.
        ledger.discarded.insert(
            0,
            Discarded {
                at_ms: 1,
                reason: None,
            },
        );
        ledger.replayed.insert(6);
        let ids = |which, after| ledger.ids(which, after).collect::<Vec<_>>();
        assert_eq!(ids(Letters::Waiting, None), [1, 9]);
        assert_eq!(ids(Letters::Waiting, Some(1)), [9]);
        assert_eq!(ids(Letters::Discarded, None), [6]);
        assert_eq!(ids(Letters::All, Some(4)), [6, 9]);
        assert_eq!(ledger.count(Letters::Discarded, None), 1);
        assert_eq!(ledger.state(6), Some(State::Replayed), "replayed wins");
        assert_eq!(ledger.state(0), None);
        assert!(ledger.is_discarded(6) && !ledger.is_discarded(0));
    }

    #[test]
    fn a_letter_written_again_is_one_letter_until_retention_drops_the_first() {
        let mut ledger = Ledger::default();
        ledger.take_letter(3, Some(7));
        ledger.take_letter(4, None);
        ledger.take_letter(5, Some(7));
        ledger.take_letter(6, None);
        ledger.take_letter(8, Some(9));
        assert_eq!(ledger.letters, [3, 4, 6, 8]);
        assert_eq!(ledger.state(5), None, "the second of a name is no letter");
        ledger.forget_below(4);
        assert_eq!(
            ledger.letters,
            [4, 5, 6, 8],
            "with the first copy gone, the next is the letter"
        );
        ledger.take_letter(10, Some(7));
        ledger.take_letter(11, Some(9));
        assert_eq!(ledger.letters, [4, 5, 6, 8]);
        ledger.forget_below(9);
        assert_eq!(ledger.letters, [10, 11]);
    }

    #[test]
    fn the_ledger_forgets_what_retention_dropped() {
        let mut ledger = Ledger {
            letters: vec![2, 5, 8],
            ..Ledger::default()
        };
        ledger.replayed.insert(2);
        ledger.replayed.insert(8);
        ledger.discarded.insert(
            5,
            Discarded {
                at_ms: 1,
                reason: None,
            },
        );
        ledger.forget_below(6);
        assert_eq!(ledger.letters, [8]);
        assert_eq!(ledger.state(5), None);
        assert!(!ledger.replayed.contains(&2) && ledger.discarded.is_empty());
        assert_eq!(ledger.state(8), Some(State::Replayed));
        ledger.forget_below(0);
        assert_eq!(ledger.letters, [8]);
    }
}
