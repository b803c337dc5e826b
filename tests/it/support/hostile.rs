//! A hostile HTTP/1.1 server on 127.0.0.1: each request is answered by a
//! function that writes raw bytes to the socket (any framing, any pace, or
//! a body that never ends), one request per connection. Every request line
//! is recorded, so a test can count what the source asked for.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the server answers with: gets the request's number (from 0), its
/// request line (`GET /api/?results=… HTTP/1.1`) and the socket. A write
/// error means the client went away: the function just returns.
pub type Answer = dyn Fn(usize, &str, &mut TcpStream) -> std::io::Result<()> + Send + Sync;

/// The running server; it stops accepting when dropped (connections being
/// answered end when their client goes).
pub struct Hostile {
    pub base: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Hostile {
    /// Listens on a free port; ready when this returns (bound and listening).
    pub fn start(
        answer: impl Fn(usize, &str, &mut TcpStream) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let base = format!("http://{}/api/", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let (seen, answer) = (seen.clone(), answer.clone());
                    std::thread::spawn(move || {
                        let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        // The rest of the head; requests here have no body.
                        let mut header = String::new();
                        while reader.read_line(&mut header).unwrap_or(0) > 2 {
                            header.clear();
                        }
                        let n = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(line.trim_end().to_owned());
                            seen.len() - 1
                        };
                        let _ = answer(n, line.trim_end(), &mut conn);
                        let _ = conn.flush();
                    });
                }
            });
        }
        Hostile { base, seen, stop }
    }

    /// The request lines so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(
            self.base
                .trim_start_matches("http://")
                .trim_end_matches("/api/"),
        );
    }
}

/// A response head: status line, `Connection: close`, and `headers`
/// (each `Name: value`).
pub fn head(status: &str, headers: &[&str]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Writes `total` bytes of `x`, 64 KiB at a time, each block a chunk of
/// chunked encoding when `chunked`.
pub fn stream(conn: &mut TcpStream, total: usize, chunked: bool) -> std::io::Result<()> {
    let block = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < total {
        let n = block.len().min(total - sent);
        if chunked {
            write!(conn, "{n:x}\r\n")?;
            conn.write_all(&block[..n])?;
            conn.write_all(b"\r\n")?;
        } else {
            conn.write_all(&block[..n])?;
        }
        sent += n;
    }
    Ok(())
}

/// One chunk of chunked encoding.
pub fn chunk(conn: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    write!(conn, "{:x}\r\n", bytes.len())?;
    conn.write_all(bytes)?;
    conn.write_all(b"\r\n")
}
