//! Dead-letter replay: letters run through decoding (or, for a record that
//! never reached the log, the pipeline's transform and table as they are
//! now) and the sink again, after a fix; each settled one by one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{ProcessError, decode_typed};
use crate::pipeline::log::{DeadLetter, Log, LogRecord, Stage, StoredDeadLetter};
use crate::pipeline::shape::{Shape, Shaper};
use crate::pipeline::sink::{KeyFilter, Rows, Sink};
use crate::pipeline::table::TableSchema;
use crate::record::{ApiUser, Row};

/// The outcome of replaying dead letters.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Letters now stored in the sink (and marked replayed).
    pub replayed: u64,
    /// Letters that still fail, kept with their new reason.
    pub still_failing: u64,
}

impl std::ops::AddAssign for ReplayReport {
    fn add_assign(&mut self, other: ReplayReport) {
        self.replayed += other.replayed;
        self.still_failing += other.still_failing;
    }
}

/// How a replay treats what it finds.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    /// The processor's limit on a message's size.
    pub max_message_bytes: usize,
    /// Write a letter's row even where the store holds another row of its
    /// key (see [`replay`]).
    pub overwrite: bool,
}

/// Waiting letters replayed per page: one API call, one step of
/// `dlq replay`. Memory holds one page.
pub const REPLAY_PAGE: usize = 1000;

/// Replays the oldest [`REPLAY_PAGE`] waiting letters with an id above
/// `after`. Returns what happened and the last id of the page, the cursor
/// for the next one (`None` when nothing waits there). Letters that still
/// fail stay behind the cursor, so paging on reaches the rest.
pub async fn replay_page(
    log: &Log,
    sink: &Sink,
    shape: Option<&Arc<Shape>>,
    after: Option<i64>,
    options: ReplayOptions,
    written: &mut ReplayWrites,
) -> Result<(ReplayReport, Option<i64>), ProcessError> {
    let letters = log.dead_letters(false, after, REPLAY_PAGE).await?;
    let last = letters.last().map(|l| l.id);
    let report = replay(log, sink, shape, letters, options, written).await?;
    Ok((report, last))
}

/// Letters named by id are read and replayed this many at a time: a
/// letter can hold a megabyte.
const BY_ID: usize = 100;

/// Replays the waiting letters among `ids`, [`BY_ID`] at a time; also
/// returns the ids that name no waiting letter (unknown, replayed or
/// discarded), in the order given. An id given twice counts once.
pub async fn replay_ids(
    log: &Log,
    sink: &Sink,
    shape: Option<&Arc<Shape>>,
    ids: &[i64],
    options: ReplayOptions,
    written: &mut ReplayWrites,
) -> Result<(ReplayReport, Vec<i64>), ProcessError> {
    let mut seen = HashSet::new();
    let ids: Vec<i64> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let mut report = ReplayReport::default();
    let mut not_found = Vec::new();
    for chunk in ids.chunks(BY_ID) {
        let letters = log.dead_letters_by_id(chunk.to_vec()).await?;
        let found: HashSet<i64> = letters.iter().map(|l| l.id).collect();
        not_found.extend(chunk.iter().filter(|id| !found.contains(id)));
        report += replay(log, sink, shape, letters, options, written).await?;
    }
    Ok((report, not_found))
}

