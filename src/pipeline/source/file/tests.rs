//! Tests of the file source: NDJSON with bad lines, JSON arrays with hard
//! strings and nesting, paging, streaming, and broken arrays.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;

fn write(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content).unwrap();
    f.flush().unwrap();
    f
}

fn open(file: &tempfile::NamedTempFile, page_size: usize) -> FileSource {
    let mut config = FileConfig::new(file.path());
    config.page_size = page_size;
    FileSource::open(&config).unwrap()
}

fn drain(source: &mut FileSource) -> Vec<JsonPage> {
    let mut pages = Vec::new();
    while let Some(page) = source.next_page().unwrap() {
        assert_eq!(page.number, pages.len() as u64 + 1);
        pages.push(page);
    }
    pages
}

fn ids(pages: &[JsonPage]) -> Vec<u64> {
    pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn ndjson_bad_lines_are_rejected_with_their_line_numbers() {
    let file = write(b"\n{\"id\":1}\n\n{\"id\":2}\r\nnot json\r\n[1,2]\n  \n{\"id\":3}");
    let mut source = open(&file, 10);
    assert_eq!(source.format(), FileFormat::Ndjson);
    let pages = drain(&mut source);
    assert_eq!(pages.len(), 1);
    assert_eq!(ids(&pages), [1, 2, 3]);
    let name = file.path().display().to_string();
    assert_eq!(pages[0].position, format!("{name}#lines=2-8"));
    let rejected = &pages[0].rejected;
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].raw, b"not json");
    assert_eq!(rejected[0].position, format!("{name}#line=5"));
    assert!(
        rejected[0].reason.starts_with("line 5 is not JSON"),
        "{}",
        rejected[0].reason
    );
    assert_eq!(rejected[1].raw, b"[1,2]");
    assert_eq!(rejected[1].reason, "line 6 is an array, not an object");
}

#[test]
fn ndjson_larger_than_a_page_comes_in_pages() {
    let lines: String = (1..=25).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    let file = write(lines.as_bytes());
    let mut source = open(&file, 10);
    let pages = drain(&mut source);
    let sizes: Vec<usize> = pages.iter().map(|p| p.records.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(ids(&pages), (1..=25).collect::<Vec<_>>());
    assert!(
        pages[1].position.ends_with("#lines=11-20"),
        "{}",
        pages[1].position
    );
    assert!(
        pages[2].position.ends_with("#lines=21-25"),
        "{}",
        pages[2].position
    );
}

#[test]
fn an_ndjson_line_over_the_limit_is_rejected_and_reading_goes_on() {
    let long = format!("{{\"id\":2,\"pad\":\"{}\"}}", "x".repeat(10_000));
    let file = write(format!("{{\"id\":1}}\n{long}\n{{\"id\":3}}\n").as_bytes());
    let mut config = FileConfig::new(file.path());
    config.max_record_bytes = 1000;
    let mut source = FileSource::open(&config).unwrap();
    let pages = drain(&mut source);
    assert_eq!(ids(&pages), [1, 3]);
    let r = &pages[0].rejected[0];
    assert!(
        r.reason.contains("line 2 is over the 1000-byte limit"),
        "{}",
        r.reason
    );
    assert_eq!(r.raw, long.as_bytes()[..1000]);
}

#[test]
fn a_json_array_file_gives_its_elements_in_order() {
    let file = write(
        br#"  [ {"id":1}, 2 ,{"id":3,"s":"a,]\"}[{"},
            {"id":4,"nested":[1,{"x":"]"}],"o":{}} , "five", {"id":6} ]
        "#,
    );
    let mut source = open(&file, 2);
    assert_eq!(source.format(), FileFormat::Array);
    let pages = drain(&mut source);
    assert_eq!(pages.len(), 3);
    assert_eq!(ids(&pages), [1, 3, 4, 6]);
    assert_eq!(pages[0].records[0], json!({"id": 1}));
    assert_eq!(pages[0].records.len() + pages[0].rejected.len(), 2);
    assert_eq!(pages[1].records[0]["s"], "a,]\"}[{");
    assert_eq!(pages[1].records[1]["nested"], json!([1, {"x": "]"}]));
    let name = file.path().display().to_string();
    assert_eq!(pages[2].position, format!("{name}#elements=5-6"));
    let rejected: Vec<_> = pages.iter().flat_map(|p| &p.rejected).collect();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].raw, b"2");
    assert_eq!(rejected[0].reason, "element 2 is a number, not an object");
    assert_eq!(rejected[1].position, format!("{name}#element=5"));
}

#[test]
fn empty_files_and_empty_arrays_have_no_pages() {
    for content in [&b""[..], b"  \n\n ", b"[]", b" [ ]\n", b"\xEF\xBB\xBF[]"] {
        let file = write(content);
        let mut source = open(&file, 10);
        assert!(source.next_page().unwrap().is_none(), "{content:?}");
    }
    let file = write(b"\xEF\xBB\xBF[{\"id\":7}]");
    assert_eq!(ids(&drain(&mut open(&file, 10))), [7]);
}

