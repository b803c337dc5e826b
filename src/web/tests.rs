//! The API in-process: a real embedded log, store, history and scheduler in
//! a temporary directory, the server on 127.0.0.1:0, and an HTTP client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Config, Overrides};
use crate::pipeline::ingest::{self, Feed, IngestPlan};
use crate::pipeline::log::{DeadLetter, Origin, Stage};
use crate::pipeline::source::{Source, SourceConfig};
use crate::pipeline::{Job, process};
use crate::scheduler::{Scheduler, Target};
use crate::telemetry::prometheus;

const TOKEN: &str = "a-test-token-of-some-length";

/// Two pipelines, as `serve` runs them: the built-in users (first, so the
/// one a request that names none gets) and a typed table of orders read
/// from a file, through a transform. `{dir}` is the data dir; the orders
/// file lies in it.
const TWO_PIPELINES: &str = r#"data_dir = "{dir}"
[[pipelines]]
name = "users"
source = { url = "gen:?seed=web" }
topic = "users_created"

[[pipelines]]
name = "orders"
source = { file = "{dir}/orders.ndjson" }
transform = '''
# The order number is the row's id; "<b>bold</b>" stays text.
.id = to_string!(.order_id)
del(.order_id)
'''
table = { key = ["shop"], clustering = ["id"], columns = { shop = "text", id = "text", total = "double" } }

[[jobs]]
name = "random_users"
pipeline = "users"
schedule = "0 0 1 1 *"
records = 25

[[jobs]]
name = "orders_import"
pipeline = "orders"
schedule = "0 0 1 1 *"
"#;

/// Three orders that fit the table and one whose total is not a number.
const ORDERS: &str = r#"{"order_id": 1, "shop": "north", "total": 2.5}
{"order_id": 2, "shop": "north", "total": 4}
{"order_id": 3, "shop": "south", "total": 10.25}
{"order_id": 4, "shop": "south", "total": "lots"}
"#;

/// The built-in pipeline alone, as a config without `[[pipelines]]` has it.
const ONE_PIPELINE: &str = r#"data_dir = "{dir}"
[source]
url = "gen:"
seed = "web"
[[jobs]]
name = "random_users"
schedule = "0 0 1 1 *"
records = 25
"#;

