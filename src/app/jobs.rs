//! The scheduling commands: `serve` (scheduler + processor in one process),
//! `jobs …` on the stored run history, and `export airflow-dag`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

use super::{AppError, AppResult};
use crate::cli::JobsCommand;
use crate::config::Config;
use crate::embedded::file_id;
use crate::pipeline;
use crate::pipeline::shape::Shape;
use crate::pipeline::stats::Stats;
use crate::scheduler::history::HistoryError;
use crate::scheduler::{History, JobConfig, SERVE_BUSY_TIMEOUT, Scheduler, Target};
use crate::{telemetry, web};

fn data_dir(config: &Config) -> AppResult {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data dir {} is not usable", config.data_dir.display()))?;
    Ok(())
}

fn history(config: &Config) -> AppResult<History> {
    data_dir(config)?;
    Ok(History::open(&config.data_dir.join("scheduler.db"))
        .context("cannot open the run history")?)
}

/// Why `serve` cannot have its data dir to itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeLockError {
    #[error("another tributary serve (pid {pid}) is using {dir}", dir = .dir.display())]
    Held {
        pid: String,
        dir: std::path::PathBuf,
    },
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// `DATA_DIR/serve.lock`, locked for the life of a `serve` and holding its
/// pid: two `serve`s on one data dir would run every slot twice (and each
/// would take the other's running runs for interrupted ones). The lock is
/// the operating system's, so it goes with the process, however it ends;
/// the file stays behind and is reused by the next `serve`.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
    dir: std::path::PathBuf,
    id: Option<(u64, u64)>,
}

/// How often `serve` checks that its lock file is still the one it locked.
const LOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

impl ServeLock {
    /// A lock on a file that was deleted protects nothing: the next `serve`
    /// creates a new file and locks that. So the file is checked now and
    /// then; if it is gone or replaced, it is locked anew, and if another
    /// `serve` holds the new one, this one must stop (the error).
    pub async fn keep(&mut self) -> ServeLockError {
        loop {
            tokio::time::sleep(LOCK_CHECK_EVERY).await;
            let path = self.dir.join("serve.lock");
            if self.id.is_none() || file_id(&path) == self.id {
                continue;
            }
            match ServeLock::acquire(&self.dir) {
                Ok(again) => {
                    tracing::warn!(path = %path.display(), "serve.lock was deleted or replaced; locked it again");
                    *self = again;
                }
                Err(e) => return e,
            }
        }
    }

