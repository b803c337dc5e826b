//! Every metric recorded is declared, and every declared one is described.

use std::collections::HashSet;
use std::path::Path;

use super::*;

/// This file, whose macro names are the scan's own.
const THIS_FILE: &str = "telemetry/metrics/tests.rs";

/// The text of every `.rs` file under `dir`, with its path.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(THIS_FILE) {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

/// The string literal a metric macro's invocation starts with, for each
/// `counter!(`, `gauge!(` and `histogram!(` in `text` (the `describe_*`
/// macros included); `None` where it names the metric otherwise.
fn literal_names(text: &str) -> Vec<(usize, Option<String>)> {
    let mut found = Vec::new();
    for mac in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in text.match_indices(mac) {
            let line = text[..at].matches('\n').count() + 1;
            let arg = text[at + mac.len()..].trim_start();
            let name = arg
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .map(|(name, _)| name.to_owned());
            found.push((line, name));
        }
    }
    found
}

#[test]
fn every_metric_is_named_by_its_declaration() {
    let declared: HashSet<&str> = ALL.iter().map(|m| m.name).collect();
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 50, "the sources were read");
    let mut invocations = 0;
    let mut undeclared = Vec::new();
    for (path, text) in &files {
        for (line, name) in literal_names(text) {
            invocations += 1;
            if let Some(name) = name {
                let what = if declared.contains(name.as_str()) {
                    "declared: use the declaration's name"
                } else {
                    "not declared"
                };
                undeclared.push(format!("{path}:{line}: {name} ({what})"));
            }
        }
    }
    assert!(invocations > 10, "the metric macros were found");
    assert!(
        undeclared.is_empty(),
        "metrics named by a string, not by their declaration in src/telemetry/metrics.rs:\n{}",
        undeclared.join("\n")
    );
}

#[test]
fn the_scan_sees_a_string_name() {
    let text = "x\n metrics::counter!(\n  \"tributary_new_total\", \"a\" => b).increment(1);\n gauge!(X.name)";
    assert_eq!(
        literal_names(text),
        [(2, Some("tributary_new_total".to_owned())), (4, None)]
    );
}

#[test]
fn names_are_unique_and_follow_the_pattern() {
    let mut seen = HashSet::new();
    for m in ALL {
        assert!(seen.insert(m.name), "{} declared twice", m.name);
        let parts: Vec<&str> = m.name.split('_').collect();
        assert!(parts.len() >= 4 && parts[0] == "tributary", "{}", m.name);
        assert!(
            m.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{}",
            m.name
        );
        let unit_fits = match m.unit {
            Unit::Seconds => m.name.ends_with("_seconds"),
            Unit::Bytes => m.name.ends_with("_bytes"),
            _ => !m.name.ends_with("_seconds") && !m.name.ends_with("_bytes"),
        };
        assert!(unit_fits, "{}: unit {:?}", m.name, m.unit);
        assert_eq!(
            m.kind == Kind::Counter,
            m.name.ends_with("_total"),
            "{}: a counter's name, and only a counter's, ends in _total",
            m.name
        );
        assert!(!m.help.is_empty(), "{} has no help text", m.name);
    }
}

#[test]
fn every_declared_metric_is_described() {
    let recorder = super::super::prometheus::recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        super::super::prometheus::describe();
        for m in ALL {
            match m.kind {
                Kind::Counter => metrics::counter!(m.name).increment(1),
                Kind::Gauge => metrics::gauge!(m.name).set(1.0),
                Kind::Histogram => metrics::histogram!(m.name).record(1.0),
            }
        }
    });
    let text = handle.render();
    for m in ALL {
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# HELP {} {}\n", m.name, m.help)),
            "{} is not described:\n{text}",
            m.name
        );
        assert!(
            text.contains(&format!("# TYPE {} {kind}\n", m.name)),
            "{} is not a {kind}:\n{text}",
            m.name
        );
    }
}
