//! The market under load, as production runs it: a private `nats-server` (or a local one
//! named on the command line) and every service a process of its own (`gradients serve
//! intake|dispatch|evaluator|ledger|audit`, the workspace's binary), so replicas of the
//! scaled service are real processes sharing one durable consumer.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gradients_miner::Identity;
use gradients_testkit::{free_port, http_get, NatsServer};
use tokio::process::{Child, Command};

/// The services of the pipeline, in the order they start.
pub const SERVICES: [&str; 5] = ["intake", "dispatch", "evaluator", "ledger", "audit"];

/// How long a service may take to answer `/readyz` (a loaded machine starts five at once).
const READY_LIMIT: Duration = Duration::from_secs(90);

/// Where the NATS server comes from.
pub enum Nats {
    /// Started here, killed with the market.
    Own(NatsServer),
    /// A server the operator runs on this machine.
    Local(String),
}

impl Nats {
    /// A private server, or the local one at `url` (refused unless it is on this machine).
    pub fn start(url: Option<&str>) -> anyhow::Result<Self> {
        match url {
            None => Ok(Self::Own(NatsServer::start()?)),
            Some(url) => {
                ensure_local(url)?;
                Ok(Self::Local(url.to_owned()))
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Own(server) => server.url(),
            Self::Local(url) => url.clone(),
        }
    }
}

/// Refuses a URL whose host is not a loopback address: load is never sent elsewhere.
fn ensure_local(url: &str) -> anyhow::Result<()> {
    let host_port = url.split("://").last().unwrap_or(url).trim_end_matches('/');
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    let with_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:4222") };
    let addrs: Vec<IpAddr> =
        with_port.to_socket_addrs().with_context(|| format!("resolving {url}"))?.map(|a| a.ip()).collect();
    if addrs.is_empty() || addrs.iter().any(|ip| !ip.is_loopback()) {
        bail!("--nats-url {url} is not a local address: the load test only drives servers on this machine");
    }
    Ok(())
}

/// One service process and the port of its health endpoint.
struct Process {
    name: String,
    child: Child,
    port: u16,
}

/// The running market: NATS, the keys, the service processes.
pub struct Market {
    pub nats: Nats,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    processes: Vec<Process>,
    bin: PathBuf,
    /// Dispatch's public key, which the load miners check assignments against.
    pub dispatch_key: Vec<u8>,
}

/// How the market is started.
pub struct MarketOptions<'a> {
    pub nats_url: Option<&'a str>,
    pub bin_dir: &'a Path,
    pub dir: &'a Path,
    /// The service run as several processes, and how many.
    pub scaled: &'a str,
    pub replicas: usize,
    pub miners_per_task: usize,
    pub log_filter: &'a str,
}

