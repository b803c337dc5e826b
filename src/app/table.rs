//! Text output of the commands that print what the pipeline holds: cells
//! with the source's control characters escaped, cqlsh-style tables (whole,
//! or streamed row by row), and writes to stdout that end quietly when the
//! reader went away (`show | head`).

use std::fmt::Write as _;
use std::io::{self, Write};

/// Rows a streamed table reads before it fixes its column widths; later
/// rows are padded to those widths (a wider cell widens its line only).
const WIDTH_ROWS: usize = 1000;

/// `s` with control characters (and the invisible ones that reorder text)
/// written as escapes, so text from a source cannot move the terminal's
/// cursor, change its colours or hide what follows: ESC is `\x1b`, a
/// newline `\n`, U+202E `\u{202e}`.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.into()
}

/// The longest cell a table prints, in characters, as the dashboard cuts
/// its cells: a longer one ends in `…` (`--json` prints every value whole).
const CELL_CHARS: usize = 1024;

/// The cells of a JSON row for a table: text as it is (escaped, cut to
/// [`CELL_CHARS`]), null empty, other values as JSON.
pub fn row_cells(columns: &[&str], v: &serde_json::Value) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            let cell = match &v[c] {
                serde_json::Value::String(s) => escape(s).into_owned(),
                serde_json::Value::Null => String::new(),
                other => escape(&other.to_string()).into_owned(),
            };
            cut(cell)
        })
        .collect()
}

fn cut(cell: String) -> String {
    match cell.char_indices().nth(CELL_CHARS) {
        None => cell,
        Some((at, _)) => {
            let mut cell = cell;
            cell.truncate(at);
            cell.push('…');
            cell
        }
    }
}

/// The cells of JSON rows for a table (see [`row_cells`]).
pub fn cells(columns: &[&str], rows: &[serde_json::Value]) -> Vec<Vec<String>> {
    rows.iter().map(|v| row_cells(columns, v)).collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, &w)| format!("{c}{}", " ".repeat(w.saturating_sub(width(c)))))
        .collect();
    format!(" {}\n", padded.join(" | "))
}

fn head(header: &[&str], widths: &[usize]) -> String {
    let names: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    format!("{}-{}-\n", line(&names, widths), rule.join("-+-"))
}

fn widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    widths
}

/// A cqlsh-style table: a header, a rule, and ` | `-separated cells.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(header, rows);
    let mut out = head(header, &widths);
    for row in rows {
        out.push_str(&line(row, &widths));
    }
    out
}

/// A table written as its rows come: the first [`WIDTH_ROWS`] are held to
/// size the columns, the rest written at once.
pub struct StreamedTable<W: Write> {
    header: Vec<String>,
    out: W,
    held: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    pub rows: u64,
}

impl<W: Write> StreamedTable<W> {
    pub fn new(header: Vec<String>, out: W) -> Self {
        StreamedTable {
            header,
            out,
            held: Vec::new(),
            widths: None,
            rows: 0,
        }
    }

    pub fn push(&mut self, row: Vec<String>) -> io::Result<()> {
        self.rows += 1;
        match &self.widths {
            Some(w) => self.out.write_all(line(&row, w).as_bytes()),
            None => {
                self.held.push(row);
                if self.held.len() >= WIDTH_ROWS {
                    self.release()?;
                }
                Ok(())
            }
        }
    }

    fn release(&mut self) -> io::Result<()> {
        let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
        let w = widths(&header, &self.held);
        self.out.write_all(head(&header, &w).as_bytes())?;
        for row in std::mem::take(&mut self.held) {
            self.out.write_all(line(&row, &w).as_bytes())?;
        }
        self.widths = Some(w);
        Ok(())
    }

    /// Writes what is held; the writer, to go on with.
    pub fn finish(mut self) -> io::Result<W> {
        if self.widths.is_none() {
            self.release()?;
        }
        Ok(self.out)
    }
}

/// What a failed write to stdout means: the reader went away (`| head`),
/// which ends the command quietly, or a real error.
pub fn stdout_failed(e: io::Error) -> super::AppResult {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return Ok(());
    }
    Err(anyhow::anyhow!("cannot write the output: {e}").into())
}

/// A progress bar's style: `template` may use `{rate}`, records a second as
/// a whole number with separators (`12,226/s`).
pub(super) fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", indicatif::HumanCount(state.per_sec() as u64));
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_cell_is_cut_and_says_so() {
        let row = serde_json::json!({"a": "x".repeat(5000), "b": "short"});
        let cells = row_cells(&["a", "b"], &row);
        assert_eq!(cells[0].chars().count(), CELL_CHARS + 1);
        assert!(cells[0].ends_with('…'));
        assert_eq!(cells[1], "short");
    }

    #[test]
    fn control_characters_from_a_source_are_escaped() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(escape("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(escape("\u{7f}\u{9b}"), "\\x7f\\x9b");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
        let row = serde_json::json!({"a": "x\u{1b}]0;title\u{7}", "b": 1});
        assert_eq!(row_cells(&["a", "b"], &row), ["x\\x1b]0;title\\x07", "1"]);
    }

    #[test]
    fn a_streamed_table_is_the_whole_table() {
        let rows: Vec<Vec<String>> = (0..2500)
            .map(|i| vec![i.to_string(), "x".repeat(i % 7)])
            .collect();
        let mut t = StreamedTable::new(vec!["n".into(), "xs".into()], Vec::new());
        for r in rows.iter().take(10) {
            t.push(r.clone()).unwrap();
        }
        assert_eq!(
            String::from_utf8(t.finish().unwrap()).unwrap(),
            table(&["n", "xs"], &rows[..10])
        );
        let mut t = StreamedTable::new(vec!["n".into(), "xs".into()], Vec::new());
        for r in &rows {
            t.push(r.clone()).unwrap();
        }
        assert_eq!(t.rows, 2500);
        let out = String::from_utf8(t.finish().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 2 + 2500);
        // Sized by the first rows: a later, wider cell widens its line only.
        assert!(out.lines().nth(2 + 1500).unwrap().starts_with(" 1500 | "));
    }
}
