//! A Random User API answer: split into its users by a byte-level scan that
//! does not need the whole body to be valid (each user is then decoded on
//! its own), so one user with broken bytes is a [`Rejected`] and its
//! neighbours go on. The scan keeps only byte ranges, at most as many as
//! the users asked for.

use serde::{Deserialize, Serialize};

use super::{ApiUser, RecordError};

/// The `info` block of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiInfo {
    #[serde(default)]
    pub seed: Option<String>,
    #[serde(default)]
    pub results: Option<u64>,
    #[serde(default)]
    pub page: Option<u64>,
    #[serde(default)]
    pub version: Option<String>,
}

/// Why a whole response body is unusable. All of these are worth a retry:
/// the service answers them under load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The service said `{"error": "..."}`.
    #[error("api error body: {0}")]
    Api(String),
    /// Not JSON, cut short, or no `results` array.
    #[error("malformed api response: {0}")]
    Malformed(String),
}

/// A user of a page that could not be decoded or flattened, with its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub raw: Vec<u8>,
    pub error: RecordError,
}

/// A decoded page: the users that decoded, the ones that did not, the info.
#[derive(Debug, Default)]
pub struct DecodedPage {
    pub users: Vec<ApiUser>,
    pub rejected: Vec<Rejected>,
    pub info: Option<ApiInfo>,
}

/// Nesting deeper than this is refused (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// Decodes a response body with no limit on its users (trusted bodies:
/// the mock API's, benchmarks). See [`decode_page_of`].
pub fn decode_page(body: &[u8]) -> Result<DecodedPage, PageError> {
    decode_page_of(body, usize::MAX)
}

/// Decodes a response body. The page as a whole must be a JSON object with a
/// `results` array of at most `max_users` entries; each entry is decoded on
/// its own, so one bad user (wrong shape, invalid UTF-8, not an object)
/// becomes a [`Rejected`] and the rest of the page goes on.
pub fn decode_page_of(body: &[u8], max_users: usize) -> Result<DecodedPage, PageError> {
    let top = Scan::new(body).object().map_err(PageError::Malformed)?;
    if let Some(err) = top.error.filter(|e| *e != b"null") {
        let text = match serde_json::from_slice::<serde_json::Value>(err) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => String::from_utf8_lossy(err).into_owned(),
        };
        return Err(PageError::Api(text));
    }
    let results = top
        .results
        .ok_or_else(|| PageError::Malformed("no results array".into()))?;
    let entries = Scan::new(results)
        .array(max_users)
        .map_err(PageError::Malformed)?;
    let mut page = DecodedPage {
        users: Vec::with_capacity(entries.len()),
        rejected: Vec::new(),
        info: top.info.and_then(|i| serde_json::from_slice(i).ok()),
    };
    for entry in entries {
        match serde_json::from_slice::<ApiUser>(entry) {
            Ok(u) => page.users.push(u),
            Err(e) => page.rejected.push(Rejected {
                raw: entry.to_vec(),
                error: RecordError::from_json(e),
            }),
        }
    }
    Ok(page)
}

/// The members of the top-level object that matter, as raw bytes.
#[derive(Default)]
struct Top<'a> {
    results: Option<&'a [u8]>,
    error: Option<&'a [u8]>,
    info: Option<&'a [u8]>,
}

