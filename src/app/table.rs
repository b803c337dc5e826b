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
            || matches!(
                c,
                // Direction marks and embeddings, zero-width characters,
                // line and paragraph separators: invisible or moving text.
                '\u{061c}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{feff}'
            )
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

/// The columns a cell takes on a terminal: a CJK character or an emoji
/// two, a combining mark none.
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
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

/// The width in characters a table's lines must fit, like `kubectl get`
/// and `ls`: `COLUMNS` when it is set to a number, else the terminal's
/// width when stdout is one (80 when it cannot be read); `None`, every
/// cell in full, when stdout is not a terminal (a pipe, a file).
pub fn terminal_columns() -> Option<usize> {
    columns_from(
        std::env::var("COLUMNS").ok().as_deref(),
        io::IsTerminal::is_terminal(&io::stdout()),
        tty_columns,
    )
}

fn columns_from(
    env: Option<&str>,
    is_tty: bool,
    tty: impl FnOnce() -> Option<usize>,
) -> Option<usize> {
    if let Some(n) = env.and_then(|v| v.trim().parse::<usize>().ok())
        && n > 0
    {
        return Some(n);
    }
    is_tty.then(|| tty().unwrap_or(80))
}

/// The width of the terminal on stdout, as the kernel knows it.
fn tty_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given,
    // which lives for the call.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Column widths narrowed so that a table's longest line (its rule: two
/// characters more than the cells and ` | ` separators) fits `columns`:
/// the widest columns are cut first, to a common width, and narrow ones
/// stay whole. A column keeps at least one character (its `…`), so a table
/// of more columns than the width can hold still overflows.
pub fn fit(widths: &[usize], columns: usize) -> Vec<usize> {
    let n = widths.len();
    if n == 0 {
        return Vec::new();
    }
    let room = columns.saturating_sub(3 * (n - 1) + 2);
    if widths.iter().sum::<usize>() <= room {
        return widths.to_vec();
    }
    // The largest common cap that fits.
    let total = |cap: usize| widths.iter().map(|&w| w.min(cap)).sum::<usize>();
    let (mut lo, mut hi) = (1, widths.iter().copied().max().unwrap_or(1));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if total(mid) <= room {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let cap = lo;
    let mut fitted: Vec<usize> = widths.iter().map(|&w| w.min(cap)).collect();
    // Share what the common cap leaves over with the first cut columns.
    let mut spare = room.saturating_sub(total(cap));
    for (f, &w) in fitted.iter_mut().zip(widths) {
        if spare == 0 {
            break;
        }
        if w > *f {
            let more = (w - *f).min(spare);
            *f += more;
            spare -= more;
        }
    }
    fitted
}

/// `cell` cut to `width` characters, its last one `…` when anything was cut.
pub fn clip(cell: &str, columns: usize) -> std::borrow::Cow<'_, str> {
    if width(cell) <= columns {
        return cell.into();
    }
    // Whole characters that fit in one column less, then the ellipsis.
    let room = columns.saturating_sub(1);
    let mut used = 0;
    let mut keep = String::new();
    for c in cell.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > room {
            break;
        }
        used += w;
        keep.push(c);
    }
    format!("{keep}…").into()
}

/// A table written as its rows come: the first [`WIDTH_ROWS`] are held to
/// size the columns, the rest written at once. With a width to fit
/// ([`StreamedTable::fitting`]), cells longer than their column are cut.
pub struct StreamedTable<W: Write> {
    header: Vec<String>,
    out: W,
    held: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    columns: Option<usize>,
    pub rows: u64,
}

impl<W: Write> StreamedTable<W> {
    /// Every cell in full: a wider cell widens its column (or, past the
    /// first rows, its line).
    pub fn new(header: Vec<String>, out: W) -> Self {
        StreamedTable {
            header,
            out,
            held: Vec::new(),
            widths: None,
            columns: None,
            rows: 0,
        }
    }

    /// Lines fit `columns` characters when given (see [`fit`]).
    pub fn fitting(mut self, columns: Option<usize>) -> Self {
        self.columns = columns;
        self
    }

    fn clipped(&self, row: Vec<String>, widths: &[usize]) -> Vec<String> {
        if self.columns.is_none() {
            return row;
        }
        row.into_iter()
            .zip(widths)
            .map(|(c, &w)| match clip(&c, w) {
                std::borrow::Cow::Borrowed(_) => c,
                std::borrow::Cow::Owned(cut) => cut,
            })
            .collect()
    }

