//! The examples and notes shown after the help of the operator's commands
//! (`show`, `dlq list`, `dlq discard`, `jobs runs`, `jobs backfill`, `jobs cancel`).

pub const SHOW_AFTER_HELP: &str = "\
Examples:
  tributary show                     10 rows, each line fitting the terminal
  tributary show --limit 50 --wide   every cell in full (up to 1024 characters)
  tributary show --json | jq .email  one JSON object per row, values whole
  COLUMNS=120 tributary show         fit 120 columns

Width: on a terminal, cells longer than their column are cut with `…` so
that every line fits its width (COLUMNS when set, else the terminal's).
When stdout is not a terminal (a pipe, a file) and COLUMNS is not set,
cells are printed in full, as with --wide.";

pub const DLQ_LIST_AFTER_HELP: &str = "\
Examples:
  tributary dlq list                     the waiting letters (what a replay takes)
  tributary dlq list --all               every letter, replayed and discarded too
  tributary dlq list --discarded         only the discarded ones, with when and why
  tributary dlq list --json | jq .reason";

pub const DLQ_DISCARD_AFTER_HELP: &str = "\
Examples:
  tributary dlq discard --id 12 --id 13 --reason \"test records\"
  tributary dlq discard --all --reason \"upstream sent v0 records, fixed in v2\"
  tributary dlq list --discarded          what was discarded, when and why

A discarded letter is kept for audit, marked with the time and the reason:
it no longer counts as waiting, `dlq replay` never takes it (asked for by id,
it names it and exits 1), and `dlq list` shows it with --discarded or --all.
--all needs --reason; with --id a reason is optional but recommended.
An id that names no dead letter, or one already replayed, is named and the
command exits 1 (the others are discarded); an id discarded before is left
as it was.

On the embedded log the first discard raises the file's log schema, so an
older tributary refuses the file rather than replay discarded letters.";

pub const JOBS_RUNS_AFTER_HELP: &str = "\
Examples:
  tributary jobs runs random_users                 the 20 newest runs
  tributary jobs runs random_users --before 120    the page of runs older than #120
  tributary jobs runs random_users --run 118       run #118 and what it did
  tributary jobs runs random_users --json | jq '.[0].state'

States: queued, running, success, failed, skipped (a slot that came due
during a run), interrupted (serve stopped during the run), cancelled.";

pub const JOBS_BACKFILL_AFTER_HELP: &str = "\
Examples:
  tributary jobs backfill random_users --from 2026-11-01T00:00:00Z --to 2026-11-02T00:00:00Z
  tributary jobs backfill random_users --from 2026-10-01T00:00:00Z --to 2026-11-01T00:00:00Z --yes

It says how many runs it will queue (a slot that has a run already is not
queued again). Above 100 runs it asks first on a terminal; without a
terminal (a script, CI) it refuses with exit 2 unless --yes is given.
At most 10,000 runs at once. `tributary jobs cancel NAME --queued` takes
back what was queued and has not started.";

pub const JOBS_CANCEL_AFTER_HELP: &str = "\
Examples:
  tributary jobs cancel random_users --run 42      one queued run
  tributary jobs cancel random_users --queued      every queued run (a backfill)

Only queued runs are cancelled: a running run is not stopped (the command
names it and exits 1; stopping `serve` interrupts it). An unknown run id
exits 1. A cancelled run keeps its place in `jobs runs` as cancelled and
its slot counts as handled: no restart of `serve`, schedule or backfill
runs it again.";
