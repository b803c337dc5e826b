//! The operator's commands from the outside: `show` fitted to the
//! terminal, dead letters discarded (CLI and API), backfills confirmed,
//! queued runs cancelled, a job's run history paged and one run's events.

mod dlq;
mod jobs;
mod show;

use crate::support::Sandbox;

/// Runs and expects success; stdout.
pub fn ok(s: &Sandbox, args: &[&str]) -> String {
    let out = s.run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pipeline `p` over `records` (NDJSON in the sandbox) into a table of a
/// text key `id` and a text `note`; records marked `"bad": true` are
/// refused by the transform (dead letters of stage `transform`).
pub fn notes_pipeline(s: &Sandbox, records: &str) {
    notes_pipeline_on(s, records, "");
}

/// As [`notes_pipeline`], `extra` in the pipeline's entry (a `log`).
pub fn notes_pipeline_on(s: &Sandbox, records: &str, extra: &str) {
    std::fs::write(s.dir.path().join("p.ndjson"), records).unwrap();
    s.config(&format!(
        r#"
[[pipelines]]
name = "p"
source = {{ file = "p.ndjson" }}
{extra}
transform = '''
if .bad == true {{ abort "refused as bad" }}
del(.bad)
'''
table = {{ key = ["id"], columns = {{ id = "text", note = "text", who = "text" }} }}
"#
    ));
}