/// Runs dead letters through decoding and the sink again, after a fix.
/// A letter from the source stage holds an API user; one from the transform
/// stage the source record, run through the pipeline's transform and table
/// as they are now; the others hold a log message. Each is settled one by
/// one: stored → marked replayed; failing → kept with the new reason.
///
/// A record of the source or transform stage never reached the log: once
/// stored, its message is appended to the log too, so a store refilled
/// from the log holds it as well. (Letters of the later stages are log
/// messages already.)
///
/// A letter's record was never stored, so a row the store holds for its
/// key came from another record, most often a newer one that arrived
/// while the letter waited. Such a letter is not written over it unless
/// `options.overwrite` says so: it stays waiting, with a reason that says
/// why (a row equal to the letter's counts as the letter replayed; of two
/// letters of one key, the later one, written after the earlier one,
/// takes its place). The store is read as it stands: a newer record still
/// in the log, not yet processed, is not seen, so replay once the
/// processor has caught up.
pub async fn replay(
    log: &Log,
    sink: &Sink,
    shape: Option<&Arc<Shape>>,
    letters: Vec<StoredDeadLetter>,
    options: ReplayOptions,
    written: &mut ReplayWrites,
) -> Result<ReplayReport, ProcessError> {
    let mut report = ReplayReport::default();
    // No discard marks a letter while this replay stores it; letters
    // discarded (or replayed elsewhere) since they were read are left.
    let _discards_wait = log.lock_letters().await?;
    let settled: HashSet<i64> = log
        .settled_among(letters.iter().map(|l| l.id).collect())
        .await?
        .into_iter()
        .collect();
    let letters: Vec<StoredDeadLetter> = letters
        .into_iter()
        .filter(|l| !settled.contains(&l.id))
        .collect();
    let mut shaper = match shape {
        Some(shape) => Some(
            shape
                .shaper()
                .map_err(|e| ProcessError::Replay(e.to_string()))?,
        ),
        None => None,
    };
    // Keys this call wrote: a later letter of one of them replaces the row
    // without a look (the look of a row just written may be stale at a
    // weak consistency).
    let mut written_here: HashSet<u128> = HashSet::new();
    for stored in letters {
        if stored
            .letter
            .reason
            .contains(crate::pipeline::ingest::CUT_LETTER)
        {
            // It keeps its reason.
            report.still_failing += 1;
            continue;
        }
        let rows = decode_letter(
            &stored.letter,
            sink.schema().map(|s| &**s),
            shaper.as_mut(),
            options.max_message_bytes,
        );
        let outcome = match rows {
            Ok((rows, message)) => {
                let filter = sink.row_key_filter(&rows);
                let key = filter
                    .as_ref()
                    .map(|f| ReplayWrites::key(&format!("{f:?}")));
                let ours = sink.records_of(&rows).into_iter().next();
                let held = match (&filter, key) {
                    (Some(filter), Some(key))
                        if !options.overwrite && !written_here.contains(&key) =>
                    {
                        held_back(sink, filter, ours.as_ref(), written.row_of(key)).await?
                    }
                    _ => None,
                };
                match held {
                    Some(reason) => Err(reason),
                    None => {
                        let ack = sink.write(rows).await?;
                        match ack.rejected.into_iter().next() {
                            Some((_, reason)) => Err(reason),
                            None => {
                                if let Some(message) = message {
                                    log.append(vec![message]).await?;
                                }
                                if let (Some(key), Some(ours)) = (key, &ours) {
                                    written.wrote(key, ours);
                                    written_here.insert(key);
                                }
                                Ok(())
                            }
                        }
                    }
                }
            }
            Err(e) => Err(e),
        };
        // As a log keeps it.
        let outcome = outcome.map_err(crate::pipeline::log::cut_reason);
        match &outcome {
            Ok(()) => report.replayed += 1,
            Err(_) => report.still_failing += 1,
        }
        // A letter failing as before is left as it is (on Kafka, a marker
        // less).
        if !matches!(&outcome, Err(reason) if *reason == stored.letter.reason) {
            log.settle_dead_letter(stored.id, outcome).await?;
        }
    }
    Ok(report)
}

/// Why a letter stays waiting when another row of its key is stored.
pub const ANOTHER_ROW: &str = "the store holds another row of this record's key, maybe from a newer \
     record: replaying would write this one over it (`dlq replay --overwrite` does; `dlq \
     discard` drops the letter)";