/// A cursor over JSON bytes that finds where values begin and end. Strings
/// are skipped byte by byte (a bad byte inside one is not its business);
/// brackets must match and nothing may be cut short.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn new(b: &'a [u8]) -> Self {
        Scan { b, i: 0 }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expected(&self, what: &str) -> String {
        match self.peek() {
            None => format!("cut short: expected {what} at byte {}", self.i),
            Some(c) => format!(
                "expected {what} at byte {}, found {:?}",
                self.i,
                char::from(c).escape_default().to_string()
            ),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.expected(what));
        }
        self.i += 1;
        Ok(())
    }

    /// Past the string that starts at `i` (at its opening quote).
    fn string(&mut self) -> Result<(), String> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return Ok(()),
                _ => {}
            }
        }
        self.i = self.b.len();
        Err(format!("cut short: a string from byte {start} never ends"))
    }

    /// The bytes of the value at `i` (after white space), and past it.
    fn value(&mut self) -> Result<&'a [u8], String> {
        self.ws();
        let start = self.i;
        match self.peek() {
            Some(b'"') => self.string()?,
            Some(b'{' | b'[') => {
                let mut open = Vec::new();
                loop {
                    match self.peek() {
                        None => {
                            return Err(format!(
                                "cut short: the value from byte {start} never ends"
                            ));
                        }
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(c @ (b'{' | b'[')) => {
                            if open.len() == MAX_DEPTH {
                                return Err(format!(
                                    "nested deeper than {MAX_DEPTH} at byte {}",
                                    self.i
                                ));
                            }
                            open.push(if c == b'{' { b'}' } else { b']' });
                        }
                        Some(c @ (b'}' | b']')) => {
                            if open.pop() != Some(c) {
                                return Err(format!(
                                    "unmatched {:?} at byte {}",
                                    char::from(c),
                                    self.i
                                ));
                            }
                            if open.is_empty() {
                                self.i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    self.i += 1;
                }
            }
            Some(c) if c == b'-' || c.is_ascii_alphanumeric() => {
                while self.peek().is_some_and(|c| {
                    c == b'-' || c == b'+' || c == b'.' || c.is_ascii_alphanumeric()
                }) {
                    self.i += 1;
                }
            }
            _ => return Err(self.expected("a value")),
        }
        Ok(&self.b[start..self.i])
    }

    /// The top-level object, with nothing after it.
    fn object(mut self) -> Result<Top<'a>, String> {
        let mut top = Top::default();
        self.expect(b'{', "a JSON object")?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.expected("a member name"));
                }
                let name = self.value()?;
                self.expect(b':', "':'")?;
                let value = self.value()?;
                match name {
                    b"\"results\"" => top.results = Some(value),
                    b"\"error\"" => top.error = Some(value),
                    b"\"info\"" => top.info = Some(value),
                    _ => {}
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.expected("',' or '}'")),
                }
            }
        }
        self.ws();
        if self.i < self.b.len() {
            return Err(self.expected("the end of the answer"));
        }
        Ok(top)
    }

    /// The entries of the array that is all of `b`: at most `max` of them.
    fn array(mut self, max: usize) -> Result<Vec<&'a [u8]>, String> {
        let mut entries = Vec::new();
        self.ws();
        if self.peek() != Some(b'[') {
            return Err("results is not an array".into());
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(b']') {
            return Ok(entries);
        }
        loop {
            if entries.len() == max {
                return Err(format!(
                    "the page holds more than the {max} users asked for"
                ));
            }
            entries.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => return Ok(entries),
                _ => return Err(self.expected("',' or ']'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::USER_1_4;
    use super::*;

    #[test]
    fn error_body_is_a_page_error() {
        let body = br#"{"error": "Uh oh, something has gone wrong. Please tweet us @randomapi about the issue. Thank you."}"#;
        assert!(matches!(decode_page(body), Err(PageError::Api(m)) if m.starts_with("Uh oh")));
    }

    #[test]
    fn truncated_page_is_malformed() {
        let body = format!(r#"{{"results": [{USER_1_4}"#);
        assert!(matches!(
            decode_page(body.as_bytes()),
            Err(PageError::Malformed(_))
        ));
    }

    #[test]
    fn one_bad_user_does_not_spoil_the_page() {
        let body = format!(
            r#"{{"results": [{USER_1_4}, {{"name": 7}}], "info": {{"seed": "abc", "results": 2, "page": 1, "version": "1.4"}}}}"#
        );
        let page = decode_page(body.as_bytes()).unwrap();
        assert_eq!(page.users.len(), 1);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].raw, br#"{"name": 7}"#);
        assert!(matches!(page.rejected[0].error, RecordError::Shape(_)));
        assert_eq!(page.info.unwrap().seed.as_deref(), Some("abc"));
    }

    #[test]
    fn a_user_with_invalid_utf8_is_rejected_alone() {
        let mut body = b"{\"results\": [".to_vec();
        for i in 0..10 {
            if i > 0 {
                body.push(b',');
            }
            if i == 4 {
                body.extend_from_slice(b"{\"name\": {\"first\": \"Bj\xF6rn\"}}");
            } else {
                body.extend_from_slice(USER_1_4.as_bytes());
            }
        }
        body.extend_from_slice(b"]}");
        // serde_json alone refuses the whole page.
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        let page = decode_page(&body).unwrap();
        assert_eq!(page.users.len(), 9);
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(
            page.rejected[0].raw,
            b"{\"name\": {\"first\": \"Bj\xF6rn\"}}"
        );
        assert!(matches!(page.rejected[0].error, RecordError::Malformed(_)));
    }

    #[test]
    fn what_is_not_a_page_is_malformed_with_a_reason() {
        for (body, says) in [
            (
                &b"<!DOCTYPE html><html>"[..],
                "expected a JSON object at byte 0",
            ),
            (b"\x1f\x8b\x08\x00", "expected a JSON object at byte 0"),
            (b"", "cut short"),
            (br#"{"results": [1, 2}"#, "unmatched"),
            (br#"{"results": {}}"#, "results is not an array"),
            (br#"{"results": []} trailing"#, "the end of the answer"),
            (br#"{"results": ["#, "cut short"),
        ] {
            match decode_page(body) {
                Err(PageError::Malformed(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{body:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_page_with_more_users_than_asked_is_refused() {
        let body = br#"{"results": [1, 2, 3, {"never": "decoded"}]}"#;
        match decode_page_of(body, 2) {
            Err(PageError::Malformed(m)) => assert!(m.contains("more than the 2 users"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Entries that are not users are rejected one by one.
        let page = decode_page_of(br#"{"results": [1, "x", null]}"#, 3).unwrap();
        assert_eq!(page.rejected.len(), 3);
    }

    #[test]
    fn nesting_is_bounded() {
        let body = format!("{{\"results\": [{}", "[".repeat(100_000));
        match decode_page(body.as_bytes()) {
            Err(PageError::Malformed(m)) => assert!(m.contains("nested deeper"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
