//! The deployment files (`deploy/compose.yaml`, `deploy/k8s/`, `Containerfile`)
//! against the binary they deploy: every command line they give parses with
//! the real flags, every configuration file they mount passes `config
//! check`, and the names, ports and paths they share agree with each other.
//! Their schemas (the Compose specification, Kubernetes' OpenAPI) are checked
//! by `.ci/run`'s deploy step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde::Deserialize;
use serde_yaml_ng::Value;
use tributary::cli::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
            // Resolve `<<: *anchor` merges, as Compose does.
            value.apply_merge().expect("merge keys resolve");
            value
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list of strings, got {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// The command line parses with the binary's own flags.
fn parses(args: &[String], context: &str) {
    let argv = std::iter::once("tributary".to_string()).chain(args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(argv) {
        panic!(
            "{context}: `tributary {}` does not parse: {e}",
            args.join(" ")
        );
    }
}

/// The value after `--config` in a command line.
fn config_flag(args: &[String]) -> Option<&str> {
    args.iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `tributary config check --config FILE` with a web token in the
/// environment (the files listen beyond loopback); returns the resolved
/// configuration it prints.
fn config_check(file: &Path) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
    for (k, _) in std::env::vars() {
        if k.starts_with("TRIBUTARY_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["config", "check", "--config"])
        .arg(file)
        .env(
            "TRIBUTARY_WEB_TOKEN",
            "a-token-for-the-check-only-0123456789",
        )
        .current_dir(std::env::temp_dir())
        .output()
        .expect("tributary starts");
    assert!(
        out.status.success(),
        "config check {} failed:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The port of `[web] listen = "HOST:PORT"` in a configuration file.
fn listen_port(file: &Path) -> u16 {
    let text = std::fs::read_to_string(file).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let listen = config["web"]["listen"].as_str().expect("[web] listen");
    listen.rsplit(':').next().unwrap().parse().expect("a port")
}

/// The hosts of `kafka://h1:p,h2:p/topic` and `cassandra://h:p/ks.table`.
fn url_hosts(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let mut hosts = BTreeSet::new();
    for section in ["log", "sink"] {
        let url = config[section]["url"].as_str().expect("a url");
        let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        for node in authority.split(',') {
            hosts.insert(node.rsplit_once(':').unwrap().0.to_string());
        }
    }
    hosts
}

#[test]
fn compose_services_run_real_commands_on_a_config_that_checks() {
    let dir = root().join("deploy");
    let compose = &yaml_documents(&dir.join("compose.yaml"))[0];
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    for wanted in [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "cassandra",
        "serve",
        "process",
    ] {
        assert!(names.contains(wanted), "no service {wanted} in {names:?}");
    }

    // Both tributary services mount the one config file where --config says.
    let config_file = dir.join("tributary.toml");
    for name in ["serve", "process"] {
        let service = &services[name];
        let command = strings(&service["command"]);
        parses(&command, &format!("service {name}"));
        let mounted = config_flag(&command).expect("--config");
        let volumes = strings(&service["volumes"]);
        assert!(
            volumes.contains(&format!("./tributary.toml:{mounted}:ro")),
            "service {name} reads {mounted} but mounts {volumes:?}"
        );
        assert!(
            service["env_file"].as_sequence().is_some(),
            "service {name} takes its secrets from an env file"
        );
    }
    assert_eq!(strings(&services["serve"]["command"])[0], "serve");
    let process = strings(&services["process"]["command"]);
    assert_eq!(&process[..2], ["process", "--follow"]);
    assert!(
        services["process"]["deploy"]["replicas"].as_u64().unwrap() >= 2,
        "at least two processors share the group"
    );

    // The dashboard is published on the host's loopback, on the port the
    // config listens on, and the health check asks that port.
    let port = listen_port(&config_file);
    let ports = strings(&services["serve"]["ports"]);
    assert_eq!(ports, [format!("127.0.0.1:{port}:{port}")]);
    let health = strings(&services["serve"]["healthcheck"]["test"]);
    assert_eq!(health[0], "CMD");
    assert_eq!(health[1], "/tributary");
    parses(&health[2..], "serve's health check");

    // Every host the config names is a service of the file.
    for host in url_hosts(&config_file) {
        assert!(names.contains(&host), "{host} is not a service: {names:?}");
    }
    let checked = config_check(&config_file);
    assert!(checked.contains("random_users"), "the job is in: {checked}");
}

#[test]
fn kubernetes_manifests_agree_with_the_binary_and_each_other() {
    let dir = root().join("deploy/k8s");
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let resources = strings(&kustomization["resources"]);
    let mut documents = Vec::new();
    for file in &resources {
        assert!(dir.join(file).is_file(), "{file} is listed but missing");
        documents.extend(yaml_documents(&dir.join(file)));
    }
    let config_file = dir.join("tributary.toml");
    let generated = &kustomization["configMapGenerator"][0];
    assert_eq!(strings(&generated["files"]), ["tributary.toml"]);
    let config_map = generated["name"].as_str().unwrap();
    config_check(&config_file);

    let secret = &yaml_documents(&dir.join("secret.example.yaml"))[0];
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let port = listen_port(&config_file);

    let mut workloads = BTreeSet::new();
    for doc in &documents {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if kind != "StatefulSet" && kind != "Deployment" {
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let pod = &doc["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let args = strings(&container["args"]);
        parses(&args, &name);

        // --config is a file in the mounted ConfigMap.
        let config = Path::new(config_flag(&args).expect("--config"));
        let mount = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"].as_str() == config.parent().and_then(Path::to_str))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {}", config.display()));
        let volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mount's volume");
        assert_eq!(volume["configMap"]["name"].as_str(), Some(config_map));

        // Secrets come from the Secret, through variables the binary reads.
        for var in container["env"].as_sequence().unwrap() {
            let var_name = var["name"].as_str().unwrap();
            assert!(
                readme.contains(&format!("`{var_name}`")),
                "{name}: {var_name} is not a documented variable"
            );
            let key = &var["valueFrom"]["secretKeyRef"];
            assert_eq!(key["name"].as_str(), Some(secret_name));
            let key = key["key"].as_str().unwrap();
            assert!(
                secret["stringData"][key].is_string(),
                "{name}: key {key} is not in the Secret"
            );
        }
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
        if args[0] == "serve" {
            assert_eq!(kind, "StatefulSet");
            assert_eq!(doc["spec"]["replicas"].as_u64(), Some(1), "one scheduler");
            assert_eq!(
                container["ports"][0]["containerPort"].as_u64(),
                Some(u64::from(port))
            );
            assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
            assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        } else {
            assert_eq!(&args[..2], ["process", "--follow"]);
        }
        workloads.insert((kind.to_string(), name));
    }
    assert_eq!(workloads.len(), 2, "serve and process: {workloads:?}");

    // The autoscaler scales the processors on a metric the binary exports.
    let hpa = documents
        .iter()
        .find(|d| d["kind"] == "HorizontalPodAutoscaler")
        .expect("an autoscaler");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert!(workloads.contains(&(
        target["kind"].as_str().unwrap().to_string(),
        target["name"].as_str().unwrap().to_string()
    )));
    let metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
        .as_str()
        .unwrap();
    let sources = walk_sources(&root().join("src"));
    assert!(
        sources.contains(&format!("\"{metric}\"")),
        "no metric {metric} in src/"
    );
    let partitions: toml::Table =
        toml::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    let partitions = partitions["log"]["kafka"]["partitions"]
        .as_integer()
        .unwrap();
    assert!(
        hpa["spec"]["maxReplicas"].as_i64().unwrap() <= partitions,
        "more processors than partitions would sit idle"
    );
}

#[test]
fn the_image_runs_the_binary_as_a_user_with_a_health_check() {
    let text = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    let instruction = |name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l[name.len() + 1..].trim().to_string())
            .collect()
    };
    assert_eq!(instruction("FROM"), ["scratch"]);
    assert_eq!(instruction("ENTRYPOINT"), [r#"["/tributary"]"#]);
    assert_eq!(instruction("USER"), ["10001:10001"]);
    let cmd: Vec<String> = serde_json::from_str(&instruction("CMD")[0]).unwrap();
    parses(&cmd, "CMD");
    // HEALTHCHECK options \ newline CMD ["/tributary", …]
    let health = text
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.split("CMD ").nth(1))
        .and_then(|json| json.lines().next())
        .expect("a HEALTHCHECK with CMD");
    let health: Vec<String> = serde_json::from_str(health).unwrap();
    assert_eq!(health[0], "/tributary");
    parses(&health[1..], "HEALTHCHECK");
}

fn walk_sources(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.push_str(&walk_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            all.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    all
}

#[test]
fn healthcheck_asks_a_running_serve_and_fails_once_it_is_gone() {
    let s = crate::support::Sandbox::new();
    let server = crate::dashboard::serve(&s, &[], &[]);
    let listen = format!("127.0.0.1:{}", server.port);

    // Alive at once; ready once the log, store and scheduler answer.
    let live = s.run(&["healthcheck", "--live", "--listen", &listen]);
    assert!(live.status.success(), "{}", crate::support::stderr(&live));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        let out = s.run(&["healthcheck", "--listen", &listen]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(ready.status.success(), "{}", crate::support::stderr(&ready));
    let said = String::from_utf8_lossy(&ready.stdout);
    assert!(said.contains("/readyz"), "{said}");

    drop(server);
    let gone = s.run(&["healthcheck", "--listen", &listen]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        crate::support::stderr(&gone).contains("does not answer"),
        "{}",
        crate::support::stderr(&gone)
    );

    // With the dashboard off there is nothing to ask: a usage error.
    let off = s.run(&["healthcheck", "--listen", "off"]);
    assert_eq!(
        off.status.code(),
        Some(2),
        "{}",
        crate::support::stderr(&off)
    );
}

#[test]
fn healthcheck_refuses_an_answer_that_never_ends_and_asks_unspecified_on_loopback() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = conn.read(&mut request);
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n");
        // An endless body, until the client hangs up.
        let block = [b'x'; 8192];
        while conn.write_all(&block).is_ok() {}
    });
    let s = crate::support::Sandbox::new();
    // 0.0.0.0 is asked on loopback, and needs no token to be asked.
    let out = s.run(&[
        "healthcheck",
        "--listen",
        &format!("0.0.0.0:{port}"),
        "--timeout",
        "20s",
    ]);
    server.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        crate::support::stderr(&out)
    );
    assert!(
        crate::support::stderr(&out).contains("not tributary serve's"),
        "{}",
        crate::support::stderr(&out)
    );
    let zero = s.run(&["healthcheck", "--listen", "127.0.0.1:1", "--timeout", "0s"]);
    assert_eq!(zero.status.code(), Some(2));
}