#[test]
fn a_broken_array_is_an_error_after_the_elements_before_it() {
    for (content, good, broken_at) in [
        (&b"[{\"id\":1},,{\"id\":2}]"[..], 1, 2),
        (b"[{\"id\":1} {\"id\":2}]", 1, 2),
        (b"[{\"id\":1},]", 1, 2),
        (b"[{\"id\":1},{\"id\":2}", 2, 3),
        (b"[{\"id\":1}] {\"id\":2}", 1, 2),
        (b"[{\"id\":1},{\"id\":}]", 1, 2),
        (b"[,{\"id\":1}]", 0, 1),
    ] {
        let file = write(content);
        let mut source = open(&file, 1);
        let mut seen = 0;
        let err = loop {
            match source.next_page() {
                Ok(Some(_)) => seen += 1,
                Ok(None) => panic!("{:?} read to the end", String::from_utf8_lossy(content)),
                Err(e) => break e,
            }
        };
        let shown = String::from_utf8_lossy(content);
        assert_eq!(seen, good, "{shown}: {err}");
        assert!(
            matches!(err, FileSourceError::Malformed { element, .. } if element == broken_at),
            "{shown}: {err}"
        );
        assert!(
            source.next_page().unwrap().is_none(),
            "spent after an error"
        );
    }
}

#[test]
fn an_array_element_over_the_limit_is_an_error() {
    let file = write(format!("[{{\"id\":1}},{{\"pad\":\"{}\"}}]", "x".repeat(5000)).as_bytes());
    let mut config = FileConfig::new(file.path());
    config.max_record_bytes = 1000;
    config.page_size = 1;
    let mut source = FileSource::open(&config).unwrap();
    assert_eq!(ids(&[source.next_page().unwrap().unwrap()]), [1]);
    let err = source.next_page().unwrap_err();
    assert!(
        err.to_string().contains("over the 1000-byte limit"),
        "{err}"
    );
}

/// A reader that counts what was taken from it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicUsize>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

fn counting(content: Vec<u8>) -> (Box<dyn BufRead + Send>, Arc<AtomicUsize>) {
    let read = Arc::new(AtomicUsize::new(0));
    let inner = Counting {
        inner: io::Cursor::new(content),
        read: read.clone(),
    };
    (Box::new(BufReader::with_capacity(8 << 10, inner)), read)
}

#[test]
fn a_large_array_is_streamed_not_loaded() {
    let records = 100_000;
    let mut content = b"[".to_vec();
    for i in 1..=records {
        if i > 1 {
            content.push(b',');
        }
        content.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user {i}\"}}").as_bytes());
    }
    content.push(b']');
    let total = content.len();
    assert!(total > 3_000_000);
    let (input, read) = counting(content);
    let mut source = FileSource::from_reader(input, "big.json".into(), 100, 1 << 20).unwrap();
    let first = source.next_page().unwrap().unwrap();
    assert_eq!(first.records.len(), 100);
    let after_first = read.load(Ordering::Relaxed);
    assert!(
        after_first < 64 << 10,
        "{after_first} of {total} bytes read for one page"
    );
    let mut count = first.records.len();
    let mut last = 0;
    while let Some(page) = source.next_page().unwrap() {
        count += page.records.len();
        last = page.records.last().unwrap()["id"].as_u64().unwrap();
    }
    assert_eq!(
        (count, last, source.pages()),
        (records, records as u64, 1000)
    );
    assert_eq!(read.load(Ordering::Relaxed), total);
}

#[test]
fn large_ndjson_is_streamed_not_loaded() {
    let content: Vec<u8> = (1..=100_000)
        .flat_map(|i| format!("{{\"id\":{i}}}\n").into_bytes())
        .collect();
    let total = content.len();
    let (input, read) = counting(content);
    let mut source = FileSource::from_reader(input, "big.ndjson".into(), 100, 1 << 20).unwrap();
    source.next_page().unwrap().unwrap();
    let after_first = read.load(Ordering::Relaxed);
    assert!(
        after_first < 64 << 10,
        "{after_first} of {total} bytes read"
    );
}

#[test]
fn settings_are_checked() {
    let mut config = FileConfig::new("/nonexistent/x.json");
    config.page_size = 0;
    assert!(matches!(
        FileSource::open(&config),
        Err(FileSourceError::Invalid {
            field: "page_size",
            ..
        })
    ));
    config.page_size = 1;
    let err = FileSource::open(&config).unwrap_err();
    assert!(matches!(err, FileSourceError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/x.json"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_fifo_or_a_directory_is_refused_at_once_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("records.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // Opening a FIFO with no writer would block this thread for good: the
    // open runs on its own thread, and the test waits a bounded time.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(FileSource::open(&FileConfig::new(path)).map(|_| ()));
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("opening a FIFO returns instead of waiting for a writer")
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let Err(err) = FileSource::open(&FileConfig::new(dir.path())) else {
        panic!("a directory is refused");
    };
    assert!(err.to_string().contains("a directory"), "{err}");
}

#[test]
fn an_ndjson_page_of_large_records_ends_at_its_byte_budget() {
    // 20 records of 1 MiB: 1,000 a page by count, but a page ends once its
    // lines hold 8 MiB.
    let mut content = Vec::new();
    for id in 0..20 {
        content.extend(format!("{{\"id\":{id},\"note\":\"{}\"}}\n", "n".repeat(1 << 20)).bytes());
    }
    let file = write(&content);
    let mut source = open(&file, 1000);
    let pages = drain(&mut source);
    assert_eq!(
        pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(),
        [8, 8, 4]
    );
    assert_eq!(ids(&pages), (0..20).collect::<Vec<u64>>());
}
