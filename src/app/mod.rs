//! The edge between the command line and the pipeline: resolves the config
//! for a command, opens what it needs, installs the shutdown signal and maps
//! failures to the two kinds of exit (runtime 1, usage/config 2).

mod export;
mod health;
mod inspect;
mod jobs;
mod preview;
mod run;
mod runs;
mod table;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Cli, Command, ConfigCommand, EndpointArgs};
use crate::config::{self, Config, ConfigError, Overrides};
use crate::pipeline::log::LogConfig;
use crate::pipeline::sink::SinkConfig;

/// A failure that ends the program.
#[derive(Debug)]
pub enum AppError {
    /// Bad flags or configuration: the user must change something. Exit 2.
    Usage(String),
    /// Something failed while running. Exit 1.
    Failed(anyhow::Error),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) => 2,
            AppError::Failed(_) => 1,
        }
    }

    /// The same error, said to be about `what` (e.g. which pipeline).
    pub fn context(self, what: String) -> AppError {
        match self {
            AppError::Usage(m) => AppError::Usage(format!("{what}: {m}")),
            AppError::Failed(e) => AppError::Failed(e.context(what)),
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Usage(m) => f.write_str(m),
            AppError::Failed(e) => f.write_str(&one_line(e)),
        }
    }
}

/// The chain of causes on one line, outermost first, each said once: a
/// library error often repeats its cause's text in its own ("database disk
/// image is malformed: Error code 11: The database disk image is
/// malformed"). A cause that holds its context's text and goes on
/// ("cannot count rows" over "cassandra: cannot count rows: timed out")
/// adds what follows it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    // The text of the last cause that added to the line.
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty()
            && let Some(at) = text.find(last.as_str())
        {
            let rest = &text[at + last.len()..];
            if !rest.is_empty() {
                line.push_str(rest);
                last = text;
            }
            continue;
        }
        let (lower, last_lower) = (text.to_lowercase(), last.to_lowercase());
        if !last.is_empty() && (last_lower.contains(&lower) || lower.contains(&last_lower)) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        last = text;
    }
    line
}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Usage(e.to_string())
    }
}

impl From<anyhow::Error> for AppError {
    /// A port in use is the user's setting to change (exit 2, as for
    /// `mock-api --port`); anything else failed while running.
    fn from(e: anyhow::Error) -> Self {
        let port_in_use = e.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
        });
        if port_in_use {
            AppError::Usage(format!("{e:#}"))
        } else {
            AppError::Failed(e)
        }
    }
}

pub type AppResult<T = ()> = Result<T, AppError>;

