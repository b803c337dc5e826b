//! The page the generic JSON sources (`json_api`, `file`) hand out: the
//! records that are JSON objects, in order, and the ones that are not, kept
//! with their bytes so they can become dead letters.

use serde_json::Value;

/// One page of records from a JSON source.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPage {
    /// The page's number in this run of the source, from 1.
    pub number: u64,
    /// Where the page came from, for people and for dead-letter keys: the
    /// request URL with secrets removed, or the file and its line or element
    /// range. The same page fetched again has the same position.
    pub position: String,
    /// The records that are JSON objects, in the order the source gave them.
    pub records: Vec<Value>,
    /// Each record's place in the source (its index in the answer, its line
    /// or element number), named by [`place`](Self::place).
    pub places: Vec<u64>,
    /// What a place number follows in a record's position (`…#`,
    /// `…#line=`, `…#element=`).
    pub place_prefix: String,
    /// Records that are not JSON objects (or not JSON at all).
    pub rejected: Vec<RejectedRecord>,
    /// Each rejected record's place in the source, where it has one: the
    /// ones a typed decoder set in `rejected` have none, and count as after
    /// the objects.
    rejected_places: Vec<u64>,
}

/// A record a JSON source could not hand out as an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// The record's own position: the page's position and its place in it
    /// (`…#3`, `…#line=17`, `…#element=42`).
    pub position: String,
    /// The record's bytes: as received for a file line, re-serialised
    /// compactly for an element of a parsed array.
    pub raw: Vec<u8>,
    pub reason: String,
}

impl RejectedRecord {
    /// A record of an array of records that is not an object; `what` names
    /// it ("record 3", "element 42").
    fn not_an_object(value: &Value, what: String, position: String) -> Self {
        RejectedRecord {
            reason: format!("{what} is {}, not an object", kind(value)),
            raw: serde_json::to_vec(value).unwrap_or_default(),
            position,
        }
    }
}

impl JsonPage {
    pub(crate) fn new(number: u64, position: String, place_prefix: String) -> Self {
        JsonPage {
            number,
            position,
            records: Vec::new(),
            places: Vec::new(),
            place_prefix,
            rejected: Vec::new(),
            rejected_places: Vec::new(),
        }
    }

    /// The position of the record at `place` in the source.
    pub fn place(&self, place: u64) -> String {
        format!("{}{place}", self.place_prefix)
    }

    /// The position of the `k`th record of [`records`](Self::records).
    pub fn position_of(&self, k: usize) -> String {
        self.place(self.places[k])
    }

    /// Keeps the first `n` records received, in the source's order,
    /// objects and rejected records alike, and returns the others as a
    /// page of their own (same number and position, each record at its
    /// place): a run that wants no more than `n` cuts its last page.
    pub fn split_off(&mut self, n: u64) -> JsonPage {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        // Both lists are in the source's order: walk them as one.
        let rejected_place = |j: usize| {
            (j < self.rejected.len())
                .then(|| self.rejected_places.get(j).copied().unwrap_or(u64::MAX))
        };
        let (mut kept, mut rejected) = (0, 0);
        while kept + rejected < n {
            match (self.places.get(kept), rejected_place(rejected)) {
                (Some(&a), Some(b)) if a < b => kept += 1,
                (Some(_), None) => kept += 1,
                (_, Some(_)) => rejected += 1,
                (None, None) => break,
            }
        }
        let placed = rejected.min(self.rejected_places.len());
        JsonPage {
            number: self.number,
            position: self.position.clone(),
            records: self.records.split_off(kept),
            places: self.places.split_off(kept),
            place_prefix: self.place_prefix.clone(),
            rejected: self.rejected.split_off(rejected),
            rejected_places: self.rejected_places.split_off(placed),
        }
    }

    /// Keeps `value`, an object, found at `place`.
    pub(crate) fn keep(&mut self, value: Value, place: u64) {
        self.records.push(value);
        self.places.push(place);
    }

