//! The configuration's rules, one test each, and the round trip of what
//! `config check` prints.

use scylla::statement::Consistency;

use super::*;
use crate::pipeline::log::LogConfig;
use crate::pipeline::sink::SinkConfig;

fn resolve(text: &str, over: Overrides) -> Result<Config, ConfigError> {
    Config::resolve(parse(text).map_err(|r| invalid("file", r))?, None, over)
}

#[test]
fn defaults_are_the_embedded_pipeline() {
    let c = resolve("", Overrides::default()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./tributary-data"));
    assert!(matches!(c.pipeline.source, SourceConfig::Generator { .. }));
    assert!(c.pipeline.seed_was_drawn);
    let LogConfig::Sqlite(l) = &c.pipeline.log else {
        panic!("sqlite log expected")
    };
    assert_eq!(l.path, PathBuf::from("./tributary-data/log.db"));
    assert_eq!(l.topic, "users_created");
    assert_eq!(c.pipeline.group, "tributary");
    let SinkConfig::Sqlite(s) = &c.pipeline.sink else {
        panic!("sqlite sink expected")
    };
    assert_eq!(s.table, "created_users");
    assert_eq!(c.processor.batch_size, 1000);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = parse("data_dir = \"x\"\n[source]\nurl = \"gen:\"\nsede = \"42\"\n").unwrap_err();
    assert!(err.contains("line 4"), "{err}");
    assert!(err.contains("unknown field `sede`"), "{err}");
}

#[test]
fn flags_beat_file() {
    let c = resolve(
        "[source]\nseed = \"file\"\n[processor]\nbatch_size = 10\n",
        Overrides {
            seed: Some("flag".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.pipeline.source.seed(), "flag");
    assert!(!c.pipeline.seed_was_drawn);
    assert_eq!(c.processor.batch_size, 10);
}

#[test]
fn a_command_on_every_pipeline_needs_no_name() {
    let text = r#"
[[pipelines]]
name = "users"
source = { url = "gen:?seed=a" }
[[pipelines]]
name = "more_users"
source = { url = "gen:?seed=b" }
"#;
    let err = resolve(text, Overrides::default()).unwrap_err();
    assert!(
        err.to_string().contains("name one with --pipeline"),
        "{err}"
    );
    let every = Overrides {
        every_pipeline: true,
        ..Overrides::default()
    };
    let c = resolve(text, every.clone()).unwrap();
    assert_eq!(c.pipeline.name, "users");
    assert_eq!(c.pipelines.len(), 2);
    let c = resolve(
        text,
        Overrides {
            pipeline: Some("more_users".into()),
            ..every
        },
    )
    .unwrap();
    assert_eq!(c.pipeline.name, "more_users");
    assert_eq!(c.pipelines.len(), 1);
}

#[test]
fn gen_url_carries_seed_and_nat() {
    let c = resolve(
        "",
        Overrides {
            source: Some("gen:?seed=42&nat=us,GB".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.pipeline.source,
        SourceConfig::Generator {
            seed: "42".into(),
            nats: vec!["US".into(), "GB".into()],
            gender: None
        }
    );
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[processor]\nbatch_size = 0\n", "processor.batch_size"),
        (
            "[processor]\nmax_message_bytes = 1000000000000\n",
            "processor.max_message_bytes",
        ),
        ("[processor]\nbatch_size = 9000\n", "processor.batch_size"),
        (
            "[[jobs]]\nname = \"z\"\nschedule = \"@hourly\"\nrecords = 0\n",
            "jobs.records",
        ),
        ("[source]\nurl = \"ftp://x/\"\n", "source.url"),
        ("[source]\nnat = [\"XX\"]\n", "source.nat"),
        (
            "[source]\nurl = \"http://x/api/\"\nread_timeout = \"soon\"\n",
            "source.read_timeout",
        ),
        ("[sink]\ntable = \"users; DROP TABLE x\"\n", "sink.table"),
        ("[log]\nurl = \"kafka:///t\"\n", "log.url"),
        ("[log]\ntopic = \"a topic\"\n", "log.topic"),
        (
            "[log]\nurl = \"kafka://h:9092/t\"\n[log.kafka]\ncompression = \"brotli\"\n",
            "log.kafka.compression",
        ),
    ];
    for (text, key) in cases {
        let err = resolve(text, Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
}

#[test]
fn a_message_limit_over_what_the_kafka_producer_sends_is_refused() {
    let kafka = "[log]\nurl = \"kafka://h:9092/t\"\n";
    let over = format!("{kafka}[processor]\nmax_message_bytes = 2097152\n");
    let err = resolve(&over, Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("processor.max_message_bytes"), "{err}");
    assert!(
        err.contains("message.max.bytes in [log.kafka.properties] to 2113536"),
        "{err}"
    );
    // Raised in the client, or a store of the embedded log: accepted.
    let raised = format!("{over}[log.kafka.properties]\n\"message.max.bytes\" = \"2200000\"\n");
    resolve(&raised, Overrides::default()).unwrap();
    resolve(
        "[processor]\nmax_message_bytes = 2097152\n",
        Overrides::default(),
    )
    .unwrap();
    // The default limit fits the default producer.
    resolve(kafka, Overrides::default()).unwrap();
}

#[test]
fn names_a_store_would_read_as_keywords_are_refused_where_they_were_given() {
    let pipeline = |name: &str, table_name: &str| {
        format!(
            "[[pipelines]]\nname = \"{name}\"\nsource = {{ file = \"r.ndjson\" }}\n\
             table = {{ {table_name}key = [\"id\"], columns = {{ id = \"text\" }} }}\n"
        )
    };
    let refused = [
        (
            "[sink]\ntable = \"group\"\n".to_owned(),
            "sink.table",
            "reserved word",
        ),
        (
            "[sink]\ntable = \"Order\"\n".to_owned(),
            "sink.table",
            "reserved word",
        ),
        (
            "[sink]\nurl = \"cassandra://127.0.0.1:9042/select.users\"\n".to_owned(),
            "sink.url",
            "reserved word",
        ),
        (pipeline("limit", ""), "pipelines.name", "reserved word"),
        (
            pipeline("orders", "name = \"where\", "),
            "pipelines.table.name",
            "reserved word",
        ),
        (
            pipeline("sqlite_stats", ""),
            "pipelines.name",
            "starts with sqlite_",
        ),
    ];
    for (text, key, why) in refused {
        let err = resolve(&text, Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(key) && err.contains(why), "{text}: {err}");
    }
    for ok in [
        "[sink]\ntable = \"key\"\n".to_owned(),
        "[sink]\ntable = \"users\"\n".to_owned(),
        pipeline("action", ""),
        pipeline("orders", "name = \"values_seen\", "),
        // Words SQL reserves and Cassandra 5.0 does not, in Cassandra.
        "[sink]\nurl = \"cassandra://127.0.0.1:9042/ks.values\"\n".to_owned(),
        "[sink]\nurl = \"cassandra://127.0.0.1:9042/group.transaction\"\n".to_owned(),
    ] {
        resolve(&ok, Overrides::default()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn http_source_keeps_base_and_defaults() {
    let c = resolve(
        "[source]\nurl = \"http://127.0.0.1:5080/api/1.4/\"\nseed = \"s\"\n",
        Overrides::default(),
    )
    .unwrap();
    let SourceConfig::Http(h) = c.pipeline.source else {
        panic!("http expected")
    };
    assert_eq!(h.url.as_str(), "http://127.0.0.1:5080/api/1.4/");
    assert_eq!(h.max_attempts, 8);
    assert_eq!(h.read_timeout, Duration::from_secs(30));
}

#[test]
fn http_source_keeps_query_parameters_it_does_not_set_itself() {
    let c = resolve(
        "[source]\nurl = \"https://api.example/api/?apikey=k1&seed=s&nat=gb&results=5&inc=name\"\n",
        Overrides::default(),
    )
    .unwrap();
    let SourceConfig::Http(h) = c.pipeline.source else {
        panic!("http expected")
    };
    // seed, nat, results and page are set on each request; the rest is sent.
    assert_eq!(
        h.url.as_str(),
        "https://api.example/api/?apikey=k1&inc=name"
    );
    assert_eq!(h.seed, "s");
    assert_eq!(h.nats, vec!["GB".to_owned()]);
}

#[test]
fn kafka_url_and_properties_resolve_with_secrets_redacted() {
    let c = resolve(
        "[log]\nurl = \"kafka://b1:9092,b2:9092/users_created\"\n[log.kafka.properties]\n\"sasl.username\" = \"u\"\n",
        Overrides {
            kafka_sasl_password: Some("hunter2".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let LogConfig::Kafka(k) = &c.pipeline.log else {
        panic!("kafka expected")
    };
    assert_eq!(k.brokers, "b1:9092,b2:9092");
    assert_eq!(k.topic, "users_created");
    assert_eq!(k.partitions, 3);
    assert_eq!(k.compression, "lz4");
    assert_eq!(k.properties["sasl.password"], "hunter2");
    let shown = c.to_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("\"sasl.username\" = \"u\""), "{shown}");
}

#[test]
fn cassandra_url_resolves_and_hides_the_password() {
    let c = resolve(
        "[sink]\nurl = \"cassandra://cassandra:secret@h1,h2:9043/spark_streams.created_users\"\n",
        Overrides::default(),
    )
    .unwrap();
    let SinkConfig::Cassandra(s) = &c.pipeline.sink else {
        panic!("cassandra expected")
    };
    assert_eq!(s.nodes, ["h1:9042", "h2:9043"]);
    assert_eq!(
        (s.keyspace.as_str(), s.table.as_str()),
        ("spark_streams", "created_users")
    );
    assert_eq!(s.user.as_deref(), Some("cassandra"));
    assert_eq!(s.password.as_deref(), Some("secret"));
    assert_eq!(s.consistency, Consistency::LocalQuorum);
    assert_eq!(s.replication["class"], "SimpleStrategy");
    let shown = c.to_toml();
    assert!(!shown.contains("secret"), "{shown}");
    let err = resolve(
        "[sink]\nurl = \"cassandra://h1/nokeyspace\"\n",
        Overrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("sink.url"), "{err}");
}

#[test]
fn cassandra_concurrency_is_adaptive_or_a_number() {
    let sink = |extra: &str| {
        resolve(
            &format!("[sink]\nurl = \"cassandra://h1/ks.t\"\n[sink.cassandra]\n{extra}"),
            Overrides::default(),
        )
        .map(|c| match c.pipeline.sink {
            SinkConfig::Cassandra(s) => s.concurrency,
            _ => panic!("cassandra expected"),
        })
    };
    assert_eq!(sink("").unwrap(), None);
    assert_eq!(sink("concurrency = 64\n").unwrap(), Some(64));
    assert_eq!(sink("concurrency = \"adaptive\"\n").unwrap(), None);
    for bad in ["0", "5000", "\"fast\""] {
        let err = sink(&format!("concurrency = {bad}\n")).unwrap_err();
        assert!(
            err.to_string().starts_with("sink.cassandra.concurrency"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn one_named_datacenter_is_the_local_one_of_a_three_node_cluster() {
    let sink = |extra: &str| {
        let c = resolve(
            &format!(
                "[sink]\nurl = \"cassandra://127.0.0.1,127.0.0.2,127.0.0.3/ks.t\"\n[sink.cassandra]\n{extra}"
            ),
            Overrides::default(),
        )
        .unwrap();
        let SinkConfig::Cassandra(s) = c.pipeline.sink else {
            panic!("cassandra expected")
        };
        s
    };
    let s = sink("datacenters = { dc1 = 3 }\n");
    assert_eq!(
        s.nodes,
        ["127.0.0.1:9042", "127.0.0.2:9042", "127.0.0.3:9042"]
    );
    assert_eq!(s.replication["class"], "NetworkTopologyStrategy");
    assert_eq!(s.replication["dc1"], "3");
    assert_eq!(s.local_datacenter.as_deref(), Some("dc1"));
    assert_eq!(s.consistency, Consistency::LocalQuorum);
    // two datacenters: which one is local is not guessed
    let s = sink("datacenters = { dc1 = 3, dc2 = 3 }\n");
    assert_eq!(s.local_datacenter, None);
    assert_eq!(sink("").local_datacenter, None);
}

#[test]
fn jobs_resolve_like_the_seed_dag() {
    let c = resolve(
        "[[jobs]]\nname = \"random_users\"\nschedule = \"0 1 * * *\"\nburst = { duration = \"2m\", interval = \"1s\", records = 1 }\nretries = 3\nretry_delay = \"30s\"\n",
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.jobs.len(), 1);
    let j = &c.jobs[0];
    assert_eq!(
        j.plan,
        IngestPlan::Burst {
            duration: Duration::from_secs(120),
            interval: Duration::from_secs(1),
            per_tick: 1
        }
    );
    assert_eq!(j.retry.retries, 3);
    assert_eq!(j.source.seed(), "random_users");
    for bad in [
        "[[jobs]]\nname = \"a b\"\nschedule = \"@daily\"\n",
        "[[jobs]]\nname = \"a\"\nschedule = \"every day\"\n",
        "[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\nmax_active_runs = 2\n",
        "[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\n[[jobs]]\nname = \"a\"\nschedule = \"@daily\"\n",
    ] {
        let err = resolve(bad, Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("jobs."), "{bad}: {err}");
    }
}

#[test]
fn several_pipelines_need_a_choice_only_where_a_command_works_on_one() {
    let text = "[[pipelines]]\nname = \"a\"\nsource = { url = \"gen:?seed=1\" }\n\
                [[pipelines]]\nname = \"b\"\nsource = { url = \"gen:?seed=2\" }\n";
    let err = resolve(text, Overrides::default()).unwrap_err();
    assert!(
        err.to_string().contains("name one with --pipeline"),
        "{err}"
    );
    let every = Overrides {
        every_pipeline: true,
        ..Overrides::default()
    };
    let c = resolve(text, every.clone()).unwrap();
    assert_eq!(c.pipelines.len(), 2);
    let c = resolve(
        text,
        Overrides {
            pipeline: Some("b".into()),
            ..every
        },
    )
    .unwrap();
    assert_eq!(c.pipeline.name, "b");
    assert_eq!(c.pipelines.len(), 1);
}

#[test]
fn redact_hides_passwords() {
    let u = Url::parse("cassandra://cassandra:secret@127.0.0.1:9042/ks.t").unwrap();
    let shown = redact(&u);
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("***"));
}

/// What `config check` prints resolves to the same configuration, for
/// every example and for no file at all.
#[test]
fn config_check_output_parses_back_to_the_same_config() {
    let every = || Overrides {
        every_pipeline: true,
        seed: Some("fixed".into()),
        ..Overrides::default()
    };
    let mut files: Vec<Option<PathBuf>> = vec![None];
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(Some(path));
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    let without_origins = |c: &Config| {
        let mut c = c.clone();
        c.file = None;
        for p in c.pipelines.iter_mut().chain([&mut c.pipeline]) {
            if let Dataset::Table(t) = &mut p.dataset {
                let mut t = (**t).clone();
                if let Some(tr) = &mut t.transform {
                    tr.origin = crate::pipeline::transform::Origin {
                        file: String::new(),
                        line: 0,
                        column: 0,
                    };
                }
                p.dataset = Dataset::Table(std::sync::Arc::new(t));
            }
        }
        c
    };
    for file in files {
        let (raw, path) = load_file(file.as_deref()).unwrap();
        let first = Config::resolve(raw, path, every()).unwrap();
        let printed = first.to_toml();
        let again = Config::resolve(
            parse(&printed).unwrap_or_else(|e| panic!("{file:?}: {e}\n{printed}")),
            None,
            every(),
        )
        .unwrap_or_else(|e| panic!("{file:?}: {e}\n{printed}"));
        assert_eq!(
            without_origins(&again),
            without_origins(&first),
            "{file:?}:\n{printed}"
        );
        let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&again.to_toml()), body(&printed), "{file:?}");
    }
}
