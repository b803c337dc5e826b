//! The `jobs` commands on a job's runs: `runs` (pages, and one run with
//! its lines), `backfill` (counted, then confirmed when large) and
//! `cancel` (queued runs only).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::jobs::{find, fmt_ms};
use super::{AppError, AppResult};
use crate::config::Config;
use crate::scheduler::history::Cancelled;
use crate::scheduler::{History, RunState};

/// A backfill of more runs than this asks first (or wants `--yes`).
pub const CONFIRM_ABOVE: usize = 100;
/// The most runs one `jobs backfill` queues.
const MAX_BACKFILL: usize = 10_000;

/// `jobs runs NAME [--limit N] [--before RUN] [--run RUN] [--json]`.
pub fn runs(
    config: &Config,
    history: &History,
    name: &str,
    limit: u64,
    before: Option<i64>,
    run: Option<i64>,
    json: bool,
) -> AppResult {
    find(config, name)?;
    if let Some(id) = run {
        return one_run(history, name, id, json);
    }
    let page = history
        .runs_page(name, limit as usize, before)
        .context("cannot read runs")?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&page.runs).expect("runs serialise")
        );
        return Ok(());
    }
    for r in &page.runs {
        println!(
            "#{:<5} {:<11} scheduled {} started {} ended {} attempts {} fetched {} logged {} failed {} skipped ticks {}{}",
            r.id,
            r.state.as_str(),
            fmt_ms(Some(r.scheduled_ms)),
            fmt_ms(r.started_ms),
            fmt_ms(r.ended_ms),
            r.attempts,
            r.counts.fetched,
            r.counts.logged,
            r.counts.failed,
            r.counts.ticks_skipped,
            r.error
                .as_ref()
                .map(|e| format!(" error: {}", super::table::escape(e)))
                .unwrap_or_default()
        );
    }
    if let Some(b) = page.next_before {
        println!("older runs: tributary jobs runs {name} --before {b}");
    }
    Ok(())
}

fn one_run(history: &History, name: &str, id: i64, json: bool) -> AppResult {
    let Some((r, events)) = history
        .run_with_events(name, id)
        .context("cannot read the run")?
    else {
        return Err(AppError::Failed(anyhow::anyhow!(
            "no run #{id} of {name} (tributary jobs runs {name} lists them)"
        )));
    };
    if json {
        let mut v = serde_json::to_value(&r).expect("run serialises");
        v["events"] = serde_json::to_value(&events).expect("events serialise");
        println!("{v}");
        return Ok(());
    }
    println!("run #{} of {}: {}", r.id, r.job, r.state.as_str());
    println!(
        "scheduled {}  started {}  ended {}  attempts {}",
        fmt_ms(Some(r.scheduled_ms)),
        fmt_ms(r.started_ms),
        fmt_ms(r.ended_ms),
        r.attempts
    );
    println!(
        "fetched {}  logged {}  failed {}  skipped ticks {}",
        r.counts.fetched, r.counts.logged, r.counts.failed, r.counts.ticks_skipped
    );
    if let Some(e) = &r.error {
        println!("error: {}", super::table::escape(e));
    }
    if events.is_empty() {
        println!("(no lines: the run is older than run lines)");
    }
    for e in &events {
        let at = DateTime::<Utc>::from_timestamp_millis(e.at_ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        println!("  {at}  {}", super::table::escape(&e.text));
    }
    Ok(())
}

/// Whether a backfill of `n` runs goes ahead: at once up to
/// [`CONFIRM_ABOVE`] or with `--yes`; above it, asked on a terminal, and
/// refused (exit 2) without one.
fn confirmed(n: usize, yes: bool, terminal: bool, ask: impl FnOnce() -> bool) -> AppResult<bool> {
    if n <= CONFIRM_ABOVE || yes {
        return Ok(true);
    }
    if !terminal {
        return Err(AppError::Usage(format!(
            "this backfill queues {n} runs (more than {CONFIRM_ABOVE}): give --yes to queue them \
             without a terminal to confirm on"
        )));
    }
    Ok(ask())
}

/// Asks on stderr, reads a line of stdin: yes only for `y` or `yes`.
fn ask(question: &str, input: impl BufRead, mut out: impl Write) -> bool {
    let _ = write!(out, "{question} [y/N] ");
    let _ = out.flush();
    let mut line = String::new();
    let mut input = input;
    if input.read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `jobs backfill NAME --from --to [--yes]`.
pub fn backfill(
    config: &Config,
    history: &History,
    name: &str,
    from: &str,
    to: &str,
    yes: bool,
) -> AppResult {
    let job = find(config, name)?;
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| AppError::Usage(format!("{s:?} is not an RFC 3339 time: {e}")))
    };
    let (from, to) = (parse(from)?, parse(to)?);
    if from >= to {
        return Err(AppError::Usage(format!(
            "--from {from} is not before --to {to}: a backfill queues the slots after \
             --from up to --to"
        )));
    }
    // A slot still to come is the schedule's to run, when it comes: queued
    // now, it would run early and then count as done.
    let now = Utc::now();
    if to > now {
        return Err(AppError::Usage(format!(
            "--to {to} is in the future (now {}): a backfill queues past slots \
             only; the schedule runs the later ones when they come",
            now.format("%Y-%m-%dT%H:%M:%SZ")
        )));
    }
    // Counted before anything is queued, and never past the cap: a year of
    // `@every 10ms` is three billion slots.
    let n = job
        .schedule
        .slots_between(from, to)
        .take(MAX_BACKFILL + 1)
        .count();
    if n > MAX_BACKFILL {
        return Err(AppError::Usage(format!(
            "{name}: more than {MAX_BACKFILL} slots between {from} and {to}; \
             a backfill queues at most {MAX_BACKFILL} runs: narrow --from/--to"
        )));
    }
    // A slot that already has a run (an earlier backfill, the schedule's
    // own, a cancelled one) is not queued again.
    let mut slots = Vec::new();
    for slot in job.schedule.slots_between(from, to) {
        let ms = slot.timestamp_millis();
        if !history
            .has_run(name, ms)
            .context("cannot read the run history")?
        {
            slots.push(ms);
        }
    }
    println!(
        "{name}: {} run(s) to queue, one per slot ({} of the {n} slots have a run)",
        slots.len(),
        n - slots.len()
    );
    let terminal = std::io::stdin().is_terminal();
    let go = confirmed(slots.len(), yes, terminal, || {
        ask(
            &format!("queue {} runs of {name}?", slots.len()),
            std::io::stdin().lock(),
            std::io::stderr(),
        )
    })?;
    if !go {
        println!("nothing queued");
        return Ok(());
    }
    for ms in &slots {
        history
            .add(name, *ms, RunState::Queued)
            .context("cannot queue a run")?;
    }
    println!(
        "queued {} run(s) of {name}, one per slot ({} of the {n} slots had a run)",
        slots.len(),
        n - slots.len()
    );
    Ok(())
}

