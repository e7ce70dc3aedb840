//! A sandbox for dispatch's tests: a private nats-server, a scratch database, dispatch
//! replicas in-process sharing one key, real miners (the miner crate) with chosen policies,
//! and tasks announced as intake announces them, with real splits in the object stores.

#![allow(dead_code)]

use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::buckets;
use gradients_bus::{objects, topology, Bus};
use gradients_config::Settings;
use gradients_dispatch::DispatchError;
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{DatasetRef, MinerCapabilities, Offer, Task, TaskCreated, TaskSplits, TaskType, Timestamp};
use gradients_store::entity::dispatch::{assignment, offer, task};
use gradients_store::sea_orm::{DatabaseConnection, EntityTrait};
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Dispatch under test.
pub struct Sandbox {
    pub nats: NatsServer,
    pub db: ScratchDb,
    pub settings: Settings,
    pub bus: Bus,
    pub store: DatabaseConnection,
    pub dispatch_key: Vec<u8>,
    _key_dir: tempfile::TempDir,
    replicas: Vec<(CancellationToken, JoinHandle<Result<(), DispatchError>>)>,
}

impl Sandbox {
    /// `replicas` dispatch processes over one database and one key.
    pub async fn start(backend: Backend, replicas: usize, tweak: impl FnOnce(&mut Settings)) -> Sandbox {
        gradients_telemetry::init_for_tests();
        let nats = NatsServer::start().expect("nats-server");
        let db = ScratchDb::new(backend).await.expect("scratch database");
        let key_dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.nats.url = vec![nats.url()];
        settings.nats.retry_backoff_ms = 50;
        settings.nats.ack_wait_ms = 1_500;
        settings.store.url = db.url().to_owned();
        settings.dispatch.http_addr = "127.0.0.1:0".to_owned();
        settings.dispatch.key_file = key_dir.path().join("dispatch.key");
        settings.dispatch.offer_timeout_ms = 1_500;
        settings.dispatch.deadline_sweep_ms = 200;
        tweak(&mut settings);
        let identity = gradients_dispatch::load_or_create_identity(&settings).expect("dispatch key");
        let bus = Bus::connect(&settings.nats, "dispatch-test").await.expect("connect");
        topology::declare(&bus, &settings.nats).await.expect("topology");
        let store = gradients_store::connect(&settings.store).await.expect("store");
        let mut sandbox = Sandbox {
            nats,
            db,
            settings,
            bus,
            store,
            dispatch_key: identity.public_key().to_vec(),
            _key_dir: key_dir,
            replicas: Vec::new(),
        };
        for _ in 0..replicas {
            sandbox.start_replica().await;
        }
        sandbox
    }

    /// Starts one more replica and waits until the API answers.
    pub async fn start_replica(&mut self) {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(gradients_dispatch::run(self.settings.clone(), shutdown.clone()));
        self.replicas.push((shutdown, handle));
        let probe = MinerClient::new(self.bus.clone(), Identity::generate(), Duration::from_secs(2));
        for _ in 0..100 {
            if matches!(
                probe.heartbeat(0).await,
                Err(gradients_miner::MinerError::Call(gradients_bus::api::CallError::Service(_)))
            ) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dispatch did not start answering");
    }

    /// Waits for replica `index` to end on its own (a fault point) and returns how.
    pub async fn wait_for_exit(&mut self, index: usize) -> Result<(), DispatchError> {
        let (_, handle) = self.replicas.remove(index);
        tokio::time::timeout(Duration::from_secs(20), handle).await.expect("dispatch ends").expect("task")
    }

    /// A registered miner answering offers with `decision` (or not listening, when None),
    /// heartbeating every 200 ms until the returned token is cancelled.
    pub async fn miner(&self, capabilities: MinerCapabilities, decision: Option<Decision>) -> TestMiner {
        match decision {
            Some(decision) => self.miner_with(capabilities, Some(Policy(decision, Duration::ZERO))).await,
            None => self.miner_with::<Policy>(capabilities, None).await,
        }
    }

    /// A registered miner answering offers with `handler` (or not listening, when None),
    /// heartbeating every 200 ms until the returned token is cancelled.
    pub async fn miner_with<H: OfferHandler>(&self, capabilities: MinerCapabilities, handler: Option<H>) -> TestMiner {
        let client = MinerClient::new(self.bus.clone(), Identity::generate(), Duration::from_secs(5));
        client.register(capabilities).await.expect("registered");
        let stop = CancellationToken::new();
        {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move { client.heartbeat_loop(Duration::from_millis(200), || 0, stop).await });
        }
        if let Some(handler) = handler {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move { client.serve_offers(handler, stop).await });
            // The subscription must be live before offers are sent.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        TestMiner { client, stop }
    }

