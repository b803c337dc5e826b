//! The scheduling commands: `serve` (scheduler + processor in one process),
//! `jobs …` on the stored run history, and `export airflow-dag`.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use super::{AppError, AppResult};
use crate::cli::{ExportCommand, JobsCommand};
use crate::config::Config;
use crate::pipeline;
use crate::pipeline::ingest::IngestPlan;
use crate::pipeline::stats::Stats;
use crate::scheduler::history::now_ms;
use crate::scheduler::{History, JobConfig, RunState, Scheduler};
use crate::{telemetry, web};

fn history(config: &Config) -> AppResult<History> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data dir {} is not usable", config.data_dir.display()))?;
    Ok(History::open(&config.data_dir.join("scheduler.db"))
        .context("cannot open the run history")?)
}

fn find<'a>(config: &'a Config, name: &str) -> AppResult<&'a JobConfig> {
    config.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
        let known: Vec<_> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        AppError::Usage(if known.is_empty() {
            format!("no job {name:?}: the configuration has no [[jobs]]")
        } else {
            format!("no job {name:?}; jobs: {}", known.join(", "))
        })
    })
}

pub async fn serve(config: Config, shutdown: CancellationToken) -> AppResult {
    let history = history(&config)?;
    let stats = Arc::new(Stats::default());
    let job = super::run::open_job(&config, stats.clone(), shutdown.clone()).await?;
    println!(
        "serve: {} job(s); processor following topic {} into {}",
        config.jobs.len(),
        job.log.topic(),
        job.sink.describe()
    );
    let web = match config.web.listen {
        Some(addr) => {
            // Before any stage counts, so /metrics totals start with the
            // process. Without the web side nothing could read them, so no
            // recorder is installed at all then.
            let metrics = telemetry::prometheus::install();
            let parts = web::Parts {
                config: Arc::new(config.clone()),
                log: job.log.clone(),
                sink: job.sink.clone(),
                history: history.clone(),
                stats: stats.clone(),
                metrics,
            };
            let server = web::start(addr, config.web.token.clone(), parts, shutdown.clone())
                .await
                .with_context(|| format!("cannot listen on {addr} for the dashboard"))?;
            let shown = match server.addr.ip() {
                ip if ip.is_unspecified() => format!("127.0.0.1:{}", server.addr.port()),
                _ => server.addr.to_string(),
            };
            println!("dashboard: http://{shown}/  (metrics: http://{shown}/metrics)");
            Some(server)
        }
        None => None,
    };
    let scheduler = Scheduler::new(config.jobs.clone(), history, job.log.clone(), stats.clone());
    let scheduling = tokio::spawn(
        scheduler
            .run(shutdown.clone())
            .instrument(info_span!("scheduler")),
    );
    let processed = pipeline::process(job, true).await;
    // The processor stops on shutdown or on an error; either way the rest
    // stops with it.
    shutdown.cancel();
    let scheduled = scheduling.await.expect("scheduler task panicked");
    if let Some(web) = web {
        if let Err(e) = web.stopped().await {
            tracing::warn!(error = %e, "dashboard server stopped with an error");
        }
    }
    let s = stats.summary();
    info!(
        fetched = s.fetched,
        logged = s.logged,
        stored = s.stored,
        "serve stopped"
    );
    processed.context("processor failed")?;
    scheduled.context("scheduler failed")?;
    Ok(())
}

