//! `${NAME}` templates in headers and query values: expanded from the
//! environment, the values kept out of logs, errors and `Debug`, and the
//! URL shown with secret parameters replaced.

use std::collections::HashSet;
use std::fmt;

use url::Url;

use super::{REDACTED, REDACTED_IN_URL, looks_secret};
use crate::pipeline::source::SourceError;

/// A piece of a `${NAME}` template.
#[derive(Debug, PartialEq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

pub(super) fn parse_template(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            pieces.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            pieces.push(Piece::Text("$"));
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail
                .find('}')
                .ok_or("an unclosed ${ (write $$ for a literal $)")?;
            let name = &tail[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "${{{name}}} is not a variable name (letters, digits and _, not first a digit)"
                ));
            }
            pieces.push(Piece::Var(name));
            rest = &tail[end + 1..];
        } else {
            pieces.push(Piece::Text("$"));
            rest = after;
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// The values that must never be shown, longest first so a value that
/// contains another is replaced whole.
#[derive(Default)]
pub(super) struct Secrets(Vec<String>);

impl Secrets {
    /// Values this short are not worth hiding and would mangle every message.
    const MIN_LEN: usize = 4;

    fn add(&mut self, value: &str) {
        if value.len() >= Self::MIN_LEN && !self.0.iter().any(|s| s == value) {
            self.0.push(value.to_owned());
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced: a server may echo a credential in
    /// an error body, and that body ends up in an error message.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for s in &self.0 {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), REDACTED);
            }
        }
        text
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

/// Expands `template`; `what` names it in errors, which name a missing
/// variable but never a value. Every substituted value, and the result when
/// `secret`, go into `secrets`.
pub(super) fn expand(
    what: &str,
    template: &str,
    secret: bool,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Result<String, SourceError> {
    let pieces =
        parse_template(template).map_err(|e| SourceError::Setup(format!("{what}: {e}")))?;
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match env(name) {
                Some(v) if !v.is_empty() => {
                    secrets.add(&v);
                    out.push_str(&v);
                }
                Some(_) => {
                    return Err(SourceError::Setup(format!(
                        "{what}: environment variable {name} is empty"
                    )));
                }
                None => {
                    return Err(SourceError::Setup(format!(
                        "{what}: environment variable {name} is not set"
                    )));
                }
            },
        }
    }
    if secret {
        secrets.add(&out);
        // The credential after an auth scheme ("Bearer abc…") on its own,
        // in case a server echoes just that.
        if let Some((_, credential)) = out.trim().rsplit_once(' ') {
            secrets.add(credential);
        }
    }
    Ok(out)
}

/// `url` for people: no user info or fragment, and the values of secret query
/// parameters replaced.
pub(super) fn public_url(url: &Url, secret_params: &HashSet<String>) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if looks_secret(&k) || secret_params.contains(k.as_ref()) {
                    REDACTED_IN_URL.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}