    /// Announces a task with real splits: train in the train bucket, test in the
    /// validators' bucket.
    pub async fn task(&self, task_id: &str, task_type: TaskType, deadline_ms: i64) -> Task {
        let train_bytes =
            format!("{{\"instruction\":\"train row of {task_id}\",\"input\":\"\",\"output\":\"x\"}}\n").repeat(50);
        let test_bytes =
            format!("{{\"instruction\":\"SECRET test row of {task_id}\",\"input\":\"\",\"output\":\"y\"}}\n");
        let train_store = objects::bucket(&self.bus, buckets::TRAIN).await.unwrap();
        let test_store = objects::bucket(&self.bus, buckets::VALIDATOR).await.unwrap();
        let train = objects::put_bytes(
            &train_store,
            buckets::TRAIN,
            &buckets::split_object(task_id, "train", &objects::sha256_hex(train_bytes.as_bytes())),
            train_bytes.as_bytes(),
        )
        .await
        .unwrap();
        let test = objects::put_bytes(
            &test_store,
            buckets::VALIDATOR,
            &buckets::split_object(task_id, "test", &objects::sha256_hex(test_bytes.as_bytes())),
            test_bytes.as_bytes(),
        )
        .await
        .unwrap();
        let task = Task {
            id: task_id.to_owned(),
            r#type: task_type as i32,
            base_model: "tiny-10m".into(),
            hours_to_complete: 1.0,
            splits: Some(TaskSplits {
                train: Some(DatasetRef { object: Some(train), rows: 50 }),
                synth: None,
                test: Some(DatasetRef { object: Some(test), rows: 1 }),
            }),
            deadline: Some(Timestamp { unix_ms: deadline_ms }),
            ..Default::default()
        };
        let created = TaskCreated { event_id: task_id.into(), task: Some(task.clone()), at: Some(Timestamp::now()) };
        let event = OutgoingEvent {
            subject: gradients_bus::subjects::TASK_CREATED.into(),
            id: task_id.into(),
            payload: created.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await.unwrap();
        task
    }

    /// Waits until the task reaches `state` in dispatch's records.
    pub async fn wait_for_state(&self, task_id: &str, state: &str) -> task::Model {
        for _ in 0..200 {
            if let Some(row) = task::Entity::find_by_id(task_id.to_owned()).one(&self.store).await.unwrap() {
                if row.state == state {
                    return row;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {task_id} never reached {state}");
    }

    /// Every offer made for `task_id`.
    pub async fn offers(&self, task_id: &str) -> Vec<offer::Model> {
        use gradients_store::sea_orm::{ColumnTrait, QueryFilter};
        offer::Entity::find().filter(offer::Column::TaskId.eq(task_id)).all(&self.store).await.unwrap()
    }

    /// Every assignment row.
    pub async fn assignments(&self) -> Vec<assignment::Model> {
        assignment::Entity::find().all(&self.store).await.unwrap()
    }

    /// Messages on a stream's subject.
    pub async fn messages_on(&self, stream: &str, subject: &str) -> Vec<async_nats::jetstream::Message> {
        gradients_testkit::stream_messages(&self.bus.jetstream, stream, subject).await
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for (shutdown, handle) in self.replicas.drain(..) {
            shutdown.cancel();
            handle.abort();
        }
    }
}

/// A miner in a test.
pub struct TestMiner {
    pub client: MinerClient,
    pub stop: CancellationToken,
}

impl TestMiner {
    /// Its id.
    pub fn id(&self) -> String {
        self.client.miner_id()
    }
}

impl Drop for TestMiner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Answers every offer the same way, after thinking for the given time.
pub struct Policy(pub Decision, pub Duration);

impl OfferHandler for Policy {
    async fn decide(&self, _offer: &Offer) -> Decision {
        tokio::time::sleep(self.1).await;
        self.0.clone()
    }
}

/// Capabilities that fit the test tasks (instruct, tiny-10m).
pub fn capable() -> MinerCapabilities {
    MinerCapabilities {
        max_model_params: 1_000_000_000,
        task_types: vec![TaskType::Instruct as i32, TaskType::Dpo as i32],
        gpu: false,
        max_concurrent_tasks: 4,
    }
}

/// Accepts every offer.
pub fn accept() -> Option<Decision> {
    Some(Decision::Accept { estimated_seconds: 60.0 })
}