impl Market {
    /// Starts NATS and every service, and waits until each process is ready.
    pub async fn start(options: &MarketOptions<'_>) -> anyhow::Result<Self> {
        let bin = options.bin_dir.join("gradients");
        if !bin.exists() {
            bail!(
                "{} is missing: build the workspace's binaries (cargo build --bins), or pass --bin-dir",
                bin.display()
            );
        }
        let nats = Nats::start(options.nats_url)?;
        let dir = options.dir.to_owned();
        std::fs::create_dir_all(&dir)?;
        let dispatch = Identity::generate();
        dispatch.save(&dir.join("dispatch.key"))?;
        for key in ["evaluator.key", "audit.key"] {
            Identity::generate().save(&dir.join(key))?;
        }
        let path = |name: &str| dir.join(name).display().to_string();
        let mut env = vec![
            ("GRADIENTS__NATS__URL".to_owned(), nats.url()),
            ("GRADIENTS__NATS__RETRY_BACKOFF_MS".to_owned(), "50".to_owned()),
            ("GRADIENTS__TELEMETRY__LOG_FILTER".to_owned(), options.log_filter.to_owned()),
            ("GRADIENTS__DISPATCH__KEY_FILE".to_owned(), path("dispatch.key")),
            ("GRADIENTS__EVALUATOR__KEY_FILE".to_owned(), path("evaluator.key")),
            ("GRADIENTS__AUDIT__KEY_FILE".to_owned(), path("audit.key")),
        ];
        // The evaluator loads ONNX Runtime at run time: the one the set-up installed, unless
        // the caller points at another (cargo sets it for `cargo run`, not for the binary).
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            if let Some(lib) = installed_onnxruntime() {
                env.push(("ORT_DYLIB_PATH".to_owned(), lib.display().to_string()));
            }
        }
        let mut market =
            Self { nats, dir, env, processes: Vec::new(), bin, dispatch_key: dispatch.public_key().to_vec() };
        for service in SERVICES {
            let count = if service == options.scaled { options.replicas.max(1) } else { 1 };
            for replica in 0..count {
                market.spawn(service, replica, options)?;
            }
        }
        market.wait_ready().await?;
        Ok(market)
    }

    /// The names of the running processes (`evaluator-1`, ...).
    pub fn process_names(&self) -> Vec<String> {
        self.processes.iter().map(|p| p.name.clone()).collect()
    }

    /// Every process's `/metrics` page, by process name.
    pub async fn metrics_pages(&self) -> Vec<(String, String)> {
        let mut pages = Vec::new();
        for process in &self.processes {
            pages.push((process.name.clone(), http_get(process.port, "/metrics").await));
        }
        pages
    }

    fn spawn(&mut self, service: &str, replica: usize, options: &MarketOptions<'_>) -> anyhow::Result<()> {
        let port = free_port();
        // Replicas of a service share its database, as they do in production.
        let sqlite = |name: &str| format!("sqlite://{}?mode=rwc", self.dir.join(name).display());
        let upper = service.to_uppercase();
        let mut extra: Vec<(String, String)> =
            vec![(format!("GRADIENTS__{upper}__HTTP_ADDR"), format!("127.0.0.1:{port}"))];
        match service {
            "intake" | "dispatch" | "ledger" => {
                extra.push(("GRADIENTS__STORE__URL".into(), sqlite(&format!("{service}.db"))));
            }
            "audit" => {
                extra.push(("GRADIENTS__AUDIT__STORE_URL".into(), sqlite("audit.db")));
                extra.push(("GRADIENTS__AUDIT__CHECKPOINT_INTERVAL_MS".into(), "1000".into()));
            }
            "evaluator" => {
                let models = self.dir.join(format!("evaluator-models-{replica}"));
                extra.push(("GRADIENTS__EVALUATOR__MODELS_DIR".into(), models.display().to_string()));
            }
            _ => {}
        }
        if service == "dispatch" {
            let n = options.miners_per_task.to_string();
            extra.push(("GRADIENTS__DISPATCH__MIN_MINERS_PER_TASK".into(), n.clone()));
            extra.push(("GRADIENTS__DISPATCH__MAX_MINERS_PER_TASK".into(), n));
        }
        let name = format!("{service}-{replica}");
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut command = Command::new(&self.bin);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["serve", service])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        self.processes.push(Process { name, child, port });
        Ok(())
    }

    /// Waits until every process answers `/readyz` with 200, failing on one that exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        for process in &mut self.processes {
            loop {
                if http_get(process.port, "/readyz").await.starts_with("HTTP/1.1 200") {
                    break;
                }
                if let Some(status) = process.child.try_wait()? {
                    bail!(
                        "{} exited ({status}) before it was ready; its log:\n{}",
                        process.name,
                        tail(&self.dir.join(format!("{}.log", process.name)))
                    );
                }
                if started.elapsed() > READY_LIMIT {
                    bail!("{} was not ready within {READY_LIMIT:?}", process.name);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Names a process that has exited (a crash under load is a finding, not a hang).
    pub fn exited(&mut self) -> Option<String> {
        for process in &mut self.processes {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Some(format!(
                    "{} exited ({status}); its log:\n{}",
                    process.name,
                    tail(&self.dir.join(format!("{}.log", process.name)))
                ));
            }
        }
        None
    }

    /// Stops every service (SIGKILL through `kill_on_drop` is the fallback) and NATS.
    pub async fn stop(mut self) {
        for process in &mut self.processes {
            let _ = process.child.start_kill();
        }
        for process in &mut self.processes {
            let _ = process.child.wait().await;
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// ONNX Runtime as scripts/bootstrap.sh installs it under `.deps/`.
fn installed_onnxruntime() -> Option<PathBuf> {
    let capi = gradients_testkit::workspace_root().join(".deps/py/lib/python3.11/site-packages/onnxruntime/capi");
    let mut found: Vec<PathBuf> = std::fs::read_dir(capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
        .collect();
    found.sort();
    found.pop()
}
