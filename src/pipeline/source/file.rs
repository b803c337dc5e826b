//! The file source, for backfills: a file of NDJSON (one record per line) or
//! one JSON array of records, read in pages and streamed, so a file of any
//! size is never in memory at once. Owns format detection, line and element
//! numbering, and the per-record size limit; `array.rs` streams a JSON
//! array's elements.

mod array;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;
use serde_json::de::IoRead;

use self::array::ArrayElements;
use super::json_page::JsonPage;

/// The default limit of one record: the same as an HTTP body's.
pub const DEFAULT_MAX_RECORD_BYTES: usize = super::retry::MAX_BODY_BYTES;

/// An NDJSON page ends at `page_size` records or once its lines hold this
/// many bytes, whichever comes first: a page is held a few times over
/// (parsed, shaped, logged) while the next is read, so pages of large
/// records stay small in memory.
const PAGE_BYTES: usize = 8 << 20;

/// Bytes of an over-long NDJSON line kept in its rejected record: enough to
/// recognise it, without copying a runaway line into the dead letters.
const KEPT_OF_LONG_LINE: usize = 4 << 10;

/// Settings of the file source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    pub path: PathBuf,
    /// Records per page (at least 1).
    pub page_size: usize,
    /// A line or array element longer than this is refused (at least 1).
    pub max_record_bytes: usize,
}

