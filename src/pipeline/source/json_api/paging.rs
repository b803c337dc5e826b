//! What an answer says about paging: the next cursor, and the `Link`
//! header's `next` (RFC 8288).

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::pipeline::source::json_page::kind;
use crate::pipeline::source::retry::{self, Failure};

/// The next cursor at `pointer`: a string or a number; missing, null or `""`
/// is the end.
pub(super) fn cursor_at(body: &Value, pointer: &str) -> Result<Option<String>, Failure> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(Failure::fatal(format!(
            "the cursor at {pointer} is {}, not a string or a number",
            kind(other)
        ))),
    }
}

/// The target of the first `rel="next"` link in the answer's `Link` header
/// fields (RFC 8288), as written (it may be relative).
pub(super) fn next_link(headers: &HeaderMap) -> Result<Option<String>, String> {
    for field in headers.get_all(reqwest::header::LINK) {
        let text = String::from_utf8_lossy(field.as_bytes());
        for link in parse_link_header(&text)? {
            let rel = link
                .params
                .iter()
                .find(|(name, _)| name == "rel")
                .map(|(_, v)| v.as_str());
            if rel.is_some_and(|r| {
                r.split_ascii_whitespace()
                    .any(|t| t.eq_ignore_ascii_case("next"))
            }) {
                return Ok(Some(link.target));
            }
        }
    }
    Ok(None)
}

/// One link-value of a `Link` header.
#[derive(Debug, PartialEq)]
pub(super) struct Link {
    pub(super) target: String,
    /// Parameters in order, names in lower case, quoted values unquoted.
    pub(super) params: Vec<(String, String)>,
}

/// `link-value *( "," link-value )` with
/// `link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )` and
/// `link-param = token BWS [ "=" BWS ( token / quoted-string ) ]`.
pub(super) fn parse_link_header(text: &str) -> Result<Vec<Link>, String> {
    let bad = |what: &str| {
        format!(
            "malformed Link header ({what}): {}",
            retry::truncate(text, 200)
        )
    };
    let s = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && matches!(s[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    let is_token_end = |c: u8| matches!(c, b';' | b',' | b'=' | b' ' | b'\t' | b'"');
    let mut links = Vec::new();
    loop {
        while i < s.len() && matches!(s[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i == s.len() {
            return Ok(links);
        }
        if s[i] != b'<' {
            return Err(bad("a link must start with '<'"));
        }
        let end = text[i + 1..]
            .find('>')
            .ok_or_else(|| bad("no '>' after '<'"))?;
        let target = text[i + 1..i + 1 + end].trim().to_owned();
        i += end + 2;
        let mut params = Vec::new();
        loop {
            skip_ws(&mut i);
            if i == s.len() || s[i] == b',' {
                break;
            }
            if s[i] != b';' {
                return Err(bad("expected ';' or ','"));
            }
            i += 1;
            skip_ws(&mut i);
            let start = i;
            while i < s.len() && !is_token_end(s[i]) {
                i += 1;
            }
            if i == start {
                return Err(bad("a parameter has no name"));
            }
            let name = text[start..i].to_ascii_lowercase();
            skip_ws(&mut i);
            let mut value = String::new();
            if i < s.len() && s[i] == b'=' {
                i += 1;
                skip_ws(&mut i);
                if i < s.len() && s[i] == b'"' {
                    i += 1;
                    let mut closed = false;
                    while i < s.len() {
                        match s[i] {
                            b'\\' if i + 1 < s.len() => {
                                let c = text[i + 1..].chars().next().unwrap_or('\u{fffd}');
                                value.push(c);
                                i += 1 + c.len_utf8();
                            }
                            b'"' => {
                                i += 1;
                                closed = true;
                                break;
                            }
                            _ => {
                                // Copy whole UTF-8 characters, not bytes.
                                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                                value.push(c);
                                i += c.len_utf8();
                            }
                        }
                    }
                    if !closed {
                        return Err(bad("an unclosed quoted string"));
                    }
                } else {
                    let start = i;
                    while i < s.len() && !is_token_end(s[i]) {
                        i += 1;
                    }
                    value = text[start..i].to_owned();
                }
            }
            // A parameter given twice counts once, the first time
            // (RFC 8288 §3.3 for rel).
            if !params.iter().any(|(n, _)| *n == name) {
                params.push((name, value));
            }
        }
        links.push(Link { target, params });
    }
}
