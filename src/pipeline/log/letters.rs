//! Dead letters: the stage that gave up on a record, where it came from,
//! its bytes as they arrived, and how a stored letter is shown.

use super::Discarded;

/// The pipeline stage that gave up on a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The API user could not be decoded or flattened, or a source record
    /// was not a JSON object.
    Source,
    /// A user pipeline's record: its transform rejected it, or the row it
    /// gave does not fit the table.
    Transform,
    /// The log message could not be decoded or validated.
    Decode,
    /// The store refused the row for good.
    Sink,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Transform => "transform",
            Stage::Decode => "decode",
            Stage::Sink => "sink",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "source" => Some(Stage::Source),
            "transform" => Some(Stage::Transform),
            "decode" => Some(Stage::Decode),
            "sink" => Some(Stage::Sink),
            _ => None,
        }
    }
}

/// A letter's reason is kept up to this many bytes.
pub const MAX_REASON: usize = 4096;

/// `reason` cut to [`MAX_REASON`] bytes, at a character's edge.
pub fn cut_reason(mut reason: String) -> String {
    reason.truncate(reason.floor_char_boundary(MAX_REASON));
    reason
}

/// A dead letter's name when it has no log origin: its source position and
/// a hash of its bytes (xxh3-128), so the same bad record fetched again is
/// recognised, and two bad records with equal bytes at two positions are not
/// taken for one.
pub fn fingerprint(source_position: &str, payload: &[u8]) -> String {
    let hash = twox_hash::XxHash3_128::oneshot(payload);
    format!("{source_position}#{hash:032x}")
}

/// Where a dead letter was read from, when it came from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record that could not go on, with everything needed to inspect and
/// replay it: the raw bytes are kept as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub stage: Stage,
    pub reason: String,
    pub origin: Option<Origin>,
    /// Where a letter that never reached the log came from: the source, its
    /// seed, the page and the position in it. With the payload it names the
    /// letter, so fetching the same page again does not store it twice.
    pub source_position: Option<String>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A dead letter as stored, with its id and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub created_ms: i64,
    pub replayed_ms: Option<i64>,
    /// Set aside by an operator (`dlq discard`): kept for audit, never
    /// replayed, not waiting.
    pub discarded: Option<Discarded>,
    pub letter: DeadLetter,
}

impl StoredDeadLetter {
    /// The letter as `dlq list --json` and the API show it: the payload as
    /// (lossy) text, cut to `payload_limit` bytes; `payload_bytes` is the
    /// whole size.
    pub fn to_json(&self, payload_limit: usize) -> serde_json::Value {
        let origin = self.letter.origin.as_ref();
        let payload = &self.letter.payload;
        serde_json::json!({
            "id": self.id,
            "created_ms": self.created_ms,
            "replayed_ms": self.replayed_ms,
            "discarded": self.discarded.as_ref().map(|d| serde_json::json!({
                "at_ms": d.at_ms,
                "reason": d.reason,
            })),
            "stage": self.letter.stage.as_str(),
            "reason": self.letter.reason,
            "topic": origin.map(|o| o.topic.clone()),
            "partition": origin.map(|o| o.partition),
            "offset": origin.map(|o| o.offset),
            "source_position": self.letter.source_position,
            "key": self.letter.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "payload_bytes": payload.len(),
            "payload": String::from_utf8_lossy(&payload[..payload.len().min(payload_limit)]),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reason_is_cut_at_a_characters_edge() {
        let long = "é".repeat(super::MAX_REASON);
        let cut = super::cut_reason(long);
        assert!(cut.len() <= super::MAX_REASON && cut.len() >= super::MAX_REASON - 1);
        assert_eq!(super::cut_reason("short".into()), "short");
    }
}