fn fmt_ms(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn jobs(config: Config, cmd: JobsCommand) -> AppResult {
    let history = history(&config)?;
    match cmd {
        JobsCommand::List { json } => {
            let now = Utc::now();
            let mut rows = Vec::new();
            for j in &config.jobs {
                let last = history.runs(&j.name, 1).context("cannot read runs")?;
                let paused = history
                    .is_paused(&j.name)
                    .context("cannot read job state")?;
                let next = j.schedule.next_after(now);
                rows.push(serde_json::json!({
                    "name": j.name,
                    "schedule": j.schedule.to_string(),
                    "next_run": next.map(|t| t.to_rfc3339()),
                    "paused": paused,
                    "last_state": last.first().map(|r| r.state.as_str()),
                }));
            }
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else if rows.is_empty() {
                println!("no jobs: add [[jobs]] to tributary.toml");
            } else {
                for r in rows {
                    println!(
                        "{:<20} {:<24} next {:<26} {:<8} last {}",
                        r["name"].as_str().unwrap_or_default(),
                        r["schedule"].as_str().unwrap_or_default(),
                        r["next_run"].as_str().unwrap_or("-"),
                        if r["paused"] == true {
                            "paused"
                        } else {
                            "active"
                        },
                        r["last_state"].as_str().unwrap_or("-"),
                    );
                }
            }
        }
        JobsCommand::Trigger { name } => {
            find(&config, &name)?;
            let id = history
                .add(&name, now_ms(), RunState::Queued)
                .context("cannot queue the run")?;
            println!("queued run #{id} of {name}; a running `tributary serve` starts it");
        }
        JobsCommand::Pause { name } => {
            find(&config, &name)?;
            history.set_paused(&name, true).context("cannot pause")?;
            println!("{name} paused");
        }
        JobsCommand::Unpause { name } => {
            find(&config, &name)?;
            history.set_paused(&name, false).context("cannot unpause")?;
            println!("{name} unpaused");
        }
        JobsCommand::Runs { name, limit, json } => {
            find(&config, &name)?;
            let runs = history.runs(&name, limit).context("cannot read runs")?;
            if json {
                println!("{}", serde_json::to_string(&runs).expect("runs serialise"));
            } else {
                for r in &runs {
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
                            .map(|e| format!(" error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        JobsCommand::Backfill { name, from, to } => {
            let job = find(&config, &name)?;
            let parse = |s: &str| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| AppError::Usage(format!("{s:?} is not an RFC 3339 time: {e}")))
            };
            let slots = job.schedule.slots_between(parse(&from)?, parse(&to)?);
            for slot in &slots {
                history
                    .add(&name, slot.timestamp_millis(), RunState::Queued)
                    .context("cannot queue a run")?;
            }
            println!("queued {} run(s) of {name}, one per slot", slots.len());
        }
    }
    Ok(())
}

pub fn export(config: Config, cmd: ExportCommand) -> AppResult {
    match cmd {
        ExportCommand::AirflowDag { job, out } => {
            let j = match &job {
                Some(name) => find(&config, name)?,
                None => config
                    .jobs
                    .first()
                    .ok_or_else(|| AppError::Usage("the configuration has no [[jobs]]".into()))?,
            };
            let dag = airflow_dag(j);
            match out {
                Some(path) => std::fs::write(&path, dag)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{dag}"),
            }
            Ok(())
        }
    }
}

/// A DAG for teams that keep Airflow: one BashOperator running `tributary
/// ingest` with the job's schedule and burst; retries stay Airflow's.
fn airflow_dag(job: &JobConfig) -> String {
    let args = match job.plan {
        IngestPlan::Burst {
            duration,
            interval,
            per_tick,
        } => format!(
            "--duration {} --interval {} --per-tick {per_tick}",
            humantime::format_duration(duration),
            humantime::format_duration(interval)
        ),
        IngestPlan::Records { total, .. } => format!("--records {total}"),
    };
    let schedule = job.schedule.to_string();
    format!(
        r#"# Generated by `tributary export airflow-dag` for job {name:?}.
# Airflow schedules; tributary fetches, keys and logs the users.
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="tributary_{name}",
    schedule={schedule:?},
    start_date=datetime(2026, 1, 1),
    catchup={catchup},
    max_active_runs=1,
    default_args={{"retries": {retries}, "retry_delay": timedelta(seconds={delay})}},
) as dag:
    BashOperator(
        task_id="ingest",
        bash_command="tributary ingest {args}",
    )
"#,
        name = job.name,
        catchup = if job.catchup { "True" } else { "False" },
        retries = job.retry.retries,
        delay = job.retry.retry_delay.as_secs(),
    )
}
