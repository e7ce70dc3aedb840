//! The deployment files in `deploy/` as an SRE would apply them. There is no container
//! engine or Kubernetes cluster on this machine, so these tests keep the files correct by
//! reading them against the code they describe: every service has its Deployment, probes on
//! the port its settings listen on, resources, a disruption budget and an autoscaler on the
//! consumer it really uses; every setting a manifest passes is one the service accepts; the
//! images build packages and binaries that exist with the pinned runtime versions; the
//! dashboard asks for metrics the services export. `deploy_cluster.rs` runs the NATS files.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use gradients_bus::subjects::{consumers, streams};
use gradients_config::Settings;
use gradients_testkit::workspace_root;
use yaml_rust2::{Yaml, YamlLoader};

/// A service run as a Deployment: its name, the consumer its autoscaler follows (with the
/// stream), or none for intake, which scales on CPU.
struct Service {
    name: &'static str,
    binary: &'static str,
    scaled_on: Option<(&'static str, &'static str)>,
}

const SERVICES: [Service; 5] = [
    Service { name: "intake", binary: "gradients-intake", scaled_on: None },
    Service {
        name: "dispatch",
        binary: "gradients-dispatch",
        scaled_on: Some((streams::TASKS, consumers::DISPATCH_TASKS)),
    },
    Service {
        name: "evaluator",
        binary: "gradients-evaluator",
        scaled_on: Some((streams::SUBMISSIONS, consumers::EVALUATOR_SUBMISSIONS)),
    },
    Service {
        name: "ledger",
        binary: "gradients-ledger",
        scaled_on: Some((streams::EVALUATIONS, consumers::LEDGER_EVALUATIONS)),
    },
    Service { name: "audit", binary: "gradients-audit", scaled_on: Some((streams::LEDGER, consumers::AUDIT_LEDGER)) },
];

fn deploy_dir() -> std::path::PathBuf {
    workspace_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document in `path`.
fn documents(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn text(yaml: &Yaml) -> &str {
    yaml.as_str().unwrap_or_else(|| panic!("expected a string, found {yaml:?}"))
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map(Vec::as_slice).unwrap_or_else(|| panic!("expected a list, found {yaml:?}"))
}

/// The documents of kind `kind` named `name` among `docs`.
fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

/// Every manifest the base kustomization lists, parsed.
fn base_documents() -> Vec<Yaml> {
    let base = deploy_dir().join("k8s/base");
    let kustomization = &documents(&base.join("kustomization.yaml"))[0];
    let mut docs = Vec::new();
    for resource in list(&kustomization["resources"]) {
        docs.extend(documents(&base.join(text(resource))));
    }
    docs
}

/// The variables a container's `env` sets, with a stand-in for each secret, plus the
/// generated config maps' literals and env files (what `envFrom` brings in).
fn container_environment(container: &Yaml) -> HashMap<String, String> {
    let base = deploy_dir().join("k8s/base");
    let kustomization = &documents(&base.join("kustomization.yaml"))[0];
    let mut env = HashMap::new();
    for generator in list(&kustomization["configMapGenerator"]) {
        for literal in generator["literals"].as_vec().into_iter().flatten() {
            let (key, value) = text(literal).split_once('=').expect("KEY=value");
            env.insert(key.to_owned(), value.to_owned());
        }
        for file in generator["envs"].as_vec().into_iter().flatten() {
            for line in read(&base.join(text(file))).lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                let (key, value) = line.split_once('=').expect("KEY=value");
                env.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    for variable in list(&container["env"]) {
        let name = text(&variable["name"]).to_owned();
        let value = match &variable["value"] {
            Yaml::BadValue => secret_stand_in(&name),
            value => text(value).to_owned(),
        };
        env.insert(name, value);
    }
    env
}

/// A plausible value for a variable read from a secret.
fn secret_stand_in(name: &str) -> String {
    if name.ends_with("STORE__URL") || name.ends_with("STORE_URL") {
        "postgres://gradients:secret@postgres/gradients".to_owned()
    } else {
        "secret".to_owned()
    }
}

/// The settings a process started with `env` would run with: unknown keys and invalid
/// values fail here as they would fail the service at start-up.
fn settings_from(env: HashMap<String, String>, whose: &str) -> Settings {
    let gradients_env: HashMap<String, String> =
        env.into_iter().filter(|(k, _)| k.starts_with("GRADIENTS__")).collect();
    Settings::load_with_env::<&Path>(&[], Some(gradients_env))
        .unwrap_or_else(|e| panic!("{whose}: the settings its manifest passes are refused: {e}"))
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in {addr}"))
}

fn http_addr<'a>(settings: &'a Settings, service: &str) -> &'a str {
    match service {
        "intake" => &settings.intake.http_addr,
        "dispatch" => &settings.dispatch.http_addr,
        "evaluator" => &settings.evaluator.http_addr,
        "ledger" => &settings.ledger.http_addr,
        "audit" => &settings.audit.http_addr,
        other => panic!("no HTTP port for {other}"),
    }
}

/// Each service: a Deployment whose settings load, listening where its probes and Service
/// look, with resources, a PodDisruptionBudget over its pods and its autoscaler.
#[test]
fn every_service_has_its_deployment_probes_budget_and_scaler() {
    let docs = base_documents();
    for service in &SERVICES {
        let name = service.name;
        let deployment = find(&docs, "Deployment", name).unwrap_or_else(|| panic!("no Deployment for {name}"));
        let container = &list(&deployment["spec"]["template"]["spec"]["containers"])[0];
        assert_eq!(text(&list(&container["command"])[0]), format!("/usr/local/bin/{}", service.binary));

        let settings = settings_from(container_environment(container), name);
        let port = port_of(http_addr(&settings, name));
        let declared = &list(&container["ports"])[0];
        assert_eq!(declared["containerPort"].as_i64(), Some(port), "{name}: container port vs its http_addr");
        assert_eq!(text(&declared["name"]), "http");
        for (probe, path) in
            [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]
        {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{name}: {probe}");
            assert_eq!(get["port"].as_str(), Some("http"), "{name}: {probe}");
        }
        let requests = &container["resources"]["requests"];
        assert!(requests["cpu"].as_str().is_some() && requests["memory"].as_str().is_some(), "{name}: requests");
        assert!(container["resources"]["limits"]["memory"].as_str().is_some(), "{name}: memory limit");

        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(pod_labels, selector, "{name}: the selector matches the pods");
        let kube_service = find(&docs, "Service", name).unwrap_or_else(|| panic!("no Service for {name}"));
        assert_eq!(&kube_service["spec"]["selector"], selector);
        assert_eq!(list(&kube_service["spec"]["ports"])[0]["targetPort"].as_str(), Some("http"));
        let budget = find(&docs, "PodDisruptionBudget", name).unwrap_or_else(|| panic!("no PDB for {name}"));
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], selector, "{name}: the PDB covers its pods");

        match service.scaled_on {
            None => {
                let hpa = find(&docs, "HorizontalPodAutoscaler", name).unwrap_or_else(|| panic!("no HPA for {name}"));
                assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some(name));
                assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"].as_str(), Some("Deployment"));
            }
            Some((stream, consumer)) => {
                let scaler = find(&docs, "ScaledObject", name).unwrap_or_else(|| panic!("no ScaledObject for {name}"));
                assert_eq!(scaler["spec"]["scaleTargetRef"]["name"].as_str(), Some(name));
                let trigger = &list(&scaler["spec"]["triggers"])[0];
                assert_eq!(trigger["type"].as_str(), Some("nats-jetstream"));
                assert_eq!(trigger["metadata"]["stream"].as_str(), Some(stream), "{name}: the stream it scales on");
                assert_eq!(trigger["metadata"]["consumer"].as_str(), Some(consumer), "{name}: the consumer's lag");
            }
        }
    }
}

