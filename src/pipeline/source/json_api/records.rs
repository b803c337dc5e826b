//! An answer's records, kept as the text they arrived in and handed out a
//! chunk at a time. A 32 MiB answer can hold eleven million tiny records;
//! parsed at once they would take twenty times the answer. Here the
//! answer is read once with its records checked, counted and hashed one at
//! a time without being kept, and each chunk is parsed again from the text
//! only when it is handed out.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::pipeline::source::retry::Failure;

/// An answer, read.
#[derive(Debug)]
pub(super) struct Answer {
    /// Everything else in the answer, for its cursor and error pointers:
    /// the records' place holds `null` (unless a pointer looks at, into or
    /// above them, when the answer is parsed whole).
    pub(super) rest: Value,
    /// The records, or why the answer has none where they should be (an
    /// answer that reports an error at its error pointer explains that
    /// better, so this waits until it was looked at).
    pub(super) records: Result<Records, Failure>,
}

/// The records of one answer, handed out in order a chunk at a time.
pub(super) struct Records {
    /// The answer as received; the records are its array between `at`
    /// and `end`.
    text: Vec<u8>,
    /// Where the next record (or the `,` before it) starts in `text`.
    at: usize,
    /// Just before the array's closing `]`.
    end: usize,
    /// The place (index in the array) of the next record.
    next: u64,
    count: u64,
    hash: u64,
}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("count", &self.count)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Records {
    /// How many records the answer holds.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// A hash of the records' text, to notice the same page twice.
    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    /// The next records with their places: at most `max` of them, and no
    /// more once their text passed `max_bytes`. Empty when all were handed
    /// out.
    pub(super) fn next_chunk(
        &mut self,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Value)>, Failure> {
        let mut out = Vec::new();
        let start = self.at;
        while out.len() < max && self.at - start < max_bytes {
            let rest = &self.text[self.at..self.end];
            let Some(skip) = rest
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b','))
            else {
                self.at = self.end;
                break;
            };
            let mut values =
                serde_json::Deserializer::from_slice(&rest[skip..]).into_iter::<Value>();
            let value = match values.next() {
                Some(Ok(v)) => v,
                // Every record was parsed as the answer arrived.
                Some(Err(e)) => return Err(Failure::fatal(format!("record {}: {e}", self.next))),
                None => break,
            };
            self.at += skip + values.byte_offset();
            out.push((self.next, value));
            self.next += 1;
        }
        Ok(out)
    }
}

/// Reads `body`: the records are the array at the JSON pointer `records`
/// (the whole answer without one; `null` is no records), and `rest` is
/// parsed whole when one of `pointers` looks at, into or above the
/// records. Every record is parsed here, one at a time, so an answer with
/// one bad record is refused as a whole (`malformed`, given what is wrong
/// and the body), as a whole parse would; only their count and a hash of
/// their values are kept.
pub(super) fn read(
    body: Vec<u8>,
    records: Option<&str>,
    pointers: &[&str],
    malformed: impl FnOnce(&dyn fmt::Display, &[u8]) -> Failure,
) -> Result<Answer, Failure> {
    let at = records.filter(|p| !p.is_empty());
    let tokens: Vec<String> = match at {
        None => Vec::new(),
        Some(p) => p[1..].split('/').map(unescape).collect(),
    };
    let found = Cell::new(None);
    let parsed = {
        let mut de = serde_json::Deserializer::from_slice(&body);
        Along {
            tokens: &tokens,
            found: &found,
        }
        .deserialize(&mut de)
        .and_then(|rest| de.end().map(|()| rest))
    };
    let mut rest = match parsed {
        Ok(rest) => rest,
        Err(e) => return Err(malformed(&e, &body)),
    };
    let span = found.get().map(|raw: &RawValue| {
        let text = raw.get();
        let start = text.as_ptr() as usize - body.as_ptr() as usize;
        start..start + text.len()
    });
    let where_ = at.unwrap_or("the top level");
    let inspected = match &span {
        None => None,
        Some(span) => match inspect(&body[span.clone()]) {
            Ok(found) => Some(found),
            Err(e) => {
                let what = format!("{e} (in the records at {where_})");
                return Err(malformed(&what, &body));
            }
        },
    };
    // One pointer is the other or leads to it.
    let under = |a: &str, b: &str| {
        a.strip_prefix(b)
            .is_some_and(|t| t.is_empty() || t.starts_with('/'))
    };
    let overlaps = |p: &&str| at.is_none_or(|r| under(p, r) || under(r, p));
    if pointers.iter().any(overlaps) {
        rest = match serde_json::from_slice(&body) {
            Ok(whole) => whole,
            Err(e) => return Err(malformed(&e, &body)),
        };
    }
    let none = || Records {
        text: Vec::new(),
        at: 0,
        end: 0,
        next: 0,
        count: 0,
        hash: Tally::default().hash(),
    };
    let records = match (span, inspected) {
        (Some(span), Some(Found::Array { count, hash })) => Ok(Records {
            text: body,
            at: span.start + 1,
            end: span.end - 1,
            next: 0,
            count,
            hash,
        }),
        (_, Some(Found::Null)) => Ok(none()),
        (_, Some(Found::Other(kind))) => Err(Failure::retryable(format!(
            "the records at {where_} are {kind}, not an array"
        ))),
        _ => Err(Failure::retryable(format!(
            "the answer has nothing at {where_}"
        ))),
    };
    Ok(Answer { rest, records })
}