/// Runs one command to completion.
pub async fn main(cli: Cli) -> AppResult {
    let shutdown = CancellationToken::new();
    listen_for_signals(shutdown.clone());
    // An empty TRIBUTARY_CONFIG is unset, as every other variable is.
    let file = cli.config.clone().or_else(|| {
        std::env::var_os("TRIBUTARY_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let data_dir = cli.data_dir.clone();
    // Every command resolves the same settings: the file, then the
    // environment (read once, here), then its own flags.
    let env = Overrides::from_env()?;
    let resolve = |flags: Overrides| -> AppResult<Config> {
        let (raw, path) = config::load_file(file.as_deref())?;
        Ok(Config::resolve(raw, path, env.clone().with_flags(flags))?)
    };
    let with_endpoints =
        |e: &EndpointArgs| -> AppResult<Config> { resolve(e.overrides(data_dir.clone())) };
    match cli.command {
        Command::Run(args) => {
            run::run(
                resolve(run::overrides(&args, data_dir.clone()))?,
                &args,
                shutdown,
            )
            .await
        }
        Command::Ingest(args) => {
            run::ingest(
                resolve(run::overrides(&args, data_dir.clone()))?,
                &args,
                shutdown,
            )
            .await
        }
        Command::Process(args) => {
            let mut over = args.endpoints.overrides(data_dir.clone());
            over.batch_size = args.batch_size;
            run::process(resolve(over)?, &args, shutdown).await
        }
        Command::MockApi(args) => run::mock_api(&args, shutdown).await,
        Command::Serve(args) => {
            let mut over = args.endpoints.overrides(data_dir.clone());
            over.batch_size = args.batch_size;
            over.listen = args.listen.clone();
            over.every_pipeline = true;
            jobs::serve(resolve(over)?, shutdown).await
        }
        Command::Jobs(cmd) => jobs::jobs(
            resolve(Overrides {
                data_dir: data_dir.clone(),
                every_pipeline: true,
                ..Overrides::default()
            })?,
            cmd,
        ),
        Command::Export(cmd) => export::export(
            resolve(Overrides {
                data_dir: data_dir.clone(),
                every_pipeline: true,
                ..Overrides::default()
            })?,
            cmd,
        ),
        Command::Count(args) => inspect::count(with_endpoints(&args.endpoints)?).await,
        Command::Status(args) => inspect::status(with_endpoints(&args.endpoints)?, args.json).await,
        Command::Show(args) => inspect::show(with_endpoints(&args.endpoints)?, &args).await,
        Command::Preview(args) => preview::preview(with_endpoints(&args.endpoints)?, &args).await,
        Command::Verify(args) => {
            verify::verify(with_endpoints(&args.endpoints)?, &args, shutdown).await
        }
        Command::Dlq(cmd) => inspect::dlq(cmd, with_endpoints).await,
        Command::Config(ConfigCommand::Check { endpoints, source }) => {
            let mut over = endpoints.overrides(data_dir.clone());
            over.source = source;
            over.every_pipeline = true;
            let config = resolve(over)?;
            print!("{}", config.to_toml());
            // What only this environment can tell (a variable the
            // source's headers or query name): said, not refused, as the
            // environment `run` sees may be another.
            for p in &config.pipelines {
                if let crate::pipeline::source::SourceConfig::JsonApi(c) = &p.source
                    && let Err(e) =
                        crate::pipeline::source::json_api::JsonApiSource::open(c.clone())
                {
                    eprintln!(
                        "warning: pipeline {}: {e}; `run` would fail in this environment",
                        p.name
                    );
                }
            }
            Ok(())
        }
        Command::Bench(args) => Ok(crate::devtools::bench::bench(&args).await?),
        Command::Healthcheck(args) => {
            // An address given is asked as it is; else the configuration's.
            let listen = match &args.listen {
                Some(listen) => health::parse_listen(listen)?,
                None => {
                    resolve(Overrides {
                        data_dir: data_dir.clone(),
                        every_pipeline: true,
                        ..Overrides::default()
                    })?
                    .web
                    .listen
                }
            };
            health::healthcheck(listen, &args).await
        }
    }
}

/// First Ctrl-C or SIGTERM: stop taking new work, finish the batch in
/// flight, commit, print the summary. Second: exit at once; the log keeps
/// whatever the store had not acknowledged, so nothing is lost.
fn listen_for_signals(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut round = 0;
        while round < 2 {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(t) => t.recv().await.is_some(),
                    None => std::future::pending::<bool>().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<bool>();
            let name = tokio::select! {
                r = tokio::signal::ctrl_c() => match r {
                    Ok(()) => "SIGINT",
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                },
                got = terminated => if got { "SIGTERM" } else {
                    std::future::pending::<()>().await;
                    unreachable!()
                },
            };
            if round == 0 {
                eprintln!(
                    "stopping on {name}: finishing the batch in flight (press Ctrl-C again to exit now)"
                );
                shutdown.cancel();
            } else {
                eprintln!("exiting now on {name}; uncommitted messages stay in the log");
                std::process::exit(130);
            }
            round += 1;
        }
    });
}

/// Creates the directories of the embedded files, with an error that names
/// the directory when that is impossible.
fn prepare_dirs(config: &Config) -> AppResult {
    let mut dirs: Vec<&Path> = Vec::new();
    match &config.pipeline.log {
        LogConfig::Sqlite(l) => dirs.extend(l.path.parent()),
        LogConfig::Kafka(_) => {}
    }
    match &config.pipeline.sink {
        SinkConfig::Sqlite(s) => dirs.extend(s.path.parent()),
        SinkConfig::Cassandra(_) => {}
    }
    for dir in dirs {
        if dir.as_os_str().is_empty() {
            continue;
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            // "File exists" alone does not say which file is in the way.
            let in_the_way = dir
                .ancestors()
                .find(|a| a.symlink_metadata().is_ok_and(|m| !m.is_dir()));
            match in_the_way {
                Some(file) => AppError::Failed(anyhow::anyhow!(
                    "data dir {} is not usable: {} is a file, not a directory; \
                     choose another --data-dir or move the file",
                    dir.display(),
                    file.display()
                )),
                None => AppError::Failed(anyhow::anyhow!(
                    "data dir {} is not usable: {e}",
                    dir.display()
                )),
            }
        })?;
        let probe = dir.join(".tributary-write-probe");
        match std::fs::write(&probe, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => {
                return Err(AppError::Failed(anyhow::anyhow!(
                    "data dir {} is not writable: {e}",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Tells the user which seed a run drew, so it can be repeated.
fn announce_seed(config: &Config) {
    if config.pipeline.seed_was_drawn {
        let seed = config.pipeline.source.seed();
        // Not a warning: a first run without a seed is the normal case; the
        // summary names the seed too.
        info!(seed, "no seed given; repeat this run with --seed {seed}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_that_repeats_its_context_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("Error code 11: The database disk image is malformed")]
        struct Code;
        #[derive(Debug, thiserror::Error)]
        #[error("database disk image is malformed")]
        struct Sqlite(#[source] Code);
        let e = anyhow::Error::new(Sqlite(Code)).context("cannot open the log: log d/log.db");
        assert_eq!(
            one_line(&e),
            "cannot open the log: log d/log.db: database disk image is malformed"
        );
        let e = anyhow::anyhow!("disk full")
            .context("cannot append")
            .context("ingest");
        assert_eq!(one_line(&e), "ingest: cannot append: disk full");
    }

    #[test]
    fn a_cause_that_goes_on_from_its_context_adds_the_rest() {
        let e =
            anyhow::anyhow!("cannot count rows: Request timeout: 10s").context("cannot count rows");
        assert_eq!(one_line(&e), "cannot count rows: Request timeout: 10s");
        let e = anyhow::anyhow!("cannot count rows").context("cannot count rows");
        assert_eq!(one_line(&e), "cannot count rows");
    }
}