/// The reference miner's Deployment passes settings the trainer accepts.
#[test]
fn the_trainer_deployment_passes_settings_it_accepts() {
    let docs = base_documents();
    let deployment = find(&docs, "Deployment", "trainer").expect("the trainer's Deployment");
    let container = &list(&deployment["spec"]["template"]["spec"]["containers"])[0];
    let settings = settings_from(container_environment(container), "trainer");
    assert_eq!(settings.trainer.device, "auto", "CUDA when the pod has its GPU");
    assert!(container["resources"]["limits"]["nvidia.com/gpu"].as_i64() == Some(1), "one GPU");
}

/// The overlays build on the base and set the replicas of streams to what their NATS has.
#[test]
fn overlays_choose_one_or_three_stream_replicas() {
    for (overlay, replicas, nodes) in [("single-node", "1", 1), ("production", "3", 3)] {
        let path = deploy_dir().join(format!("k8s/overlays/{overlay}/kustomization.yaml"));
        let kustomization = &documents(&path)[0];
        assert_eq!(list(&kustomization["resources"]).iter().map(text).collect::<Vec<_>>(), ["../../base"]);
        let literals: HashMap<String, String> = list(&kustomization["configMapGenerator"])
            .iter()
            .flat_map(|g| list(&g["literals"]).iter().map(text))
            .map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).expect("KEY=value"))
            .collect();
        assert_eq!(literals["GRADIENTS__NATS__REPLICAS"], replicas, "{overlay}");
        let settings = settings_from(literals.clone(), overlay);
        assert_eq!(settings.nats.replicas.to_string(), replicas);
        assert_eq!(settings.nats.url.len(), nodes, "{overlay}: a URL per NATS node");
    }
}