/// What lies where the records should be.
enum Found {
    Array {
        count: u64,
        hash: u64,
    },
    Null,
    /// Anything else, by its kind.
    Other(&'static str),
}

/// Parses the value `raw` as far as its kind, and an array's elements one
/// by one: each is checked, counted, hashed and dropped.
fn inspect(raw: &[u8]) -> Result<Found, serde_json::Error> {
    Ok(match raw.first() {
        Some(b'[') => {
            let tally =
                serde_json::Deserializer::from_slice(raw).deserialize_seq(Tally::default())?;
            Found::Array {
                count: tally.count,
                hash: tally.hash(),
            }
        }
        Some(b'n') => Found::Null,
        Some(b'{') => Found::Other("an object"),
        Some(b'"') => Found::Other("a string"),
        Some(b't' | b'f') => Found::Other("a boolean"),
        _ => Found::Other("a number"),
    })
}

/// `~1` is `/` and `~0` is `~` in a JSON pointer's reference token.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// An array index as a JSON pointer writes it: digits, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// Parses a value into a [`Value`], except what lies at `tokens` below it:
/// that is only checked and left as its text in `found` (and `null` in the
/// value). As with `Value`, a key given twice counts the last time.
struct Along<'a, 'de> {
    tokens: &'a [String],
    found: &'a Cell<Option<&'de RawValue>>,
}

impl<'a, 'de> Along<'a, 'de> {
    /// The same search one level down.
    fn below(&self) -> Along<'a, 'de> {
        Along {
            tokens: &self.tokens[1..],
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Along<'_, 'de> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.tokens.is_empty() {
            let raw: &'de RawValue = de::Deserialize::deserialize(d)?;
            self.found.set(Some(raw));
            return Ok(Value::Null);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Along<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == self.tokens[0] {
                self.found.set(None);
                map.next_value_seed(self.below())?
            } else {
                map.next_value()?
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let wanted = index(&self.tokens[0]);
        let mut out = Vec::new();
        loop {
            let next = if wanted == Some(out.len()) {
                seq.next_element_seed(self.below())?
            } else {
                seq.next_element()?
            };
            match next {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }
}

/// An array's elements, counted and hashed as values (each serialised
/// again: the same records with other spacing, key order or number forms
/// hash the same).
#[derive(Default)]
struct Tally {
    count: u64,
    hasher: twox_hash::XxHash3_64,
}

impl Tally {
    fn hash(&self) -> u64 {
        std::hash::Hasher::finish(&self.hasher)
    }
}

impl std::io::Write for Tally {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.hasher, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'de> Visitor<'de> for Tally {
    type Value = Tally;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Tally, A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            serde_json::to_writer(&mut self, &value).expect("JSON values serialise");
            std::io::Write::write_all(&mut self, b",").expect("a hasher takes any bytes");
            self.count += 1;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_at(body: &Value, at: Option<&str>, pointers: &[&str]) -> Answer {
        let text = serde_json::to_vec(body).unwrap();
        read(text, at, pointers, |e, _| Failure::retryable(e.to_string())).unwrap()
    }

    fn records(body: &Value, at: Option<&str>) -> Result<Records, Failure> {
        read_at(body, at, &[]).records
    }

    fn all(records: &mut Records) -> Vec<(u64, Value)> {
        records.next_chunk(usize::MAX, usize::MAX).unwrap()
    }

    #[test]
    fn records_are_found_by_pointer_and_null_is_an_empty_page() {
        let body = json!({
            "data": {"items": [1, {"a": [2, "]"]}, "x,y"]},
            "none": null, "obj": {}, "a/b": [[], [5]],
            "next": "c2",
        });
        let answer = read_at(&body, Some("/data/items"), &["/next"]);
        assert_eq!(answer.rest["data"]["items"], Value::Null);
        assert_eq!(answer.rest["next"], "c2");
        assert_eq!(answer.rest["a/b"], json!([[], [5]]));
        let mut items = answer.records.unwrap();
        assert_eq!(items.count(), 3);
        assert_eq!(
            all(&mut items),
            [
                (0, json!(1)),
                (1, json!({"a": [2, "]"]})),
                (2, json!("x,y"))
            ]
        );
        assert!(all(&mut items).is_empty(), "handed out once");

        let mut deep = records(&body, Some("/a~1b/1")).unwrap();
        assert_eq!(all(&mut deep), [(0, json!(5))]);

        let mut none = records(&body, Some("/none")).unwrap();
        assert_eq!((none.count(), all(&mut none)), (0, vec![]));
        let f = records(&body, Some("/obj")).unwrap_err();
        assert!(
            f.retryable && f.reason.contains("an object, not an array"),
            "{}",
            f.reason
        );
        let f = records(&body, Some("/missing")).unwrap_err();
        assert!(f.reason.contains("nothing at /missing"), "{}", f.reason);
        let f = records(&body, Some("/data/items/0")).unwrap_err();
        assert!(f.reason.contains("a number, not an array"), "{}", f.reason);

        let pretty = serde_json::to_vec_pretty(&body).unwrap();
        let answer = read(pretty, Some("/data/items"), &[], |e, _| {
            Failure::retryable(e.to_string())
        });
        let mut items = answer.unwrap().records.unwrap();
        assert_eq!(all(&mut items).len(), 3, "line breaks between records");

        let mut whole = records(&json!([{"a": 1}, {}]), None).unwrap();
        assert_eq!(whole.count(), 2);
        assert_eq!(all(&mut whole).len(), 2);
    }

    #[test]
    fn a_pointer_into_the_records_sees_the_whole_answer() {
        let body = json!({"items": [{"id": 7}], "error": null});
        let answer = read_at(&body, Some("/items"), &["/items/0/id"]);
        assert_eq!(answer.rest.pointer("/items/0/id"), Some(&json!(7)));
        assert_eq!(answer.records.unwrap().count(), 1);
        let answer = read_at(&body, Some("/items"), &["/itemsx", "/error"]);
        assert_eq!(answer.rest["items"], Value::Null, "not parsed twice");
        let answer = read_at(&json!([{"error": "x"}]), None, &["/0/error"]);
        assert_eq!(answer.rest.pointer("/0/error"), Some(&json!("x")));
    }

    #[test]
    fn chunks_stop_at_a_count_or_a_size_and_keep_the_places() {
        let items: Vec<Value> = (0..10)
            .map(|i| json!({"i": i, "pad": "x".repeat(90)}))
            .collect();
        let mut r = records(&json!({ "r": items }), Some("/r")).unwrap();
        let first = r.next_chunk(4, usize::MAX).unwrap();
        let places: Vec<u64> = first.iter().map(|(p, _)| *p).collect();
        assert_eq!(places, [0, 1, 2, 3]);
        let by_size = r.next_chunk(100, 250).unwrap();
        assert_eq!(
            by_size.len(),
            3,
            "each is 110 bytes: over 250 after the third"
        );
        assert_eq!(by_size[0], (4, items[4].clone()));
        let last = r.next_chunk(100, usize::MAX).unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[2], (9, items[9].clone()));
    }

    #[test]
    fn broken_json_and_a_key_given_twice() {
        let malformed = |e: &dyn fmt::Display, _: &[u8]| Failure::retryable(format!("bad {e}"));
        for broken in [&b"{\"r\": [1, 2"[..], b"{\"r\": [1,]}", b"[1] x", b""] {
            let f = read(broken.to_vec(), Some("/r"), &[], malformed).unwrap_err();
            assert!(f.reason.starts_with("bad"), "{}", f.reason);
        }
        let text = br#"{"r": [1, 2], "r": {"no": 1}}"#.to_vec();
        let answer = read(text, Some("/r"), &[], malformed).unwrap();
        let f = answer.records.unwrap_err();
        assert!(
            f.reason.contains("an object"),
            "the last one counts: {}",
            f.reason
        );
        let text = br#"{"r": {"no": 1}, "r": [3]}"#.to_vec();
        let mut r = read(text, Some("/r"), &[], malformed)
            .unwrap()
            .records
            .unwrap();
        assert_eq!(all(&mut r), [(0, json!(3))]);
    }

    #[test]
    fn the_hash_is_the_records_values_not_their_text_or_the_rest() {
        let hash = |text: &str| {
            let answer = read(text.as_bytes().to_vec(), Some("/r"), &[], |e, _| {
                Failure::retryable(e.to_string())
            });
            answer.unwrap().records.unwrap().hash()
        };
        let a = hash(r#"{"r": [{"a": 1, "b": 2.0}, "A"], "at": "10:00"}"#);
        assert_eq!(
            a,
            hash(r#"{"r": [{"a": 1, "b": 2.0}, "A"], "at": "10:01"}"#)
        );
        assert_eq!(a, hash(r#"{"r":[ {"b":2.00,"a":1} ,"\u0041"]}"#));
        assert_ne!(a, hash(r#"{"r": [{"a": 1, "b": 2.5}, "A"]}"#));
        assert_ne!(hash(r#"{"r": [[1], [2]]}"#), hash(r#"{"r": [[1, 2]]}"#));
    }

    /// What a parse of the whole answer refuses, the records' read refuses
    /// too, before any record is handed out: a number out of range, a lone
    /// surrogate, nesting past serde_json's limit.
    #[test]
    fn a_record_a_whole_parse_would_refuse_refuses_the_answer() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for record in ["{\"n\": 1e400}", "{\"s\": \"\\ud800\"}", deep.as_str()] {
            let text = format!("{{\"r\": [{{\"id\": 1}}, {record}]}}");
            assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
            let f = read(text.into_bytes(), Some("/r"), &[], |e, _| {
                Failure::retryable(format!("malformed json: {e}"))
            })
            .unwrap_err();
            assert!(f.retryable, "{}", f.reason);
            assert!(f.reason.contains("(in the records at /r)"), "{}", f.reason);
        }
    }

    #[test]
    fn a_pointer_above_the_records_sees_them() {
        let body = json!({"data": {"items": [1], "error": "x"}});
        let answer = read_at(&body, Some("/data/items"), &["/data"]);
        assert_eq!(answer.rest.pointer("/data/items"), Some(&json!([1])));
        let answer = read_at(&body, Some("/data/items"), &["/data/error"]);
        assert_eq!(answer.rest.pointer("/data/items"), Some(&Value::Null));
        let answer = read_at(&body, Some("/data/items"), &["/dat"]);
        assert_eq!(answer.rest.pointer("/data/items"), Some(&Value::Null));
    }
}
