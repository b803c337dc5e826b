//! [`Overrides`]: what the environment and the command line set on top of
//! the file. The `TRIBUTARY_*` variables are read here and nowhere else, so
//! every command — `config check` included — sees the same settings.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{ConfigError, invalid};

/// Settings given on the command line or in `TRIBUTARY_*` variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    /// `--pipeline`: the pipeline a command works on (`serve`: the only
    /// one it runs).
    pub pipeline: Option<String>,
    /// The command works on every pipeline (`serve`, `config check`,
    /// `jobs`): without `--pipeline`, several pipelines are no error, and
    /// [`Config::pipeline`] is the first.
    pub every_pipeline: bool,
    pub source: Option<String>,
    pub log: Option<String>,
    pub sink: Option<String>,
    pub seed: Option<String>,
    pub batch_size: Option<usize>,
    pub group: Option<String>,
    pub topic: Option<String>,
    /// `TRIBUTARY_KAFKA_SASL_PASSWORD`: kept out of files and flags.
    pub kafka_sasl_password: Option<String>,
    /// `TRIBUTARY_CASSANDRA_USER`.
    pub cassandra_user: Option<String>,
    /// `TRIBUTARY_CASSANDRA_PASSWORD`: kept out of files and flags.
    pub cassandra_password: Option<String>,
    /// `serve --listen`.
    pub listen: Option<String>,
    /// `TRIBUTARY_WEB_TOKEN`: kept out of files and flags.
    pub web_token: Option<String>,
    /// `TRIBUTARY_WEB_HEADER_TIMEOUT`.
    pub web_header_timeout: Option<String>,
    /// `TRIBUTARY_WEB_MAX_CONNECTIONS`.
    pub web_max_connections: Option<usize>,
}

/// Every variable [`Overrides::from_vars`] reads, with the setting it makes.
#[cfg(test)]
pub const ENV_VARS: &[(&str, &str)] = &[
    ("TRIBUTARY_DATA_DIR", "--data-dir"),
    ("TRIBUTARY_PIPELINE", "--pipeline"),
    ("TRIBUTARY_SOURCE", "--source"),
    ("TRIBUTARY_LOG", "--log"),
    ("TRIBUTARY_TOPIC", "--topic"),
    ("TRIBUTARY_GROUP", "--group"),
    ("TRIBUTARY_SINK", "--sink"),
    ("TRIBUTARY_SEED", "--seed"),
    ("TRIBUTARY_BATCH_SIZE", "--batch-size"),
    ("TRIBUTARY_WEB_LISTEN", "--listen"),
    ("TRIBUTARY_KAFKA_SASL_PASSWORD", "[log.kafka] sasl.password"),
    ("TRIBUTARY_CASSANDRA_USER", "[sink.cassandra] user"),
    ("TRIBUTARY_CASSANDRA_PASSWORD", "[sink.cassandra] password"),
    ("TRIBUTARY_WEB_TOKEN", "[web] token"),
    ("TRIBUTARY_WEB_HEADER_TIMEOUT", "[web] header_timeout"),
    ("TRIBUTARY_WEB_MAX_CONNECTIONS", "[web] max_connections"),
];