struct Harness {
    _dir: tempfile::TempDir,
    base: String,
    client: reqwest::Client,
    config: Arc<Config>,
    /// The first pipeline's log and store (the users).
    log: Log,
    sink: Sink,
    history: History,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The two pipelines, the users one holding `records` users already
/// processed, the orders one its file's orders.
async fn harness(token: Option<&str>, records: u64) -> Harness {
    harness_of(TWO_PIPELINES, token, records).await
}

/// A serve-like process in-process: web server and scheduler over each
/// pipeline's embedded log and store, the users pipeline holding `records`
/// users and a table pipeline its source's records, all processed.
async fn harness_of(text: &str, token: Option<&str>, records: u64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.ndjson"), ORDERS).unwrap();
    let text = text.replace("{dir}", &dir.path().display().to_string());
    let config = Config::resolve(
        crate::config::parse(&text).unwrap(),
        None,
        Overrides {
            web_token: token.map(str::to_owned),
            every_pipeline: true,
            ..Overrides::default()
        },
    )
    .unwrap();
    let config = Arc::new(config);
    let history = History::open(&config.data_dir.join("scheduler.db")).unwrap();
    let shutdown = CancellationToken::new();
    let mut pipelines = Vec::new();
    let mut targets = std::collections::BTreeMap::new();
    for p in &config.pipelines {
        std::fs::create_dir_all(config.data_dir.join("pipelines").join(&p.name)).unwrap();
        let log = Log::open(&p.log).await.unwrap();
        let sink = Sink::open(&p.sink, &p.dataset).await.unwrap();
        let stats = Arc::new(Stats::for_pipeline(&p.name));
        let parts = PipelineParts::new(p.clone(), log.clone(), sink.clone(), stats.clone());
        // A table pipeline is filled only from a file: no test reaches out.
        let total = match (&parts.shape, &p.source) {
            (None, _) => records,
            (Some(_), SourceConfig::File(_)) => u64::MAX,
            (Some(_), _) => 0,
        };
        if total > 0 {
            let feed = Feed::open(&p.source, parts.shape.clone(), 100, 256 << 10).unwrap();
            let plan = IngestPlan::Records {
                total,
                page_size: 100,
            };
            ingest::run(feed, log.clone(), plan, stats.clone(), shutdown.clone())
                .await
                .unwrap();
            let job = Job {
                log: log.clone(),
                reader: log.reader(&p.group).await.unwrap(),
                sink: sink.clone(),
                group: p.group.clone(),
                processor: config.processor,
                stats: stats.clone(),
                shutdown: shutdown.clone(),
            };
            process(job, false).await.unwrap();
        }
        targets.insert(
            p.name.clone(),
            Target {
                log: log.clone(),
                shape: parts.shape.clone(),
                page_size: 100,
                max_message_bytes: 256 << 10,
                stats: stats.clone(),
            },
        );
        pipelines.push(parts);
    }
    let (log, sink) = (pipelines[0].log.clone(), pipelines[0].sink.clone());
    let scheduler = Scheduler::with_targets(config.jobs.clone(), history.clone(), targets);
    let health = scheduler.health();
    tokio::spawn(scheduler.run(shutdown.clone()));
    let parts = Parts {
        config: config.clone(),
        pipelines,
        history: history.clone(),
        scheduler: health,
        metrics: prometheus::install(),
    };
    let server = start(
        "127.0.0.1:0".parse().unwrap(),
        config.web.token.clone(),
        parts,
        shutdown.clone(),
    )
    .await
    .unwrap();
    Harness {
        _dir: dir,
        base: format!("http://{}", server.addr),
        client: reqwest::Client::new(),
        config,
        log,
        sink,
        history,
        shutdown,
    }
}

impl Harness {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.unwrap()
    }