    pub fn push(&mut self, row: Vec<String>) -> io::Result<()> {
        self.rows += 1;
        match &self.widths {
            Some(w) => {
                let Some(columns) = self.columns else {
                    return self.out.write_all(line(&row, w).as_bytes());
                };
                // A wider cell widens its line while the line still fits;
                // past that the row is fitted on its own.
                let wider: Vec<usize> = w.iter().zip(&row).map(|(&w, c)| w.max(width(c))).collect();
                let w = fit(&wider, columns);
                let row = self.clipped(row, &w);
                self.out.write_all(line(&row, &w).as_bytes())
            }
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
        let mut w = widths(&header, &self.held);
        if let Some(columns) = self.columns {
            w = fit(&w, columns);
        }
        let names = self.clipped(self.header.clone(), &w);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.out.write_all(head(&names, &w).as_bytes())?;
        for row in std::mem::take(&mut self.held) {
            let row = self.clipped(row, &w);
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
    fn cjk_emoji_and_combining_cells_fit_by_display_width() {
        let header = ["id", "name", "note"].map(String::from).to_vec();
        let mut t = StreamedTable::new(header, Vec::new()).fitting(Some(60));
        for i in 0..3 {
            t.push(vec![
                i.to_string(),
                "张伟".repeat(30),
                format!("{}{}", "e\u{301}".repeat(20), "🙂".repeat(20)),
            ])
            .unwrap();
        }
        let out = String::from_utf8(t.finish().unwrap()).unwrap();
        for l in out.lines() {
            assert!(width(l) <= 60, "{} columns: {l}", width(l));
        }
        // The separators line up: a CJK cell cut to its column's width.
        let bars: Vec<Vec<usize>> = out
            .lines()
            .skip(2)
            .map(|l| {
                let mut at = 0;
                let mut cols = Vec::new();
                for c in l.chars() {
                    if c == '|' {
                        cols.push(at);
                    }
                    at += unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
                }
                cols
            })
            .collect();
        assert!(bars.windows(2).all(|w| w[0] == w[1]), "{out}");
        assert_eq!(clip("张伟张伟", 4), "张…");
        assert_eq!(escape("a\u{200b}b\u{2028}"), "a\\u{200b}b\\u{2028}");
    }

    #[test]
    fn a_fitted_table_has_no_line_wider_than_the_terminal() {
        let header = ["id", "name", "email", "about"].map(String::from).to_vec();
        let mut t = StreamedTable::new(header, Vec::new()).fitting(Some(80));
        for i in 0..1500 {
            t.push(vec![
                i.to_string(),
                "Ann".into(),
                "x".repeat(40 + i % 3),
                "é".repeat(200),
            ])
            .unwrap();
        }
        let out = String::from_utf8(t.finish().unwrap()).unwrap();
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert_eq!(out.lines().map(|l| l.chars().count()).max(), Some(80));
        let first = out.lines().nth(2).unwrap();
        assert!(first.starts_with(" 0   | Ann  | "), "{first}");
        assert!(first.contains('…'), "{first}");
        // A later, wider id widens its line, which still fits.
        let later = out.lines().nth(2 + 1400).unwrap();
        assert!(later.starts_with(" 1400 | Ann  | "), "{later}");
        assert!(later.chars().count() <= 80, "{later}");
    }

    #[test]
    fn fit_cuts_the_widest_columns_first() {
        assert_eq!(fit(&[2, 3], 80), [2, 3]);
        // 3 columns: 2 separators (6) and the rule's 2 leave 22.
        assert_eq!(fit(&[2, 50, 50], 30), [2, 10, 10]);
        assert_eq!(fit(&[2, 50, 9], 30), [2, 11, 9]);
        assert_eq!(fit(&[5, 5, 5], 4), [1, 1, 1]);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abcd", 4), "abcd");
    }

    #[test]
    fn columns_come_from_the_environment_then_the_terminal() {
        assert_eq!(columns_from(Some("100"), false, || None), Some(100));
        assert_eq!(columns_from(Some("junk"), false, || Some(120)), None);
        assert_eq!(columns_from(None, true, || Some(120)), Some(120));
        assert_eq!(columns_from(None, true, || None), Some(80));
        assert_eq!(columns_from(Some("0"), true, || None), Some(80));
    }

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
