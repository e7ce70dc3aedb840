//! A private `nats-server` for one test, in the manner of nats.rs's own test helper: the
//! real binary, JetStream on, a temporary store, killed and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::workspace_root;

/// How long a server may take to start.
const START_LIMIT: Duration = Duration::from_secs(15);

/// A running `nats-server`, stopped on drop.
pub struct NatsServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(None)
    }

    /// Starts a server with this configuration text (accounts, permissions...) added to
    /// the command line's port, JetStream and store settings.
    pub fn start_with_config(config: &str) -> anyhow::Result<Self> {
        Self::launch(Some(config))
    }

    fn launch(config: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("gradients-nats-").tempdir()?;
        let config = match config {
            Some(text) => {
                let path = dir.path().join("server.conf");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let mut server = Self { child: None, dir, port: 0, config };
        server.spawn(None)?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to the test nats-server")
    }

    /// Kills the server at once, as a crash would; the store stays for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store: JetStream state survives.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn(Some(self.port))
    }

    fn spawn(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let binary = binary()?;
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)?;
        let log = self.dir.path().join("server.log");
        let mut command = Command::new(&binary);
        command
            .args(["-a", "127.0.0.1", "-js"])
            .arg("-p")
            .arg(port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into()))
            .arg("-sd")
            .arg(self.dir.path().join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let started = Instant::now();
        let port = loop {
            if let Some(port) = read_ports_file(&ports_dir, child.id())? {
                break port;
            }
            if let Some(status) = child.try_wait()? {
                bail!("nats-server exited ({status}) before listening:\n{}", read_log(&log));
            }
            if started.elapsed() > START_LIMIT {
                let _ = child.kill();
                bail!("nats-server did not listen within {START_LIMIT:?}:\n{}", read_log(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The ports file is written when the listener is up; wait for JetStream too.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > START_LIMIT {
                let _ = child.kill();
                bail!("nats-server does not accept connections:\n{}", read_log(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        self.port = port;
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `nats-server` the set-up installed; never the machine's own (2.9 is too old).
fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("GRADIENTS_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let installed = workspace_root().join(".deps/py/bin/nats-server");
    if installed.exists() {
        return Ok(installed);
    }
    bail!(
        "no nats-server at {}: run `make test` (or scripts/bootstrap.sh) first, or set GRADIENTS_NATS_SERVER",
        installed.display()
    )
}

/// Reads the client port from `nats-server_<pid>.ports` once the server wrote it.
fn read_ports_file(dir: &Path, pid: u32) -> anyhow::Result<Option<u16>> {
    let path = dir.join(format!("nats-server_{pid}.ports"));
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(None) };
    let url = ports["nats"][0].as_str().unwrap_or_default();
    Ok(url.rsplit(':').next().and_then(|p| p.parse().ok()))
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_nats::jetstream::{self, consumer, kv, stream};
    use futures::StreamExt;

    use super::*;

    /// The server is modern enough for KV, streams and pull consumers, and two servers
    /// never share a port.
    #[tokio::test]
    async fn starts_a_modern_jetstream_server() {
        let server = NatsServer::start().unwrap();
        let other = NatsServer::start().unwrap();
        assert_ne!(server.port(), other.port());
        let js = jetstream::new(server.client().await);
        let bucket = js.create_key_value(kv::Config { bucket: "probe".into(), ..Default::default() }).await.unwrap();
        bucket.put("k", "v".into()).await.unwrap();
        assert_eq!(bucket.get("k").await.unwrap().unwrap(), "v");
        js.create_stream(stream::Config { name: "S".into(), subjects: vec!["s.>".into()], ..Default::default() })
            .await
            .unwrap();
        js.publish("s.one", "hello".into()).await.unwrap().await.unwrap();
    }

    /// A killed and restarted server keeps its port and its stored messages.
    #[tokio::test]
    async fn restart_keeps_jetstream_state() {
        let mut server = NatsServer::start().unwrap();
        let port = server.port();
        {
            let js = jetstream::new(server.client().await);
            js.create_stream(stream::Config {
                name: "KEEP".into(),
                subjects: vec!["keep".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            js.publish("keep", "survives".into()).await.unwrap().await.unwrap();
        }
        server.restart().unwrap();
        assert_eq!(server.port(), port);
        let js = jetstream::new(server.client().await);
        let stream = js.get_stream("KEEP").await.unwrap();
        let consumer = stream.create_consumer(consumer::pull::Config::default()).await.unwrap();
        let mut batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await.unwrap();
        let message = batch.next().await.unwrap().unwrap();
        assert_eq!(message.payload.as_ref(), b"survives");
    }
}