    /// Records and rejected records together: what the source received.
    pub fn received(&self) -> usize {
        self.records.len() + self.rejected.len()
    }

    /// Keeps `value`, found at `place`, when it is an object, otherwise
    /// rejects it. `what` names it for the reason (`record 3`, `line 17`);
    /// it is asked only for a rejected record, so a page of millions of
    /// records makes no strings for the ones it keeps.
    pub(super) fn push(&mut self, value: Value, place: u64, what: impl FnOnce() -> String) {
        if value.is_object() {
            self.keep(value, place);
        } else {
            let letter = RejectedRecord::not_an_object(&value, what(), self.place(place));
            self.refuse(letter, place);
        }
    }

    /// Rejects the record at `place`, with its bytes and the reason.
    pub(super) fn reject(&mut self, raw: Vec<u8>, reason: String, place: u64) {
        let letter = RejectedRecord {
            position: self.place(place),
            raw,
            reason,
        };
        self.refuse(letter, place);
    }

    fn refuse(&mut self, letter: RejectedRecord, place: u64) {
        self.rejected.push(letter);
        self.rejected_places.push(place);
    }
}

/// The JSON type of `v`, with its article, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_kept_and_anything_else_is_rejected_with_its_bytes() {
        let mut page = JsonPage::new(1, "p".into(), "p#".into());
        let named = |i: usize| move || format!("record {i}");
        page.push(json!({"id": 1}), 0, named(0));
        page.push(json!([1, 2]), 1, named(1));
        page.push(json!({"id": 2}), 2, named(2));
        assert_eq!(page.records, [json!({"id": 1}), json!({"id": 2})]);
        assert_eq!(page.position_of(1), "p#2", "a record's own place");
        assert_eq!(
            page.rejected,
            [RejectedRecord {
                position: "p#1".into(),
                raw: b"[1,2]".to_vec(),
                reason: "record 1 is an array, not an object".into(),
            }]
        );
        assert_eq!(page.received(), 3);
    }

    #[test]
    fn the_first_records_kept_are_the_first_in_the_source() {
        let mut page = JsonPage::new(1, "p".into(), "p#".into());
        let items = [json!({"id": 1}), json!(2), json!({"id": 3}), json!(4)];
        for (i, item) in items.into_iter().enumerate() {
            page.push(item, i as u64, || format!("record {i}"));
        }
        let rest = page.split_off(2);
        assert_eq!(page.records, [json!({"id": 1})]);
        let kept: Vec<&str> = page.rejected.iter().map(|r| r.position.as_str()).collect();
        assert_eq!(kept, ["p#1"], "the record at place 1, not the object at 2");
        // The rest is the others, each still named by its place.
        assert_eq!(rest.records, [json!({"id": 3})]);
        assert_eq!(rest.places, [2]);
        assert_eq!(rest.rejected[0].position, "p#3");
        assert_eq!((rest.number, rest.position.as_str()), (1, "p"));
        assert_eq!(page.split_off(5).received(), 0);
        assert_eq!(page.received(), 2, "more than there is keeps them all");
        assert_eq!(page.split_off(0).received(), 2);
        assert_eq!(page.received(), 0);
    }

    #[test]
    fn rejected_records_without_a_place_count_after_the_objects() {
        let mut page = JsonPage::new(1, "p".into(), "p#".into());
        page.keep(json!({"id": 1}), 0);
        page.keep(json!({"id": 2}), 1);
        page.rejected = vec![RejectedRecord::not_an_object(
            &json!(3),
            "x".into(),
            "u".into(),
        )];
        assert_eq!(page.split_off(3).received(), 0);
        assert_eq!(page.received(), 3);
        let rest = page.split_off(2);
        assert_eq!((page.records.len(), page.rejected.len()), (2, 0));
        assert_eq!((rest.records.len(), rest.rejected.len()), (0, 1));
    }
}
