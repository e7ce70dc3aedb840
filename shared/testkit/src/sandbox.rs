//! One way for every suite to stand up what the services stand on: a private nats-server,
//! scratch databases, a folder for keys, models and work files, settings pointing at all of
//! them, and a connected bus with the topology declared.
//!
//! The testkit does not depend on service crates (they depend on it for their tests), so
//! starting a service stays with the suite: it spawns `gradients_x::run` through
//! [`crate::Services`] with the sandbox's settings.

use std::path::PathBuf;

use gradients_bus::{topology, Bus};
use gradients_config::Settings;
use tempfile::TempDir;

use crate::{Backend, NatsServer, ScratchDb};

/// Everything a test's services stand on; dropping it stops the server and removes the
/// databases and the folder.
pub struct Sandbox {
    /// Its own `nats-server`.
    pub nats: NatsServer,
    /// Settings for any service of the test: this server with fast retries, health endpoints
    /// on free ports, every key file and models or work folder inside [`Sandbox::dir`], and
    /// the store chosen with [`SandboxBuilder::store`].
    pub settings: Settings,
    /// A client connected to the server, the topology declared.
    pub bus: Bus,
    /// The test's own folder.
    pub dir: TempDir,
    /// The main store first, then those made by [`Sandbox::own_store`].
    databases: Vec<ScratchDb>,
}

/// A change to the settings, applied when the sandbox is built.
type Tweak<'a> = Box<dyn FnOnce(&mut Settings) + Send + 'a>;

/// How a [`Sandbox`] is made; `'a` is how long its settings tweaks may borrow.
#[must_use]
pub struct SandboxBuilder<'a> {
    nats_config: Option<String>,
    store: Option<Backend>,
    client_name: String,
    declare_topology: bool,
    tweaks: Vec<Tweak<'a>>,
}

impl Sandbox {
    /// A sandbox with a NATS server and no database yet.
    pub fn builder<'a>() -> SandboxBuilder<'a> {
        SandboxBuilder {
            nats_config: None,
            store: None,
            client_name: "sandbox".to_owned(),
            declare_topology: true,
            tweaks: Vec::new(),
        }
    }

    /// The main scratch database ([`SandboxBuilder::store`]).
    pub fn db(&self) -> &ScratchDb {
        self.databases.first().expect("the sandbox was built without .store(...)")
    }

    /// The sandbox's settings with a scratch database of its own on `backend` as the store
    /// (`store.url` and `audit.store_url`), for one more service that owns its tables.
    pub async fn own_store(&mut self, backend: Backend) -> Settings {
        let db = ScratchDb::new(backend).await.expect("scratch database");
        let mut settings = self.settings.clone();
        point_store_at(&mut settings, &db);
        self.databases.push(db);
        settings
    }

    /// A path inside the sandbox's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl<'a> SandboxBuilder<'a> {
    /// Starts the server with this configuration text (accounts, permissions...).
    pub fn nats_config(mut self, text: &str) -> Self {
        self.nats_config = Some(text.to_owned());
        self
    }

    /// A scratch database on `backend` as the store of the settings (`store.url` and
    /// `audit.store_url`).
    pub fn store(mut self, backend: Backend) -> Self {
        self.store = Some(backend);
        self
    }

    /// The NATS connection name of the sandbox's own client.
    pub fn client_name(mut self, name: &str) -> Self {
        self.client_name = name.to_owned();
        self
    }

    /// Leaves the streams and buckets undeclared (for a test of who declares them).
    pub fn without_topology(mut self) -> Self {
        self.declare_topology = false;
        self
    }

    /// Changes the settings after the sandbox's own choices, before anything connects.
    pub fn settings(mut self, tweak: impl FnOnce(&mut Settings) + Send + 'a) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Starts the server, makes the database and folder, connects and declares the topology.
    pub async fn build(self) -> Sandbox {
        gradients_telemetry::init_for_tests();
        let nats = match &self.nats_config {
            Some(config) => NatsServer::start_with_config(config),
            None => NatsServer::start(),
        }
        .expect("nats-server starts");
        let dir = tempfile::Builder::new().prefix("gradients-sandbox-").tempdir().expect("a temporary folder");
        let mut settings = test_settings(&nats, &dir);
        let mut databases = Vec::new();
        if let Some(backend) = self.store {
            let db = ScratchDb::new(backend).await.expect("scratch database");
            point_store_at(&mut settings, &db);
            databases.push(db);
        }
        for tweak in self.tweaks {
            tweak(&mut settings);
        }
        let bus = Bus::connect(&settings.nats, &self.client_name).await.expect("connect to the sandbox's nats-server");
        if self.declare_topology {
            topology::declare(&bus, &settings.nats).await.expect("declare the topology");
        }
        Sandbox { nats, settings, bus, dir, databases }
    }
}

/// Settings every test shares: the private server with fast retries, no fixed ports, every
/// file a service writes inside the test's folder.
fn test_settings(nats: &NatsServer, dir: &TempDir) -> Settings {
    let mut settings = Settings::default();
    settings.nats.url = vec![nats.url()];
    settings.nats.retry_backoff_ms = 50;
    for addr in [
        &mut settings.intake.http_addr,
        &mut settings.dispatch.http_addr,
        &mut settings.ledger.http_addr,
        &mut settings.evaluator.http_addr,
        &mut settings.audit.http_addr,
    ] {
        *addr = "127.0.0.1:0".to_owned();
    }
    let path = |name: &str| dir.path().join(name);
    settings.dispatch.key_file = path("dispatch.key");
    settings.evaluator.key_file = path("evaluator.key");
    settings.evaluator.models_dir = path("models");
    settings.audit.key_file = path("audit.key");
    settings.trainer.key_file = path("miner.key");
    settings.trainer.models_dir = path("models");
    settings.trainer.work_dir = path("runs");
    settings.intake.customer_key_file = path("customer.key");
    settings
}

fn point_store_at(settings: &mut Settings, db: &ScratchDb) {
    settings.store.url = db.url().to_owned();
    settings.audit.store_url = db.url().to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandbox's settings point every service at its server, store and folder.
    #[tokio::test]
    async fn settings_point_at_the_sandbox() {
        let mut sandbox =
            Sandbox::builder().store(Backend::Sqlite).settings(|s| s.dispatch.min_miners_per_task = 3).build().await;
        assert_eq!(sandbox.settings.nats.url, vec![sandbox.nats.url()]);
        assert_eq!(sandbox.settings.store.url, sandbox.db().url());
        assert_eq!(sandbox.settings.dispatch.min_miners_per_task, 3);
        assert!(sandbox.settings.evaluator.key_file.starts_with(sandbox.dir.path()));
        let other = sandbox.own_store(Backend::Sqlite).await;
        assert_ne!(other.store.url, sandbox.settings.store.url);
        // The topology is declared: the task stream exists.
        sandbox.bus.jetstream.get_stream(gradients_bus::subjects::streams::TASKS).await.expect("the task stream");
    }
}