impl FileConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileConfig {
            path: path.into(),
            page_size: 1000,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    pub fn validate(&self) -> Result<(), FileSourceError> {
        let invalid = |field: &'static str| FileSourceError::Invalid {
            field,
            reason: "must be at least 1".into(),
        };
        if self.page_size == 0 {
            return Err(invalid("page_size"));
        }
        if self.max_record_bytes == 0 {
            return Err(invalid("max_record_bytes"));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{name}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The array itself is broken, so nothing after this point can be read.
    #[error("{name}: the JSON array is broken at element {element}: {reason}")]
    Malformed {
        name: String,
        element: u64,
        reason: String,
    },
}

impl FileSourceError {
    /// A file does not get better by reading it again.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// What the first byte that is not white space said the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `[`: one JSON array of records.
    Array,
    /// Anything else: one record per line.
    Ndjson,
    /// Nothing but white space.
    Empty,
}

type Elements = serde_json::StreamDeserializer<
    'static,
    IoRead<BufReader<ArrayElements<Box<dyn BufRead + Send>>>>,
    Value,
>;

enum Reader {
    Lines {
        input: Box<dyn BufRead + Send>,
        /// The number of the last line read (from 1).
        line: u64,
        buf: Vec<u8>,
    },
    Array {
        elements: Box<Elements>,
        /// Elements read so far.
        element: u64,
    },
    Done,
}

/// Reads a file page by page. Its reads block: from async code, call
/// [`FileSource::next_page`] through `spawn_blocking`.
pub struct FileSource {
    name: String,
    format: FileFormat,
    page_size: usize,
    max_record_bytes: usize,
    pages: u64,
    reader: Reader,
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    pub fn open(config: &FileConfig) -> Result<Self, FileSourceError> {
        config.validate()?;
        let name = config.path.display().to_string();
        // Only a regular file: opening a FIFO waits for a writer, and a read
        // from a pipe or a device can wait forever, holding up a shutdown
        // (a blocking read cannot be abandoned); and a pipe's records, once
        // read, are gone if the run stops before logging them.
        let meta = std::fs::metadata(&config.path).map_err(|source| FileSourceError::Io {
            name: name.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(FileSourceError::Io {
                name: name.clone(),
                source: io::Error::other(if meta.is_dir() {
                    "a directory, not a file"
                } else {
                    "not a regular file (a pipe, socket or device): give a file to read"
                }),
            });
        }
        let file = File::open(&config.path).map_err(|source| FileSourceError::Io {
            name: name.clone(),
            source,
        })?;
        Self::from_reader(
            Box::new(BufReader::with_capacity(64 << 10, file)),
            name,
            config.page_size,
            config.max_record_bytes,
        )
    }

    /// Any buffered reader (standard input, a decompressor), named `name` in
    /// positions and errors.
    pub fn from_reader(
        mut input: Box<dyn BufRead + Send>,
        name: String,
        page_size: usize,
        max_record_bytes: usize,
    ) -> Result<Self, FileSourceError> {
        FileConfig {
            path: PathBuf::new(),
            page_size,
            max_record_bytes,
        }
        .validate()?;
        let (format, skipped_lines) = detect(&mut input).map_err(|source| FileSourceError::Io {
            name: name.clone(),
            source,
        })?;
        let reader = match format {
            FileFormat::Empty => Reader::Done,
            FileFormat::Ndjson => Reader::Lines {
                input,
                line: skipped_lines,
                buf: Vec::new(),
            },
            FileFormat::Array => {
                let scanner = ArrayElements::new(input, max_record_bytes);
                let elements = serde_json::Deserializer::from_reader(BufReader::new(scanner))
                    .into_iter::<Value>();
                Reader::Array {
                    elements: Box::new(elements),
                    element: 0,
                }
            }
        };
        Ok(FileSource {
            name,
            format,
            page_size,
            max_record_bytes,
            pages: 0,
            reader,
        })
    }

    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Pages handed out so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next page of up to `page_size` records, `None` at the end. A bad
    /// NDJSON line is a rejected record; a broken array is an error, after
    /// which the source is spent.
    pub fn next_page(&mut self) -> Result<Option<JsonPage>, FileSourceError> {
        let result = match &mut self.reader {
            Reader::Done => return Ok(None),
            Reader::Lines { .. } => self.lines_page(),
            Reader::Array { .. } => self.array_page(),
        };
        match result {
            Ok(Some(page)) => Ok(Some(page)),
            other => {
                self.reader = Reader::Done;
                other
            }
        }
    }

    fn lines_page(&mut self) -> Result<Option<JsonPage>, FileSourceError> {
        let Reader::Lines { input, line, buf } = &mut self.reader else {
            unreachable!("called for NDJSON only")
        };
        let mut page = JsonPage::new(
            self.pages + 1,
            String::new(),
            format!("{}#line=", self.name),
        );
        let mut first = None;
        let mut bytes = 0usize;
        while page.received() < self.page_size && bytes < PAGE_BYTES {
            buf.clear();
            let read = read_line(input, buf, self.max_record_bytes).map_err(|source| {
                FileSourceError::Io {
                    name: self.name.clone(),
                    source,
                }
            })?;
            let too_long = match read {
                LineRead::Eof => break,
                LineRead::Line { too_long } => too_long,
            };
            *line += 1;
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            if !too_long && buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            first.get_or_insert(*line);
            bytes += buf.len();
            let at = *line;
            if too_long {
                buf.truncate(KEPT_OF_LONG_LINE);
                let reason = format!(
                    "line {line} is over the {}-byte limit (its first {} bytes are kept)",
                    self.max_record_bytes,
                    buf.len()
                );
                page.reject(buf.clone(), reason, at);
                continue;
            }
            match serde_json::from_slice::<Value>(buf) {
                Ok(value) => page.push(value, at, || format!("line {at}")),
                Err(e) => {
                    let reason = format!("line {line} is not JSON: {e}");
                    page.reject(buf.clone(), reason, at);
                }
            }
        }
        let Some(first) = first else {
            return Ok(None);
        };
        page.position = format!("{}#lines={first}-{line}", self.name);
        self.pages += 1;
        Ok(Some(page))
    }

    fn array_page(&mut self) -> Result<Option<JsonPage>, FileSourceError> {
        let Reader::Array { elements, element } = &mut self.reader else {
            unreachable!("called for arrays only")
        };
        let mut page = JsonPage::new(
            self.pages + 1,
            String::new(),
            format!("{}#element=", self.name),
        );
        let first = *element + 1;
        while page.received() < self.page_size {
            match elements.next() {
                None => break,
                Some(Ok(value)) => {
                    *element += 1;
                    let element = *element;
                    page.push(value, element, || format!("element {element}"));
                }
                Some(Err(e)) => {
                    return Err(FileSourceError::Malformed {
                        name: self.name.clone(),
                        element: *element + 1,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if page.received() == 0 {
            return Ok(None);
        }
        page.position = format!("{}#elements={first}-{element}", self.name);
        self.pages += 1;
        Ok(Some(page))
    }
}

/// Skips a UTF-8 byte-order mark and leading white space, and says what the
/// first other byte makes the file. Returns the newlines skipped, so NDJSON
/// line numbers stay those of the file.
fn detect(input: &mut dyn BufRead) -> io::Result<(FileFormat, u64)> {
    if input.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
        input.consume(3);
    }
    let mut newlines = 0;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((FileFormat::Empty, newlines));
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                // Only whole buffers of white space are consumed; what is
                // left before the record is harmless to either reader.
                let format = if buf[i] == b'[' {
                    FileFormat::Array
                } else {
                    FileFormat::Ndjson
                };
                return Ok((format, newlines));
            }
            None => {
                newlines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

enum LineRead {
    Eof,
    Line { too_long: bool },
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `cap`
/// bytes; the rest of a longer line is read past, not kept.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok(if any {
                LineRead::Line { too_long }
            } else {
                LineRead::Eof
            });
        }
        any = true;
        let (chunk, used, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap {
                buf.extend_from_slice(&chunk[..cap - buf.len()]);
                too_long = true;
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if ended {
            return Ok(LineRead::Line { too_long });
        }
    }
}

#[cfg(test)]
mod tests;