/// Why the letter's row is not written, if the store holds another row of
/// its key: not one equal to it (the letter stored before, by a replay cut
/// short), nor the row a replay wrote for an earlier letter of the key
/// (`ours_before`, see [`ReplayWrites`]). A stored row that cannot be read
/// holds back its letter alone; a store that cannot be reached ends the
/// replay, as a write would.
async fn held_back(
    sink: &Sink,
    filter: &KeyFilter,
    ours: Option<&Value>,
    ours_before: Option<u128>,
) -> Result<Option<String>, ProcessError> {
    let stored = match sink.stored_record(filter).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Ok(None),
        Err(e) if e.is_retryable() => return Err(e.into()),
        Err(e) => return Ok(Some(format!("cannot read the stored row of its key: {e}"))),
    };
    let same = ours.is_some_and(|ours| same_record(ours, &stored));
    let replayed_before = ours_before == Some(record_hash(&stored));
    Ok((!same && !replayed_before).then(|| ANOTHER_ROW.to_owned()))
}

/// What replays wrote, by key: a later letter of a key finds the store
/// holding the row an earlier letter's replay wrote there, and takes its
/// place (of two letters of one key, the later is stored), whichever page
/// or call replayed the earlier one. A row written over since, by a newer
/// record, is not the one written, so its key's letters stay held back.
/// One is kept for a whole `dlq replay` and for each pipeline of `serve`.
/// Hashes only, and at most [`ReplayWrites::LIMIT`] keys: past it, it starts
/// afresh, and a later letter of a key forgotten stays waiting with its
/// reason, as if the row were another record's.
#[derive(Debug, Default)]
pub struct ReplayWrites(HashMap<u128, u128>);

impl ReplayWrites {
    const LIMIT: usize = 200_000;

    fn key(key: &str) -> u128 {
        twox_hash::XxHash3_128::oneshot(key.as_bytes())
    }

    fn row_of(&self, key: u128) -> Option<u128> {
        self.0.get(&key).copied()
    }

    fn wrote(&mut self, key: u128, record: &Value) {
        if self.0.len() >= Self::LIMIT && !self.0.contains_key(&key) {
            self.0.clear();
        }
        self.0.insert(key, record_hash(record));
    }
}

/// A row's hash, equal for two rows [`same_record`] takes for one: each
/// cell as [`same_cell`] compares it (empty or null left out, numbers as
/// their value), by column name.
fn record_hash(record: &Value) -> u128 {
    let mut bytes = Vec::new();
    match record {
        Value::Object(cells) => {
            // A `serde_json::Map` iterates in key order.
            for (name, cell) in cells {
                if is_empty_cell(cell) {
                    continue;
                }
                bytes.extend_from_slice(name.as_bytes());
                bytes.push(0);
                match number_of(cell) {
                    // -0 and 0 are one value.
                    Some(x) => bytes.extend_from_slice(&(x + 0.0).to_bits().to_le_bytes()),
                    None => bytes.extend_from_slice(cell.to_string().as_bytes()),
                }
                bytes.push(0);
            }
        }
        other => bytes.extend_from_slice(other.to_string().as_bytes()),
    }
    twox_hash::XxHash3_128::oneshot(&bytes)
}

/// Whether two rows, as [`Sink::records`] gives them, hold the same values
/// as a store gives them back: an empty list or map read back as null, a
/// number (or a decimal's text) in another form (`1.5e1` as `15`).
fn same_record(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let null = Value::Null;
    a.keys()
        .chain(b.keys())
        .all(|k| same_cell(a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null)))
}

fn same_cell(a: &Value, b: &Value) -> bool {
    a == b
        || (is_empty_cell(a) && is_empty_cell(b))
        || matches!((number_of(a), number_of(b)), (Some(x), Some(y)) if x == y)
}