/// `jobs cancel NAME --run RUN | --queued`.
pub fn cancel(
    config: &Config,
    history: &History,
    name: &str,
    run: Option<i64>,
    queued: bool,
) -> AppResult {
    find(config, name)?;
    const WHY: &str = "cancelled before it started (jobs cancel)";
    let n = match run {
        Some(id) if !queued => match history
            .cancel_run(name, id, WHY)
            .context("cannot cancel the run")?
        {
            Cancelled::Runs(n) => n,
            Cancelled::NotFound => {
                return Err(AppError::Failed(anyhow::anyhow!(
                    "no run #{id} of {name} (tributary jobs runs {name} lists them)"
                )));
            }
            Cancelled::NotQueued(RunState::Running) => {
                return Err(AppError::Failed(anyhow::anyhow!(
                    "run #{id} of {name} is running: only queued runs are cancelled \
                     (stopping serve interrupts a running run)"
                )));
            }
            Cancelled::NotQueued(state) => {
                return Err(AppError::Failed(anyhow::anyhow!(
                    "run #{id} of {name} is {}, not queued: nothing to cancel",
                    state.as_str()
                )));
            }
        },
        _ => history
            .cancel_queued(name, WHY)
            .context("cannot cancel runs")?,
    };
    println!("cancelled {n} queued run(s) of {name}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_backfill_is_confirmed_or_refused_without_a_terminal() {
        let never = || panic!("not asked");
        assert!(confirmed(CONFIRM_ABOVE, false, false, never).unwrap());
        assert!(confirmed(5000, true, false, never).unwrap());
        let e = confirmed(CONFIRM_ABOVE + 1, false, false, never).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--yes"), "{e}");
        assert!(confirmed(500, false, true, || true).unwrap());
        assert!(!confirmed(500, false, true, || false).unwrap());
    }

    #[test]
    fn only_yes_says_yes() {
        let mut shown = Vec::new();
        assert!(ask("queue 500 runs?", &b"y\n"[..], &mut shown));
        assert_eq!(String::from_utf8(shown).unwrap(), "queue 500 runs? [y/N] ");
        assert!(ask("q", &b" YES \n"[..], Vec::new()));
        for no in [&b"\n"[..], b"n\n", b"sure\n", b""] {
            assert!(!ask("q", no, Vec::new()));
        }
    }
}
