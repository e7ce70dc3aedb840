//! Dispatch's tests on the testkit's sandbox (a private nats-server and a scratch
//! database): dispatch replicas in-process sharing one key, real miners (the miner crate) with chosen policies,
//! and tasks announced as intake announces them, with real splits in the object stores.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::objects;
use gradients_bus::subjects::buckets;
use gradients_config::Settings;
use gradients_dispatch::{DispatchError, TaskState};
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{DatasetRef, MinerCapabilities, Offer, Task, TaskCreated, TaskSplits, TaskType, Timestamp};
use gradients_store::entity::dispatch::{assignment, offer, task};
use gradients_store::sea_orm::{DatabaseConnection, EntityTrait};
use gradients_testkit::{eventually, Backend, Services};
use prost::Message;
use tokio_util::sync::CancellationToken;

/// Dispatch under test on the testkit's sandbox (its server, database, settings and bus are
/// reached through `Deref`).
pub struct Sandbox {
    base: gradients_testkit::Sandbox,
    pub store: DatabaseConnection,
    pub dispatch_key: Vec<u8>,
    replicas: Services<DispatchError>,
}

impl Deref for Sandbox {
    type Target = gradients_testkit::Sandbox;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl DerefMut for Sandbox {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.base
    }
}

impl Sandbox {
    /// `replicas` dispatch processes over one database and one key.
    pub async fn start(backend: Backend, replicas: usize, tweak: impl FnOnce(&mut Settings) + Send) -> Sandbox {
        let base = gradients_testkit::Sandbox::builder()
            .store(backend)
            .client_name("dispatch-test")
            .settings(|settings| {
                settings.nats.ack_wait_ms = 1_500;
                settings.dispatch.offer_timeout_ms = 1_500;
                settings.dispatch.deadline_sweep_ms = 200;
            })
            .settings(tweak)
            .build()
            .await;
        let identity = gradients_dispatch::load_or_create_identity(&base.settings).expect("dispatch key");
        let store =
            gradients_store::connect(&base.settings.store, gradients_store::Schema::Dispatch).await.expect("store");
        let mut sandbox =
            Sandbox { base, store, dispatch_key: identity.public_key().to_vec(), replicas: Services::new() };
        for _ in 0..replicas {
            sandbox.start_replica().await;
        }
        sandbox
    }

    /// Starts one more replica and waits until the API answers.
    pub async fn start_replica(&mut self) {
        let settings = self.base.settings.clone();
        self.replicas.spawn(|stop| gradients_dispatch::run(settings, stop));
        let probe = MinerClient::new(self.bus.clone(), Identity::generate(), Duration::from_secs(2));
        // An unregistered miner's heartbeat is refused by dispatch itself: the API answers.
        eventually(Duration::from_secs(10), "dispatch answers", || async {
            match probe.heartbeat(0).await {
                Err(gradients_miner::MinerError::Call(gradients_bus::api::CallError::Service(_))) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    /// Waits for replica `index` to end on its own (a fault point) and returns how.
    pub async fn wait_for_exit(&mut self, index: usize) -> Result<(), DispatchError> {
        self.replicas.wait_for_exit(index, Duration::from_secs(20)).await
    }

    /// Waits until dispatch has handled everything it was sent (each consumer has nothing
    /// pending or awaiting an ack, the outbox nothing unpublished). Tests call it before
    /// asserting that something did *not* happen.
    pub async fn wait_until_settled(&self) {
        use gradients_bus::subjects::{consumers, streams};
        use gradients_store::entity::outbox;
        use gradients_store::sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
        let js = &self.bus.jetstream;
        eventually(Duration::from_secs(30), "dispatch settled", || async {
            for consumer in [consumers::DISPATCH_TASKS, consumers::DISPATCH_STATUS] {
                gradients_testkit::consumer_settled(js, streams::TASKS, consumer).await?;
            }
            let unpublished = outbox::Entity::find()
                .filter(outbox::Column::PublishedAtMs.is_null())
                .count(&self.store)
                .await
                .map_err(|e| e.to_string())?;
            if unpublished == 0 {
                Ok(())
            } else {
                Err(format!("{unpublished} outbox rows unpublished"))
            }
        })
        .await;
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
            let (serving, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move { serving.serve_offers(handler, stop).await });
            // The subscription must be live before offers are sent: a probe offer (no task,
            // so the handler's answer means nothing) gets a reply once it is.
            let subject = gradients_bus::subjects::miner_offers(&client.miner_id());
            let probe = Offer::default().encode_to_vec();
            eventually(Duration::from_secs(10), "the miner listening for offers", || async {
                let asked = self.bus.client.request(subject.clone(), probe.clone().into());
                match tokio::time::timeout(Duration::from_secs(5), asked).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 5 s".to_owned()),
                }
            })
            .await;
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
    pub async fn wait_for_state(&self, task_id: &str, state: TaskState) -> task::Model {
        eventually(Duration::from_secs(10), &format!("task {task_id} {state}"), || async {
            match task::Entity::find_by_id(task_id.to_owned()).one(&self.store).await.unwrap() {
                Some(row) if row.state == state => Ok(row),
                other => Err(format!("{:?}", other.map(|row| row.state))),
            }
        })
        .await
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
        // The thinking time is the behaviour under test (a slow miner), not a wait.
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