impl Overrides {
    /// The `TRIBUTARY_*` variables of this process.
    pub fn from_env() -> Result<Overrides, ConfigError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// The overrides that `var` sets. An empty variable is unset; a value
    /// that is not text, or a batch size that is not a number, is an error
    /// naming the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Overrides, ConfigError> {
        let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v
                    .into_string()
                    .map(Some)
                    .map_err(|_| invalid(name, "is not valid UTF-8 text")),
            }
        };
        let number =
            |name: &'static str, range: &str| -> Result<Option<usize>, ConfigError> {
                match text(name)? {
                    None => Ok(None),
                    Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                        invalid(name, format!("{v:?} is not a whole number ({range})"))
                    }),
                }
            };
        let batch_size = number("TRIBUTARY_BATCH_SIZE", "1 to 5000")?;
        let web_max_connections = number("TRIBUTARY_WEB_MAX_CONNECTIONS", "1 to 65536")?;
        Ok(Overrides {
            data_dir: var("TRIBUTARY_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            pipeline: text("TRIBUTARY_PIPELINE")?,
            every_pipeline: false,
            source: text("TRIBUTARY_SOURCE")?,
            log: text("TRIBUTARY_LOG")?,
            sink: text("TRIBUTARY_SINK")?,
            seed: text("TRIBUTARY_SEED")?,
            batch_size,
            group: text("TRIBUTARY_GROUP")?,
            topic: text("TRIBUTARY_TOPIC")?,
            kafka_sasl_password: text("TRIBUTARY_KAFKA_SASL_PASSWORD")?,
            cassandra_user: text("TRIBUTARY_CASSANDRA_USER")?,
            cassandra_password: text("TRIBUTARY_CASSANDRA_PASSWORD")?,
            listen: text("TRIBUTARY_WEB_LISTEN")?,
            web_token: text("TRIBUTARY_WEB_TOKEN")?.filter(|t| !t.trim().is_empty()),
            web_header_timeout: text("TRIBUTARY_WEB_HEADER_TIMEOUT")?,
            web_max_connections,
        })
    }

    /// `flags` on top of `self`: each setting a flag gives wins.
    pub fn with_flags(self, flags: Overrides) -> Overrides {
        Overrides {
            data_dir: flags.data_dir.or(self.data_dir),
            pipeline: flags.pipeline.or(self.pipeline),
            every_pipeline: flags.every_pipeline || self.every_pipeline,
            source: flags.source.or(self.source),
            log: flags.log.or(self.log),
            sink: flags.sink.or(self.sink),
            seed: flags.seed.or(self.seed),
            batch_size: flags.batch_size.or(self.batch_size),
            group: flags.group.or(self.group),
            topic: flags.topic.or(self.topic),
            kafka_sasl_password: flags.kafka_sasl_password.or(self.kafka_sasl_password),
            cassandra_user: flags.cassandra_user.or(self.cassandra_user),
            cassandra_password: flags.cassandra_password.or(self.cassandra_password),
            listen: flags.listen.or(self.listen),
            web_token: flags.web_token.or(self.web_token),
            web_header_timeout: flags.web_header_timeout.or(self.web_header_timeout),
            web_max_connections: flags.web_max_connections.or(self.web_max_connections),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_listed_variable_sets_something() {
        for (name, _) in ENV_VARS {
            let value = if name.ends_with("BATCH_SIZE") || name.ends_with("CONNECTIONS") {
                "7"
            } else {
                "x-value-long-enough"
            };
            let over = Overrides::from_vars(vars(&[(name, value)])).unwrap();
            assert_ne!(over, Overrides::default(), "{name} is read");
        }
    }

    #[test]
    fn the_readme_lists_every_variable() {
        let readme = include_str!("../../README.md");
        for (name, _) in ENV_VARS {
            assert!(readme.contains(name), "README.md does not mention {name}");
        }
    }

    #[test]
    fn a_batch_size_that_is_no_number_names_the_variable() {
        let err = Overrides::from_vars(vars(&[("TRIBUTARY_BATCH_SIZE", "garbage")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("TRIBUTARY_BATCH_SIZE") && text.contains("garbage"),
            "{text}"
        );
        let over = Overrides::from_vars(vars(&[("TRIBUTARY_BATCH_SIZE", " 7 ")])).unwrap();
        assert_eq!(over.batch_size, Some(7));
    }

    #[test]
    fn empty_variables_are_unset_and_flags_win() {
        let env = Overrides::from_vars(vars(&[
            ("TRIBUTARY_SEED", "42"),
            ("TRIBUTARY_LOG", ""),
            ("TRIBUTARY_BATCH_SIZE", "7"),
        ]))
        .unwrap();
        assert_eq!(env.log, None);
        let both = env.with_flags(Overrides {
            batch_size: Some(9),
            ..Overrides::default()
        });
        assert_eq!(both.batch_size, Some(9));
        assert_eq!(both.seed.as_deref(), Some("42"));
    }
}
