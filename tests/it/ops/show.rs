//! `show` fits its lines to the terminal's width; `--wide` shows cells whole.

use super::{notes_pipeline, ok};
use crate::support::Sandbox;

fn long_notes(s: &Sandbox) -> String {
    let note = "n".repeat(300);
    let records: String = (0..5)
        .map(|i| {
            format!(
                "{{\"id\":\"id-{i}\",\"note\":\"{note}\",\"who\":\"{}\"}}\n",
                "w".repeat(90)
            )
        })
        .collect();
    notes_pipeline(s, &records);
    ok(s, &["run"]);
    note
}

#[test]
fn show_fits_columns_and_wide_shows_every_cell_whole() {
    let s = Sandbox::new();
    let note = long_notes(&s);
    let out = s.cmd(&["show"]).env("COLUMNS", "80").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(5 rows)"), "{text}");
    assert!(text.contains('…'), "{text}");
    assert!(text.contains("id-4"), "{text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} chars: {line}",
            line.chars().count()
        );
    }

    let out = s
        .cmd(&["show", "--wide"])
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('…'), "{text}");
    assert_eq!(text.matches(note.as_str()).count(), 5, "{text}");
}

/// Not a terminal and no COLUMNS: the output goes to a program or a file,
/// which gets every cell (as `kubectl get` and `ls` do).
#[test]
fn show_into_a_pipe_prints_cells_whole() {
    let s = Sandbox::new();
    let note = long_notes(&s);
    let out = s.cmd(&["show"]).env_remove("COLUMNS").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(note.as_str()).count(), 5, "{text}");
}
