//! A JSON array's elements streamed one after another, its own syntax and
//! each element's size checked on the way.

use std::io::{self, BufRead, Read};

/// Where the scanner is, outside the elements' insides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    BeforeArray,
    /// After `[`: an element or `]`.
    First,
    /// After `,`: an element.
    Value,
    /// Inside a number or `true`/`false`/`null`.
    Scalar,
    /// After an element: `,` or `]`.
    After,
    Done,
}

/// Turns `[a, b, c]` into ` a  b  c ` as it streams, so serde_json's
/// `StreamDeserializer` hands out one element at a time (and can stop between
/// pages). It checks the array's own syntax, which the rewrite would hide
/// (commas, the closing `]`, nothing after it), and the size of each element;
/// serde_json checks the elements.
pub(super) struct ArrayElements<R> {
    inner: R,
    scan: Scanner,
    /// An error found after some bytes were already handed out: it is
    /// returned by the next read, so those bytes are parsed first.
    pending: Option<io::Error>,
}

struct Scanner {
    top: Top,
    /// 1 inside the array, more inside an element.
    depth: u32,
    in_string: bool,
    escape: bool,
    /// Bytes of the current element so far.
    element_bytes: usize,
    max_element_bytes: usize,
}

impl<R: BufRead> ArrayElements<R> {
    pub(super) fn new(inner: R, max_element_bytes: usize) -> Self {
        ArrayElements {
            inner,
            scan: Scanner {
                top: Top::BeforeArray,
                depth: 0,
                in_string: false,
                escape: false,
                element_bytes: 0,
                max_element_bytes,
            },
            pending: None,
        }
    }
}

impl<R: BufRead> Read for ArrayElements<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        if out.is_empty() {
            return Ok(0);
        }
        let input = self.inner.fill_buf()?;
        if input.is_empty() {
            return match self.scan.top {
                Top::Done => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ends before the array's closing ']'",
                )),
            };
        }
        let n = input.len().min(out.len());
        let mut done = 0;
        let mut failed = None;
        for (o, &b) in out[..n].iter_mut().zip(input) {
            match self.scan.step(b) {
                Ok(byte) => {
                    *o = byte;
                    done += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.inner.consume(done);
        match failed {
            Some(e) if done == 0 => Err(e),
            Some(e) => {
                self.pending = Some(e);
                Ok(done)
            }
            None => Ok(done),
        }
    }
}

impl Scanner {
    /// The byte to hand on for `b`: itself, or a space for the array's own
    /// brackets and commas.
    fn step(&mut self, b: u8) -> io::Result<u8> {
        let broken = |what: &str| Err(io::Error::new(io::ErrorKind::InvalidData, what.to_owned()));
        if self.depth >= 1 && !matches!(self.top, Top::After | Top::Done) {
            self.element_bytes += 1;
            if self.element_bytes > self.max_element_bytes {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "an element is over the {}-byte limit",
                        self.max_element_bytes
                    ),
                ));
            }
        }
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 1 {
                    self.top = Top::After;
                }
            }
            return Ok(b);
        }
        if self.depth >= 2 {
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 1 {
                        self.top = Top::After;
                    }
                }
                _ => {}
            }
            return Ok(b);
        }
        let expecting = matches!(self.top, Top::First | Top::Value);
        match (self.top, b) {
            (_, b' ' | b'\t' | b'\n' | b'\r') => {
                if self.top == Top::Scalar {
                    self.top = Top::After;
                }
                Ok(b)
            }
            (Top::BeforeArray, b'[') => {
                self.depth = 1;
                self.top = Top::First;
                self.element_bytes = 0;
                Ok(b' ')
            }
            (Top::BeforeArray, _) => broken("the file does not start with '['"),
            (Top::Done, _) => broken("there is more after the array's closing ']'"),
            (Top::Scalar | Top::After, b',') => {
                self.top = Top::Value;
                self.element_bytes = 0;
                Ok(b' ')
            }
            (_, b',') => broken("a ',' where an element should be"),
            (Top::Value, b']') => broken("a ',' just before the closing ']'"),
            (_, b']') => {
                self.depth = 0;
                self.top = Top::Done;
                Ok(b' ')
            }
            (_, b'}') => broken("a '}' with no '{'"),
            (Top::After, _) => broken("a ',' is missing between two elements"),
            (Top::Scalar, b'{' | b'[' | b'"') => broken("a ',' is missing between two elements"),
            (_, b'{' | b'[') if expecting => {
                self.depth = 2;
                self.top = Top::Scalar;
                // Inside a structure `Scalar` is not consulted; it becomes
                // `After` when the structure closes.
                Ok(b)
            }
            (_, b'"') if expecting => {
                self.in_string = true;
                self.top = Top::Scalar;
                Ok(b)
            }
            _ => {
                self.top = Top::Scalar;
                Ok(b)
            }
        }
    }
}