    /// A GET that may fail: its status and JSON body (`null` if none).
    async fn try_get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header(auth::REQUEST_HEADER, "1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `ready` holds for its answer.
    async fn wait_for(&self, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get(path).await;
            if ready(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path} never got there: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn every_view_has_its_shape() {
    let h = harness(None, 120).await;
    // The sampler's first probe reports the store and the log.
    let status = h
        .wait_for("/api/v1/status", |s| s["store"]["rows"] == 120)
        .await;
    for stage in ["source", "log", "processor", "store"] {
        for field in ["total", "rate", "errors"] {
            assert!(
                status[stage][field].is_number(),
                "{stage}.{field}: {status}"
            );
        }
    }
    assert_eq!(status["log"]["topic"], "users_created");
    assert_eq!(status["log"]["lag"], 0);
    assert_eq!(status["log"]["kind"], "sqlite");
    assert_eq!(status["jobs"]["count"], 1);

    // The log's offsets come from a probe of their own, which may report
    // after the row count did.
    let topic = h
        .wait_for("/api/v1/topic", |t| t["partitions"][0]["end"] == 120)
        .await;
    assert_eq!(topic["partitions"][0]["lag"], 0);
    // The embedded log's readers form no group.
    assert!(topic["members"].is_null(), "{topic}");
    assert!(topic["partitions"][0]["member"].is_null(), "{topic}");

    let messages = h.get("/api/v1/topic/messages?limit=5").await;
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[0]["offset"], 119, "newest first");
    assert!(messages[0]["json"]["id"].is_string());
    assert_eq!(messages[0]["key"], messages[0]["json"]["id"]);

    let rows = h.get("/api/v1/rows?limit=3").await;
    assert_eq!(rows["count"], 120);
    assert_eq!(rows["rows"].as_array().unwrap().len(), 3);
    assert!(rows["rows"][0]["email"].as_str().unwrap().contains('@'));
    // Another limit is served from the same cached read, newest first.
    let more = h.get("/api/v1/rows?limit=50").await;
    assert_eq!(more["rows"].as_array().unwrap().len(), 50);
    assert_eq!(more["rows"][0], rows["rows"][0]);
    assert_eq!(more["rows"][2], rows["rows"][2]);

    let jobs = h.get("/api/v1/jobs").await;
    let job = &jobs["jobs"][0];
    assert_eq!(job["name"], "random_users");
    assert_eq!(job["schedule"], "0 0 1 1 *");
    assert_eq!(job["paused"], false);
    assert!(
        job["next_run"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00")
    );

    let throughput = h.get("/api/v1/throughput?seconds=60").await;
    assert!(throughput["samples"].is_array());

    let dl = h.get("/api/v1/dead-letters").await;
    assert_eq!(dl["waiting"], 0);

    let config = h.get("/api/v1/config").await;
    let toml = config["toml"].as_str().unwrap();
    assert!(toml.contains("[web]") && toml.contains("listen"), "{toml}");

    let session = h.get("/api/v1/session").await;
    assert_eq!(
        session,
        json!({"authenticated": true, "token_required": false})
    );

    let r = h
        .client
        .get(format!("{}/api/v1/nope", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h
        .client
        .get(format!("{}/api/v1/jobs/nope/runs", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_pipeline_is_listed_with_its_source_table_and_transform() {
    let h = harness(None, 0).await;
    let list = h.get("/api/v1/pipelines").await;
    let list = list["pipelines"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["users", "orders"]);

    let users = &list[0];
    assert_eq!(users["kind"], "users");
    assert_eq!(users["source"]["kind"], "generator");
    assert_eq!(users["topic"], "users_created");
    assert_eq!(users["group"], "tributary-users");
    assert_eq!(users["jobs"], json!(["random_users"]));
    assert!(users["table"].is_null() && users["transform"].is_null());

    let orders = &list[1];
    assert_eq!(orders["kind"], "table");
    assert_eq!(orders["source"]["kind"], "file");
    assert!(
        orders["source"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/orders.ndjson"),
        "{orders}"
    );
    assert_eq!(orders["topic"], "orders");
    assert_eq!(orders["group"], "tributary-orders");
    assert_eq!(orders["log"], "sqlite");
    assert_eq!(orders["store"]["kind"], "sqlite");
    assert!(
        orders["store"]["describe"]
            .as_str()
            .unwrap()
            .ends_with("table orders")
    );
    assert_eq!(orders["jobs"], json!(["orders_import"]));
    assert_eq!(
        orders["table"],
        json!({
            "columns": [
                {"name": "shop", "type": "text"},
                {"name": "id", "type": "text"},
                {"name": "total", "type": "double"},
            ],
            "partition_key": ["shop"],
            "clustering_key": ["id"],
            "unknown_fields": "reject",
        })
    );
    let transform = &orders["transform"];
    assert_eq!(
        transform["text"],
        "# The order number is the row's id; \"<b>bold</b>\" stays text.\n.id = to_string!(.order_id)\ndel(.order_id)\n"
    );
    assert_eq!(transform["file"], "config");
    assert!(transform["line"].is_number() && transform["column"].is_number());
}

#[tokio::test]
async fn a_json_api_source_is_listed_with_its_secrets_redacted() {
    let text = r#"data_dir = "{dir}"
[[pipelines]]
name = "shop"
source = { url = "https://user:hunter2@127.0.0.1:9/orders?key=hunter2", headers = { Authorization = "Bearer hunter2", Accept = "application/json" } }
table = { key = ["id"], columns = { id = "text" } }
"#;
    let h = harness_of(text, None, 0).await;
    let list = h.get("/api/v1/pipelines").await;
    let shown = list.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    let source = &list["pipelines"][0]["source"];
    assert_eq!(source["kind"], "json_api");
    assert_eq!(source["url"], "https://user:***@127.0.0.1:9/orders?***");
    assert_eq!(source["settings"]["headers"]["Authorization"], "***");
    assert_eq!(source["settings"]["headers"]["Accept"], "application/json");
}

#[tokio::test]
async fn each_view_answers_for_the_pipeline_it_names() {
    let h = harness(None, 30).await;
    // The default is the first pipeline; naming it changes nothing.
    let users = h
        .wait_for("/api/v1/status?pipeline=users", |s| {
            s["store"]["rows"] == 30
        })
        .await;
    assert_eq!(users["pipeline"], "users");
    assert_eq!(users["kind"], "users");
    assert_eq!(h.get("/api/v1/status").await["pipeline"], "users");

    let orders = h
        .wait_for("/api/v1/status?pipeline=orders", |s| {
            s["store"]["rows"] == 3 && s["log"]["dead_letters_waiting"] == 1
        })
        .await;
    assert_eq!(orders["pipeline"], "orders");
    assert_eq!(orders["kind"], "table");
    assert!(
        orders["source"]["url"]
            .as_str()
            .unwrap()
            .starts_with("file:")
    );
    assert_eq!(orders["source"]["total"], 4);
    assert_eq!(orders["log"]["topic"], "orders");
    assert_eq!(orders["log"]["total"], 3);
    assert_eq!(orders["processor"]["group"], "tributary-orders");
    assert_eq!(orders["store"]["total"], 3);
    assert!(
        orders["store"]["describe"]
            .as_str()
            .unwrap()
            .ends_with("table orders")
    );
    assert_eq!(orders["jobs"]["count"], 1);

    let topic = h
        .wait_for("/api/v1/topic?pipeline=orders", |t| {
            t["partitions"][0]["end"] == 3
        })
        .await;
    assert_eq!(topic["topic"], "orders");
    assert_eq!(topic["group"], "tributary-orders");
    let messages = h.get("/api/v1/topic/messages?pipeline=orders").await;
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[0]["json"],
        json!({"shop": "south", "id": "3", "total": 10.25})
    );

    let rows = h.get("/api/v1/rows?pipeline=orders&limit=10").await;
    assert_eq!(rows["pipeline"], "orders");
    assert_eq!(rows["count"], 3);
    assert_eq!(rows["columns"], json!(["shop", "id", "total"]));
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.contains(&json!({"shop": "north", "id": "1", "total": 2.5})),
        "{rows:?}"
    );
    let users_rows = h.get("/api/v1/rows?limit=2").await;
    assert_eq!(users_rows["count"], 30);
    assert_eq!(users_rows["columns"][4], "address");
    assert!(
        users_rows["rows"][0]["email"]
            .as_str()
            .unwrap()
            .contains('@')
    );

    // The order whose total is not a number waits in the orders pipeline
    // only.
    let letters = h.get("/api/v1/dead-letters?pipeline=orders").await;
    assert_eq!(letters["waiting"], 1);
    assert_eq!(letters["dead_letters"][0]["stage"], "transform");
    assert!(
        letters["dead_letters"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("total"),
        "{letters}"
    );
    assert_eq!(
        h.get("/api/v1/dead-letters?pipeline=users").await["waiting"],
        0
    );
    let (status, report) = h
        .post(
            "/api/v1/dead-letters/replay?pipeline=orders",
            json!({"all": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["still_failing"], 1, "{report}");
    assert_eq!(report["replayed"], 0, "{report}");

    let throughput = h.get("/api/v1/throughput?pipeline=orders&seconds=60").await;
    assert!(throughput["samples"].is_array());

    // Jobs show their pipeline; a pipeline's view lists its own.
    let all = h.get("/api/v1/jobs").await;
    let pairs: Vec<(&str, &str)> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap(), j["pipeline"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("random_users", "users"), ("orders_import", "orders")]
    );
    let jobs = h.get("/api/v1/jobs?pipeline=orders").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(jobs["jobs"][0]["name"], "orders_import");

    // A run of the orders job reads the file again into the orders log.
    let (status, body) = h
        .post("/api/v1/jobs/orders_import/trigger", json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["run_id"].as_i64().unwrap();
    let runs = h
        .wait_for("/api/v1/jobs/orders_import/runs", |v| {
            v["runs"][0]["id"] == id && v["runs"][0]["state"] == "success"
        })
        .await;
    assert_eq!(runs["runs"][0]["logged"], 3, "{runs}");
    h.wait_for("/api/v1/topic?pipeline=orders", |t| {
        t["partitions"][0]["end"] == 6
    })
    .await;
    assert_eq!(h.log.lag("x").await.unwrap()[0].end, 30, "the users' log");
}

#[tokio::test]
async fn an_unknown_pipeline_is_not_found() {
    let h = harness(None, 0).await;
    for path in [
        "/api/v1/status",
        "/api/v1/throughput",
        "/api/v1/jobs",
        "/api/v1/topic",
        "/api/v1/topic/messages",
        "/api/v1/rows",
        "/api/v1/dead-letters",
    ] {
        let (status, body) = h.try_get(&format!("{path}?pipeline=nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            body["error"], r#"no pipeline "nope"; pipelines: users, orders"#,
            "{path}"
        );
    }
    let (status, body) = h
        .post(
            "/api/v1/dead-letters/replay?pipeline=nope",
            json!({"all": true}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
}

#[tokio::test]
async fn a_single_pipeline_config_keeps_its_urls() {
    let h = harness_of(ONE_PIPELINE, None, 20).await;
    let list = h.get("/api/v1/pipelines").await;
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 1);
    assert_eq!(list["pipelines"][0]["name"], "randomuser");
    assert_eq!(list["pipelines"][0]["kind"], "users");
    let status = h
        .wait_for("/api/v1/status", |s| s["store"]["rows"] == 20)
        .await;
    assert_eq!(status["pipeline"], "randomuser");
    let named = h.get("/api/v1/status?pipeline=randomuser").await;
    assert_eq!(named["store"]["describe"], status["store"]["describe"]);
    assert_eq!(h.get("/api/v1/rows").await["count"], 20);
    assert_eq!(
        h.get("/api/v1/jobs").await["jobs"][0]["pipeline"],
        "randomuser"
    );
}

#[tokio::test]
async fn sampled_gauges_carry_the_pipeline_label() {
    let h = harness(None, 5).await;
    h.wait_for("/api/v1/status?pipeline=orders", |s| {
        s["store"]["rows"] == 3 && s["log"]["dead_letters_waiting"] == 1
    })
    .await;
    h.wait_for("/api/v1/topic?pipeline=orders", |t| {
        t["partitions"][0]["end"] == 3
    })
    .await;
    let text = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for gauge in [
        "tributary_sink_stored_rows",
        "tributary_log_lag_messages",
        "tributary_log_dead_letters_waiting",
    ] {
        for pipeline in ["users", "orders"] {
            let series = format!("{gauge}{{pipeline=\"{pipeline}\"}} ");
            assert!(text.contains(&series), "no {series}in:\n{text}");
        }
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{gauge} "))),
            "{gauge} without its pipeline:\n{text}"
        );
    }
    assert!(text.contains("tributary_source_records_total{pipeline=\"orders\"}"));
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let h = harness(None, 0).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/browse.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let r = h
            .client
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!r.text().await.unwrap().is_empty());
    }
    // Every file the page loads is served.
    let page = include_str!("assets/index.html");
    for part in page.split("=\"/assets/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        let r = h
            .client
            .get(format!("{}/assets/{name}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    let r = h
        .client
        .get(format!("{}/assets/other.js", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_trigger_creates_a_run_that_the_scheduler_runs() {
    let h = harness(None, 0).await;
    let (status, body) = h.post("/api/v1/jobs/random_users/trigger", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["run_id"].as_i64().unwrap();
    assert_eq!(body["paused"], false, "{body}");
    let runs = h
        .wait_for("/api/v1/jobs/random_users/runs", |v| {
            v["runs"][0]["id"] == id && v["runs"][0]["state"] == "success"
        })
        .await;
    assert_eq!(runs["runs"][0]["logged"], 25);
    assert_eq!(h.log.lag("x").await.unwrap()[0].end, 25);
    let (status, _) = h.post("/api/v1/jobs/nope/trigger", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pause_persists_in_the_history_file() {
    let h = harness(None, 0).await;
    let (status, body) = h.post("/api/v1/jobs/random_users/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"name": "random_users", "paused": true}));
    // A trigger of the paused job is queued, and the answer says it waits.
    let (status, body) = h.post("/api/v1/jobs/random_users/trigger", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["paused"], true, "{body}");
    assert!(
        body["note"].as_str().unwrap().contains("unpaused"),
        "{body}"
    );
    // Another process (a restarted serve, `jobs list`) sees it.
    let reopened = History::open(&h.config.data_dir.join("scheduler.db")).unwrap();
    assert!(reopened.is_paused("random_users").unwrap());
    assert_eq!(h.get("/api/v1/jobs").await["jobs"][0]["paused"], true);
    let (_, body) = h.post("/api/v1/jobs/random_users/unpause", json!({})).await;
    assert_eq!(body["paused"], false);
    assert!(!reopened.is_paused("random_users").unwrap());
}

/// `n` rows the store once refused, kept as dead letters with their bytes.
async fn refused_rows(h: &Harness, n: u64) {
    let source = Source::open(&SourceConfig::Generator {
        seed: "another".into(),
        nats: vec![],
        gender: None,
    })
    .unwrap();
    let users = source.fetch(1, n).await.unwrap().users;
    let letters = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let row = user.to_row().unwrap();
            DeadLetter {
                stage: Stage::Sink,
                reason: "store refused the row".into(),
                origin: Some(Origin {
                    topic: "users_created".into(),
                    partition: 0,
                    offset: 10_000 + i as i64,
                }),
                source_position: None,
                key: Some(row.key()),
                payload: row.to_json(),
            }
        })
        .collect();
    h.log.dead_letter(letters).await.unwrap();
}

#[tokio::test]
async fn replay_puts_a_dead_letter_through_the_store() {
    let h = harness(None, 10).await;
    refused_rows(&h, 2).await;
    let letters = h.get("/api/v1/dead-letters").await;
    assert_eq!(letters["waiting"], 2);
    let letter = &letters["dead_letters"][0];
    assert_eq!(letter["stage"], "sink");
    assert_eq!(letter["reason"], "store refused the row");
    assert_eq!(letter["offset"], 10_000);
    let id = letter["id"].as_i64().unwrap();

    // No content type: still read as JSON, and only the one asked for.
    let r = h
        .client
        .post(format!("{}/api/v1/dead-letters/replay", h.base))
        .header(auth::REQUEST_HEADER, "1")
        .body(format!(r#"{{"ids": [{id}]}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        report,
        json!({"replayed": 1, "still_failing": 0, "remaining": 0, "not_found": 0, "next_after": null})
    );
    assert_eq!(h.sink.count().await.unwrap(), 11);
    let after = h.get("/api/v1/dead-letters").await;
    assert_eq!(after["waiting"], 1, "{after}");
    assert_ne!(after["dead_letters"][0]["id"], id);
    let all = h.get("/api/v1/dead-letters?all=true").await;
    assert!(all["dead_letters"][0]["replayed_ms"].is_number());

    // Ids that are unknown or already replayed are counted, not replayed.
    let (status, report) = h
        .post("/api/v1/dead-letters/replay", json!({"ids": [id, 987654]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["replayed"], 0);
    assert_eq!(report["not_found"], 2);
    let too_many: Vec<i64> = (0..1001).collect();
    let (status, _) = h
        .post("/api/v1/dead-letters/replay", json!({"ids": too_many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // An empty or unclear body replays nothing.
    for body in [
        json!({}),
        json!({"ids": []}),
        json!({"ids": [1], "all": true}),
        json!({"ids": [1], "after": 0}),
    ] {
        let (status, _) = h.post("/api/v1/dead-letters/replay", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(h.get("/api/v1/dead-letters").await["waiting"], 1);
    let (status, report) = h
        .post("/api/v1/dead-letters/replay", json!({"all": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["replayed"], 1);
    assert_eq!(h.sink.count().await.unwrap(), 12);
}

/// A letter whose key has another row in the store stays waiting, saying
/// why, unless the request asks to overwrite.
#[tokio::test]
async fn replay_leaves_another_row_of_the_key_unless_asked_to_overwrite() {
    let h = harness(None, 0).await;
    refused_rows(&h, 1).await;
    let letter = h.get("/api/v1/dead-letters").await["dead_letters"][0].clone();
    let id = letter["id"].as_i64().unwrap();
    let mut row: crate::record::Row = serde_json::from_slice(
        &h.log.dead_letters_by_id(vec![id]).await.unwrap()[0]
            .letter
            .payload,
    )
    .unwrap();
    row.email = "newer@example.com".into();
    let rows = crate::pipeline::sink::Rows::Users(Arc::from(vec![row.clone()]));
    h.sink.write(rows).await.unwrap();

    let (status, report) = h
        .post("/api/v1/dead-letters/replay", json!({"ids": [id]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            report["replayed"].as_u64(),
            report["still_failing"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let stored = h.sink.rows(10).await.unwrap();
    assert_eq!(stored, [row.clone()], "the other row stays");
    let waiting = h.get("/api/v1/dead-letters").await;
    let reason = waiting["dead_letters"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("another row of this record's key"),
        "{reason}"
    );

    let (status, report) = h
        .post(
            "/api/v1/dead-letters/replay",
            json!({"ids": [id], "overwrite": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["replayed"], 1, "{report}");
    let stored = h.sink.rows(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(
        stored[0].email, "newer@example.com",
        "written over when asked"
    );
}

/// `n` letters that fail again on every replay (their bytes are not JSON).
async fn hopeless_letters(h: &Harness, n: u64) {
    let letters = (0..n)
        .map(|i| DeadLetter {
            stage: Stage::Decode,
            reason: "not JSON".into(),
            origin: Some(Origin {
                topic: "users_created".into(),
                partition: 0,
                offset: 20_000 + i as i64,
            }),
            source_position: None,
            key: None,
            payload: b"not json".to_vec(),
        })
        .collect();
    h.log.dead_letter(letters).await.unwrap();
}

#[tokio::test]
async fn replay_all_walks_past_letters_that_keep_failing() {
    let h = harness(None, 0).await;
    // A full page of letters that fail again, then three good ones.
    hopeless_letters(&h, 1000).await;
    refused_rows(&h, 3).await;
    let (status, first) = h
        .post("/api/v1/dead-letters/replay", json!({"all": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["replayed"], 0, "{first}");
    assert_eq!(first["still_failing"], 1000, "{first}");
    assert_eq!(first["remaining"], 3, "{first}");
    // The cursor goes on past them, to the good ones.
    let (_, second) = h
        .post(
            "/api/v1/dead-letters/replay",
            json!({"all": true, "after": first["next_after"]}),
        )
        .await;
    assert_eq!(second["replayed"], 3, "{second}");
    assert_eq!(second["still_failing"], 0, "{second}");
    assert_eq!(second["remaining"], 0, "{second}");
    assert_eq!(h.sink.count().await.unwrap(), 3);
    // Past the end: nothing to look at, no cursor.
    let (_, third) = h
        .post(
            "/api/v1/dead-letters/replay",
            json!({"all": true, "after": second["next_after"]}),
        )
        .await;
    assert_eq!(
        third,
        json!({"replayed": 0, "still_failing": 0, "remaining": 0, "not_found": 0, "next_after": null})
    );
    // The failing ones still wait, first in line for the next full pass.
    assert_eq!(h.get("/api/v1/dead-letters").await["waiting"], 1000);
}

#[tokio::test]
async fn waiting_counts_every_letter_not_only_the_listed_ones() {
    let h = harness(None, 0).await;
    refused_rows(&h, 60).await;
    let letters = h.get("/api/v1/dead-letters").await;
    assert_eq!(letters["waiting"], 60);
    assert_eq!(letters["dead_letters"].as_array().unwrap().len(), 50);
    let few = h.get("/api/v1/dead-letters?limit=5").await;
    assert_eq!(few["dead_letters"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn every_listed_route_answers() {
    let h = harness(None, 0).await;
    for (method, path, _) in routes() {
        let path = path.replace("{name}", "random_users");
        let url = format!("{}{path}", h.base);
        let r = match method {
            "get" => h.client.get(&url),
            _ => h
                .client
                .post(&url)
                .header(auth::REQUEST_HEADER, "1")
                .body(r#"{"ids": [424242], "token": "x"}"#),
        };
        let status = r.send().await.unwrap().status();
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn a_token_guards_everything_but_the_page_and_health() {
    let h = harness(Some(TOKEN), 0).await;
    let get = |path: &str, bearer: Option<&str>| {
        let mut r = h.client.get(format!("{}{path}", h.base));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r.send()
    };
    for path in [
        "/api/v1/pipelines",
        "/api/v1/status?pipeline=orders",
        "/api/v1/jobs",
        "/api/v1/config",
        "/metrics",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = get(path, Some("wrong-token-wrong-token")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = get(path, Some(TOKEN)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            !r.text().await.unwrap().contains(TOKEN),
            "{path} shows the token"
        );
    }
    for path in ["/", "/assets/app.js", "/healthz", "/api/v1/session"] {
        assert_eq!(
            get(path, None).await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let session = get("/api/v1/session", None).await.unwrap();
    let session: Value = session.json().await.unwrap();
    assert_eq!(
        session,
        json!({"authenticated": false, "token_required": true})
    );

    // The page logs in with the token and then uses a cookie.
    let login = |token: &str| {
        h.client
            .post(format!("{}/api/v1/login", h.base))
            .header(auth::REQUEST_HEADER, "1")
            .json(&json!({ "token": token }))
            .send()
    };
    let r = login("wrong-token-wrong-token").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    let r = login(TOKEN).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is a session, not the token"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session_cookie = cookie.split(';').next().unwrap().to_owned();
    // Behind a TLS proxy the cookie is Secure.
    let r = h
        .client
        .post(format!("{}/api/v1/login", h.base))
        .header(auth::REQUEST_HEADER, "1")
        .header("x-forwarded-proto", "https")
        .json(&json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let with_cookie = |path: &str| {
        h.client
            .get(format!("{}{path}", h.base))
            .header("cookie", session_cookie.clone())
            .send()
    };
    assert_eq!(
        with_cookie("/api/v1/status").await.unwrap().status(),
        StatusCode::OK
    );
    // Logging out ends the session.
    let r = h
        .client
        .post(format!("{}/api/v1/logout", h.base))
        .header(auth::REQUEST_HEADER, "1")
        .header("cookie", session_cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        with_cookie("/api/v1/status").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cross_site_requests_and_foreign_host_names_are_refused() {
    let h = harness(None, 0).await;
    let trigger = format!("{}/api/v1/jobs/random_users/trigger", h.base);
    // A form post from another site: no custom header.
    let r = h.client.post(&trigger).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A script on another site that got the header through somehow.
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = h
            .client
            .post(&trigger)
            .header(auth::REQUEST_HEADER, "1")
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    // DNS rebinding: a foreign name that resolves to 127.0.0.1.
    let r = h
        .client
        .get(format!("{}/api/v1/status", h.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    // None of that queued a run.
    assert!(h.history.runs("random_users", 10).unwrap().is_empty());
    // The page itself, same origin, may.
    let host = h.base.trim_start_matches("http://").to_owned();
    let r = h
        .client
        .post(&trigger)
        .header(auth::REQUEST_HEADER, "1")
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness(None, 0).await;
    let r = h
        .client
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = h
            .client
            .get(format!("{}/readyz", h.base))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn every_route_is_in_the_openapi_file() {
    let spec = include_str!("../../docs/openapi.yaml");
    let lines: Vec<&str> = spec.lines().collect();
    for (method, path, _) in routes() {
        let at = lines
            .iter()
            .position(|l| *l == format!("  {path}:"))
            .unwrap_or_else(|| panic!("{path} is not in docs/openapi.yaml"));
        let block = lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("    ") || l.is_empty());
        let declared = block.into_iter().any(|l| *l == format!("    {method}:"));
        assert!(declared, "{method} {path} is not in docs/openapi.yaml");
    }
    // And the file documents no route the server lacks.
    for l in &lines {
        if let Some(path) = l.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            let path = format!("/{path}");
            assert!(
                routes().iter().any(|(_, p, _)| *p == path),
                "docs/openapi.yaml documents {path}, which the server does not serve"
            );
        }
    }
}

mod browse;
mod ops;
