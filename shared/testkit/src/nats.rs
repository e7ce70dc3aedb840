//! A private `nats-server` for one test, in the manner of nats.rs's own test helper: the
//! real binary (v2.15, JetStream on) on a port of its own with a temporary store, killed
//! and removed on drop. Never the machine's own server on port 4222.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::workspace_root;

/// How long a server may take to start (a loaded machine runs many tests at once).
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running `nats-server`, killed on drop together with its store.
pub struct NatsServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and a store of its own.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(None)
    }

    /// Starts a server with this configuration file text (accounts, permissions...); the
    /// command line's port, JetStream and store settings take precedence over the text's.
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

    /// A connected client without credentials (panics if the server refuses it).
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to the test nats-server")
    }

    /// Kills the server at once (SIGKILL), as a crash would; the store stays for [`NatsServer::restart`].
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

    /// Starts the binary (on `port`, or a free one) and waits until it accepts connections.
    fn spawn(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let binary = binary()?;
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)?;
        let log = self.dir.path().join("server.log");
        let output = OpenOptions::new().create(true).append(true).open(&log)?;
        let mut command = Command::new(&binary);
        command
            .args(["-a", "127.0.0.1", "-js"])
            .arg("-p")
            .arg(port.map_or_else(|| "-1".to_owned(), |p| p.to_string()))
            .arg("-sd")
            .arg(self.dir.path().join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        match wait_until_listening(&mut child, &ports_dir, &log) {
            Ok(port) => {
                self.child = Some(child);
                self.port = port;
                Ok(())
            }
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls for the ports file the server writes once it listens, then for a TCP connection.
fn wait_until_listening(child: &mut Child, ports_dir: &Path, log: &Path) -> anyhow::Result<u16> {
    let started = Instant::now();
    let port = loop {
        if let Some(port) = read_ports_file(ports_dir, child.id()) {
            break port;
        }
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited ({status}) before listening; its output:\n{}", read_log(log));
        }
        if started.elapsed() > START_LIMIT {
            bail!("nats-server wrote no ports file within {START_LIMIT:?}; its output:\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > START_LIMIT {
            bail!("nats-server does not accept connections on port {port}; its output:\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(port)
}

/// The `nats-server` the set-up installed; never the machine's own on `PATH` (2.9 is too old).
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("GRADIENTS_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let installed = workspace_root().join(".deps/py/bin/nats-server");
    if installed.exists() {
        return Ok(installed);
    }
    bail!(
        "no nats-server at {}: run `make test` (or scripts/bootstrap.sh) first, or set GRADIENTS_NATS_SERVER \
         (the machine's nats-server on PATH is too old)",
        installed.display()
    )
}

/// The client port from `nats-server_<pid>.ports` (`{"nats": ["nats://127.0.0.1:PORT"], ...}`),
/// once the server has written all of it.
fn read_ports_file(dir: &Path, pid: u32) -> Option<u16> {
    let text = std::fs::read_to_string(dir.join(format!("nats-server_{pid}.ports"))).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    ports["nats"].as_array()?.iter().filter_map(|url| url.as_str()?.rsplit(':').next()?.parse().ok()).next()
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    match File::open(path).and_then(|mut file| std::io::Read::read_to_string(&mut file, &mut text)) {
        Ok(_) => text,
        Err(e) => format!("(no log at {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_nats::jetstream::{self, consumer, kv, stream};
    use futures::StreamExt;

    use super::*;

    /// Reads the one message stored in `stream` through a fresh pull consumer.
    async fn only_message(js: &jetstream::Context, stream: &str) -> Vec<u8> {
        let stream = js.get_stream(stream).await.unwrap();
        let consumer = stream.create_consumer(consumer::pull::Config::default()).await.unwrap();
        let mut batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages().await.unwrap();
        let message = batch.next().await.expect("a message").unwrap();
        message.ack().await.unwrap();
        message.payload.to_vec()
    }

    /// The server is modern enough for KV buckets, streams and pull consumers.
    #[tokio::test]
    async fn starts_a_modern_jetstream_server() {
        let server = NatsServer::start().unwrap();
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        assert_ne!(server.port(), 4222);
        let js = jetstream::new(server.client().await);
        let bucket = js.create_key_value(kv::Config { bucket: "probe".into(), ..Default::default() }).await.unwrap();
        bucket.put("k", "v".into()).await.unwrap();
        assert_eq!(bucket.get("k").await.unwrap().unwrap(), "v");
        js.create_stream(stream::Config { name: "S".into(), subjects: vec!["s.>".into()], ..Default::default() })
            .await
            .unwrap();
        js.publish("s.one", "hello".into()).await.unwrap().await.unwrap();
        assert_eq!(only_message(&js, "S").await, b"hello");
    }

    /// Two servers at once never share a port or a store.
    #[tokio::test]
    async fn two_servers_are_independent() {
        let one = NatsServer::start().unwrap();
        let two = NatsServer::start().unwrap();
        assert_ne!(one.port(), two.port());
        let js = jetstream::new(one.client().await);
        js.create_stream(stream::Config { name: "ONLY_ONE".into(), ..Default::default() }).await.unwrap();
        assert!(jetstream::new(two.client().await).get_stream("ONLY_ONE").await.is_err());
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
        server.kill();
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the killed server still listens");
        server.restart().unwrap();
        assert_eq!(server.port(), port);
        let js = jetstream::new(server.client().await);
        assert_eq!(only_message(&js, "KEEP").await, b"survives");
    }

    /// A configuration file is honoured (here: a user is required), and the port still found.
    #[tokio::test]
    async fn start_with_config_applies_the_file() {
        let server = NatsServer::start_with_config("authorization { user: alice, password: secret }").unwrap();
        assert!(async_nats::connect(server.url()).await.is_err(), "a client without credentials got in");
        let client = async_nats::ConnectOptions::with_user_and_password("alice".into(), "secret".into())
            .connect(server.url())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }

    /// A server that cannot start says why, with its own output.
    #[test]
    fn a_bad_config_reports_the_server_output() {
        let error = NatsServer::start_with_config("this is { not valid").err().expect("the server refused");
        let text = format!("{error:#}");
        assert!(text.contains("exited"), "{text}");
    }

    /// Dropping the server kills it and removes its store.
    #[test]
    fn drop_kills_and_cleans_up() {
        let server = NatsServer::start().unwrap();
        let (port, dir) = (server.port(), server.dir.path().to_owned());
        drop(server);
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