    pub fn acquire(dir: &Path) -> Result<ServeLock, ServeLockError> {
        let path = dir.join("serve.lock");
        let io = |source| ServeLockError::Io {
            path: path.clone(),
            source,
        };
        // Not truncated on open: the pid in it belongs to the holder until
        // the lock is ours.
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ServeLockError::Held {
                    pid: holder_pid(&mut file),
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(ServeLock {
            _file: file,
            dir: dir.to_owned(),
            id: file_id(&path),
        })
    }
}

/// The pid the holder wrote, waiting briefly for a holder that has just
/// taken the lock and not yet written it.
fn holder_pid(file: &mut File) -> String {
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            return pid.to_string();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    "unknown".into()
}

pub(super) fn find<'a>(config: &'a Config, name: &str) -> AppResult<&'a JobConfig> {
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
    data_dir(&config)?;
    let mut lock = ServeLock::acquire(&config.data_dir).map_err(anyhow::Error::from)?;
    let history = History::open_with(&config.data_dir.join("scheduler.db"), SERVE_BUSY_TIMEOUT)
        .context("cannot open the run history")?;
    // Before any stage counts, so /metrics totals start with the process.
    // Without the web side nothing could read them, so no recorder is
    // installed at all then.
    let metrics = config.web.listen.map(|_| telemetry::prometheus::install());
    // Every pipeline: its log, store and processor; the scheduler feeds
    // each its jobs' runs.
    let mut all_stats = Vec::new();
    let mut processors = Vec::new();
    let mut targets = BTreeMap::new();
    // What the dashboard shows of each pipeline.
    let mut watched = Vec::new();
    for p in &config.pipelines {
        let mut one = config.clone();
        one.pipeline = p.clone();
        let pipeline_stats = Arc::new(Stats::for_pipeline(&p.name));
        all_stats.push((p.name.clone(), pipeline_stats.clone()));
        let job = super::run::open_job(&one, pipeline_stats.clone(), shutdown.clone())
            .await
            .map_err(|e| e.context(format!("pipeline {}", p.name)))?;
        let shape = super::run::checked(p, Shape::of(&p.dataset, job.sink.schema()))?;
        println!(
            "serve: pipeline {}: {} job(s); processor following topic {} into {}",
            p.name,
            config.jobs.iter().filter(|j| j.pipeline == p.name).count(),
            job.log.topic(),
            job.sink.describe()
        );
        targets.insert(
            p.name.clone(),
            Target {
                log: job.log.clone(),
                shape,
                page_size: config.processor.batch_size as u64,
                max_message_bytes: config.processor.max_message_bytes,
                stats: pipeline_stats.clone(),
            },
        );
        watched.push(web::PipelineParts::new(
            p.clone(),
            job.log.clone(),
            job.sink.clone(),
            pipeline_stats.clone(),
        ));
        let name = p.name.clone();
        processors.push(async move {
            pipeline::process(job, true)
                .instrument(info_span!("pipeline", name = %name))
                .await
                .with_context(|| format!("pipeline {name}"))
        });
    }
    let scheduler = Scheduler::with_targets(config.jobs.clone(), history.clone(), targets);
    let web = match (config.web.listen, metrics) {
        (Some(addr), Some(metrics)) => {
            let parts = web::Parts {
                config: Arc::new(config.clone()),
                pipelines: watched,
                history: history.clone(),
                scheduler: scheduler.health(),
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
        _ => None,
    };
    // The processors, together: the first to fail stops `serve`.
    let processing = async move { futures::future::try_join_all(processors).await.map(|_| ()) };
    tokio::pin!(processing);
    let mut scheduling = tokio::spawn(
        scheduler
            .run(shutdown.clone())
            .instrument(info_span!("scheduler")),
    );
    // Each stage runs until shutdown; one that ends before (an error, or a
    // return nobody asked for) stops `serve` at once, so nothing keeps
    // running, or answering as ready, without it.
    let (processed, scheduled, lost) = tokio::select! {
        processed = &mut processing => {
            if let Err(e) = &processed {
                error!(error = %e, "processor failed; stopping serve");
            }
            shutdown.cancel();
            (processed, scheduler_result(scheduling.await, true), None)
        }
        scheduled = &mut scheduling => {
            let scheduled = scheduler_result(scheduled, shutdown.is_cancelled());
            if let Err(e) = &scheduled {
                error!(error = %format!("{e:#}"), "scheduler failed; stopping serve");
            }
            shutdown.cancel();
            (processing.await, scheduled, None)
        }
        lost = lock.keep() => {
            error!(error = %lost, "the data dir is no longer this serve's; stopping serve");
            shutdown.cancel();
            (processing.await, scheduler_result(scheduling.await, true), Some(lost))
        }
    };
    if let Some(web) = web
        && let Err(e) = web.stopped().await
    {
        tracing::warn!(error = %e, "dashboard server stopped with an error");
    }
    for (name, stats) in &all_stats {
        let s = stats.summary();
        info!(
            pipeline = %name,
            fetched = s.fetched,
            logged = s.logged,
            stored = s.stored,
            "serve stopped"
        );
    }
    if let Some(lost) = lost {
        return Err(anyhow::Error::from(lost).into());
    }
    processed.context("processor failed")?;
    scheduled.context("scheduler failed")?;
    drop(lock);
    Ok(())
}

/// How the scheduler's task ended, as `serve` sees it: ending without
/// being asked to is a failure too.
fn scheduler_result(
    ended: Result<Result<(), HistoryError>, tokio::task::JoinError>,
    asked: bool,
) -> anyhow::Result<()> {
    match ended {
        Ok(Ok(())) if asked => Ok(()),
        Ok(Ok(())) => Err(anyhow::anyhow!("it stopped without being asked to")),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("its task failed: {e}")),
    }
}

pub(super) fn fmt_ms(ms: Option<i64>) -> String {
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
                println!(
                    "{:<20} {:<28} {:<26} LAST RUN",
                    "JOB", "SCHEDULE", "NEXT RUN"
                );
                for (j, r) in config.jobs.iter().zip(rows) {
                    // A paused job has no next run; times are the job's own
                    // (its schedule's time zone), to the second.
                    let next = if r["paused"] == true {
                        "paused".to_owned()
                    } else {
                        j.schedule
                            .next_after(now)
                            .map(|t| j.schedule.local_time(t))
                            .unwrap_or_else(|| "-".into())
                    };
                    println!(
                        "{:<20} {:<28} {:<26} {}",
                        j.name,
                        r["schedule"].as_str().unwrap_or_default(),
                        next,
                        r["last_state"].as_str().unwrap_or("-"),
                    );
                }
            }
        }
        JobsCommand::Trigger { name } => {
            find(&config, &name)?;
            let id = history.trigger(&name).context("cannot queue the run")?;
            if history
                .is_paused(&name)
                .context("cannot read the job's state")?
            {
                println!(
                    "queued run #{id} of {name}; {name} is paused: a running `tributary serve` \
                     starts it once `tributary jobs unpause {name}`"
                );
            } else {
                println!("queued run #{id} of {name}; a running `tributary serve` starts it");
            }
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
        JobsCommand::Runs {
            name,
            limit,
            before,
            run,
            json,
        } => super::runs::runs(&config, &history, &name, limit, before, run, json)?,
        JobsCommand::Backfill {
            name,
            from,
            to,
            yes,
        } => super::runs::backfill(&config, &history, &name, &from, &to, yes)?,
        JobsCommand::Cancel { name, run, queued } => {
            super::runs::cancel(&config, &history, &name, run, queued)?
        }
    }
    Ok(())
}