/// Compose: every service passes settings it accepts, listens where its port and health
/// check look, and runs an image this repository builds.
#[test]
fn compose_runs_every_service_with_settings_it_accepts() {
    let compose = &documents(&deploy_dir().join("compose.yaml"))[0];
    let images: BTreeSet<String> = std::fs::read_dir(deploy_dir().join("docker"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".Dockerfile").to_owned())
        .map(|image| format!("gradients/{image}"))
        .collect();
    let mut names: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
    names.push("trainer");
    for name in names {
        let service = &compose["services"][name];
        assert!(images.contains(text(&service["image"])), "{name}: image {:?} is not built here", service["image"]);
        let env: HashMap<String, String> = service["environment"]
            .as_hash()
            .unwrap_or_else(|| panic!("{name}: environment"))
            .iter()
            .map(|(k, v)| (text(k).to_owned(), text(v).replace("${POSTGRES_PASSWORD}", "secret")))
            .map(|(k, v)| if v.contains("${") { (k.clone(), secret_stand_in(&k)) } else { (k, v) })
            .collect();
        let settings = settings_from(env, name);
        if name == "intake" {
            let port = port_of(&settings.intake.http_addr);
            let health = format!("{:?}", service["healthcheck"]["test"]);
            assert!(health.contains(&format!("127.0.0.1/{port}")) && health.contains("/readyz"), "{health}");
        }
    }
    let init = read(&deploy_dir().join("postgres/init.sh"));
    for name in ["intake", "dispatch", "ledger", "audit"] {
        assert!(init.contains(&format!("CREATE DATABASE gradients_{name} ")), "no database for {name}");
    }
}

/// The images build packages that exist, copy binaries those packages make, and pin the
/// runtime libraries to the versions scripts/bootstrap.sh tests with.
#[test]
fn images_build_real_binaries_with_the_pinned_runtimes() {
    let root = workspace_root();
    let mut binaries = BTreeSet::new();
    let mut packages = BTreeSet::new();
    for manifest in std::fs::read_dir(root.join("services")).unwrap() {
        let cargo = read(&manifest.unwrap().path().join("Cargo.toml"));
        let mut lines = cargo.lines();
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("name = \"").and_then(|n| n.strip_suffix('"')) {
                packages.insert(name.to_owned());
            }
            if line == "[[bin]]" {
                let name = lines.next().and_then(|l| l.strip_prefix("name = \"")).map(|n| n.trim_end_matches('"'));
                binaries.insert(name.expect("a [[bin]] name").to_owned());
            }
        }
    }
    let bootstrap = read(&root.join("scripts/bootstrap.sh"));
    let pinned = |package: &str| {
        let start = bootstrap.find(&format!("\"{package}==")).unwrap_or_else(|| panic!("{package} not pinned"));
        bootstrap[start + package.len() + 3..].split('"').next().unwrap().to_owned()
    };
    for entry in std::fs::read_dir(deploy_dir().join("docker")).unwrap() {
        let path = entry.unwrap().path();
        let file = read(&path);
        let tokens: Vec<&str> = file
            .split(|c: char| c.is_whitespace() || matches!(c, '"' | ',' | '[' | ']'))
            .filter(|t| !t.is_empty())
            .collect();
        for pair in tokens.windows(2).filter(|pair| pair[0] == "-p" && pair[1].starts_with("gradients")) {
            assert!(packages.contains(pair[1]), "{}: no package {}", path.display(), pair[1]);
        }
        let copied = tokens
            .iter()
            .filter_map(|t| ["target/release/", "/usr/local/bin/", "/out/"].iter().find_map(|dir| t.strip_prefix(dir)));
        let mut seen = 0;
        for binary in copied.filter(|b| b.starts_with("gradients")) {
            assert!(binaries.contains(binary), "{}: no binary {binary}", path.display());
            seen += 1;
        }
        assert!(seen > 0, "{}: copies no binary", path.display());
        for (argument, package) in [("TORCH_VERSION", "torch"), ("ONNXRUNTIME_VERSION", "onnxruntime")] {
            if let Some(at) = file.find(&format!("ARG {argument}=")) {
                let version = file[at..].lines().next().unwrap().split('=').nth(1).unwrap();
                assert_eq!(version, pinned(package), "{}: {argument}", path.display());
            }
        }
    }
}

/// Every metric the dashboard queries is one the services export.
#[test]
fn the_dashboard_asks_for_exported_metrics() {
    // A family shows in the exposition once it has a sample: record one of each.
    let metrics = gradients_telemetry::Metrics::new("dashboard-check");
    let moment = std::time::Duration::from_millis(3);
    metrics.handled("handler", gradients_telemetry::Outcome::Ack, moment);
    metrics.api_request("endpoint", "OK", moment);
    metrics.rejected("EMPTY_DATASET");
    metrics.set_consumer_pending("consumer", 1);
    metrics.published("tasks");
    let exposition = metrics.encode();
    let families: BTreeSet<&str> =
        exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(!families.is_empty(), "{exposition}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy_dir().join("grafana/gradients.json"))).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6, "a panel per signal");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let used =
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("gradients_"));
            for metric in used {
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| metric.strip_suffix(suffix))
                    .unwrap_or(metric);
                assert!(families.contains(family), "{}: {metric} is not exported ({families:?})", panel["title"]);
            }
        }
    }
}