fn is_empty_cell(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(x) => x.is_empty(),
        Value::Object(x) => x.is_empty(),
        _ => false,
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// The rows of a letter, and the log message to append once they are
/// stored when the letter's record never reached the log.
fn decode_letter(
    letter: &DeadLetter,
    schema: Option<&TableSchema>,
    shaper: Option<&mut Shaper>,
    max_message_bytes: usize,
) -> Result<(Rows, Option<LogRecord>), String> {
    match (letter.stage, schema) {
        (Stage::Source, None) => {
            let user: ApiUser =
                serde_json::from_slice(&letter.payload).map_err(|e| format!("shape: {e}"))?;
            let row = user.to_row().map_err(|e| e.to_string())?;
            let message = LogRecord {
                key: Some(row.key()),
                payload: row.to_json(),
            };
            Ok((Rows::Users(Arc::from(vec![row])), Some(message)))
        }
        (Stage::Decode | Stage::Sink, None) => {
            let row =
                Row::from_json(&letter.payload, max_message_bytes).map_err(|e| e.to_string())?;
            Ok((Rows::Users(Arc::from(vec![row])), None))
        }
        (Stage::Source | Stage::Transform, Some(_)) => {
            let shaper = shaper.ok_or("this pipeline has no table to shape records for")?;
            let record: Value = serde_json::from_slice(&letter.payload)
                .map_err(|e| format!("malformed json: {e}"))?;
            let shaped = shaper.shape(record).map_err(|e| e.to_string())?;
            let message = LogRecord {
                key: Some(shaped.key),
                payload: shaped.payload,
            };
            Ok((Rows::Table(Arc::from(vec![shaped.row])), Some(message)))
        }
        (Stage::Decode | Stage::Sink, Some(schema)) => {
            let row = decode_typed(schema, &letter.payload, max_message_bytes)?;
            Ok((Rows::Table(Arc::from(vec![row])), None))
        }
        (Stage::Transform, None) => {
            Err("a transform's letter, but this pipeline has no transform".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn rows_taken_for_one_hash_alike_and_others_do_not() {
        let alike = [
            (
                json!({"id": "a", "n": 15, "l": []}),
                json!({"id": "a", "n": "1.5e1"}),
            ),
            (
                json!({"id": "a", "n": -0.0, "m": null}),
                json!({"id": "a", "n": 0}),
            ),
        ];
        for (a, b) in alike {
            assert!(super::same_record(&a, &b), "{a} {b}");
            assert_eq!(super::record_hash(&a), super::record_hash(&b), "{a} {b}");
        }
        let unlike = [
            (json!({"id": "a", "n": 1}), json!({"id": "a", "n": 2})),
            (json!({"id": "a", "n": 1}), json!({"id": "a", "m": 1})),
            (json!({"id": "a", "s": "x"}), json!({"id": "a", "s": "y"})),
        ];
        for (a, b) in unlike {
            assert!(!super::same_record(&a, &b), "{a} {b}");
            assert_ne!(super::record_hash(&a), super::record_hash(&b), "{a} {b}");
        }
    }

    #[test]
    fn replay_writes_forget_all_past_their_limit_and_keep_the_last() {
        let mut w = super::ReplayWrites::default();
        let row = json!({"id": "k"});
        for k in 0..super::ReplayWrites::LIMIT as u128 {
            w.wrote(k, &row);
        }
        w.wrote(7, &json!({"id": "k", "v": 2}));
        assert_eq!(
            w.0.len(),
            super::ReplayWrites::LIMIT,
            "a key known is rewritten in place"
        );
        w.wrote(u128::MAX, &row);
        assert_eq!(w.0.len(), 1);
        assert_eq!(w.row_of(u128::MAX), Some(super::record_hash(&row)));
    }

    #[test]
    fn a_row_read_back_in_the_stores_form_is_the_same_record() {
        let ours = json!({"id": "k", "tags": [], "attrs": {}, "price": "1.5e1", "n": 7});
        let stored = json!({"id": "k", "tags": null, "price": "15", "n": 7.0});
        assert!(super::same_record(&ours, &stored));
        for other in [
            json!({"id": "k", "tags": ["a"], "price": "15", "n": 7}),
            json!({"id": "k", "tags": null, "price": "16", "n": 7}),
            json!({"id": "k", "tags": null, "price": "15", "n": 7, "note": "x"}),
        ] {
            assert!(!super::same_record(&ours, &other), "{other}");
        }
    }
}
