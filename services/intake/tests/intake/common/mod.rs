//! A sandbox for intake's tests: a private nats-server, a scratch database, intake running
//! in-process, a client, and helpers to look at what reached the streams and buckets.

#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use gradients_bus::api::CallError;
use gradients_bus::subjects::{buckets, streams};
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_intake::IntakeError;
use gradients_proto::v1::{ErrorCode, SubmitTaskRequest, TaskType};
use gradients_testkit::{Backend, NatsServer, ScratchDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running intake and everything it stands on. Dropping it stops intake, the server
/// and the database.
pub struct Sandbox {
    pub nats: NatsServer,
    pub db: ScratchDb,
    pub settings: Settings,
    pub bus: Bus,
    /// The customer most tests act as.
    pub customer: CustomerKey,
    pub client: IntakeClient,
    /// A key configured in `intake.operator_keys`.
    pub operator: CustomerKey,
    intake: Option<(CancellationToken, JoinHandle<Result<(), IntakeError>>)>,
}

impl Sandbox {
    /// Intake with test-sized limits on `backend`.
    pub async fn start(backend: Backend) -> Sandbox {
        Self::start_with(backend, |_| {}).await
    }

    /// Intake with test-sized limits, then `tweak` applied to its settings.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Sandbox {
        gradients_telemetry::init_for_tests();
        let nats = NatsServer::start().expect("nats-server starts");
        let db = ScratchDb::new(backend).await.expect("scratch database");
        let mut settings = Settings::default();
        settings.nats.url = vec![nats.url()];
        settings.nats.retry_backoff_ms = 50;
        settings.store.url = db.url().to_owned();
        settings.intake.http_addr = "127.0.0.1:0".to_owned();
        settings.intake.limits.min_rows = 20;
        let operator = CustomerKey::generate();
        settings.intake.operator_keys = vec![hex::encode(operator.public_key())];
        tweak(&mut settings);
        let bus = Bus::connect(&settings.nats, "intake-test").await.expect("connect");
        let customer = CustomerKey::generate();
        let client = IntakeClient::new(bus.clone(), customer.clone(), Duration::from_secs(10));
        let mut sandbox = Sandbox { nats, db, settings, bus, customer, client, operator, intake: None };
        sandbox.start_intake().await;
        sandbox
    }

    /// Starts intake with the sandbox's settings and waits until it answers.
    pub async fn start_intake(&mut self) {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(gradients_intake::run(self.settings.clone(), shutdown.clone()));
        self.intake = Some((shutdown, handle));
        self.wait_until_answering().await;
    }

    /// Stops intake gracefully and returns how it ended.
    pub async fn stop_intake(&mut self) -> Result<(), IntakeError> {
        let (shutdown, handle) = self.intake.take().expect("intake is running");
        shutdown.cancel();
        handle.await.expect("intake task")
    }

    /// Waits for intake to end on its own (a fault point) and returns how it ended.
    pub async fn wait_for_intake_exit(&mut self) -> Result<(), IntakeError> {
        let (_, handle) = self.intake.take().expect("intake is running");
        tokio::time::timeout(Duration::from_secs(20), handle).await.expect("intake ends").expect("intake task")
    }

    async fn wait_until_answering(&mut self) {
        for _ in 0..200 {
            if self.intake.as_ref().is_some_and(|(_, handle)| handle.is_finished()) {
                let (_, handle) = self.intake.take().expect("intake was started");
                panic!("intake stopped while starting: {:?}", handle.await);
            }
            // As the operator: allowed whatever `intake.customer_keys` says.
            match self.client_for(&self.operator).get("no-such-task").await {
                Err(CallError::Service(e)) if e.code == ErrorCode::TaskNotFound as i32 => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("intake did not start answering");
    }

    /// A client acting as the holder of `key`.
    pub fn client_for(&self, key: &CustomerKey) -> IntakeClient {
        IntakeClient::new(self.bus.clone(), key.clone(), Duration::from_secs(10))
    }

    /// The sandbox customer's uploads bucket.
    pub fn uploads(&self) -> String {
        buckets::uploads(&self.customer.id())
    }

    /// The task id the sandbox customer's `key` stands for.
    pub fn task_id(&self, key: &str) -> String {
        gradients_intake::task_id_for(&self.customer.id(), key)
    }

    /// Uploads `data` and builds an instruct submit request for it under `key`.
    pub async fn upload_request(&self, key: &str, data: &[u8]) -> SubmitTaskRequest {
        self.upload_request_as(&self.client, key, data).await
    }

    /// [`Sandbox::upload_request`] as the customer of `client`.
    pub async fn upload_request_as(&self, client: &IntakeClient, key: &str, data: &[u8]) -> SubmitTaskRequest {
        let dataset = client.upload_dataset(data).await.expect("upload");
        SubmitTaskRequest {
            idempotency_key: key.to_owned(),
            name: format!("test {key}"),
            r#type: TaskType::Instruct as i32,
            base_model: "tiny-1m".to_owned(),
            hours_to_complete: 1.0,
            dataset: Some(dataset),
            ..Default::default()
        }
    }

    /// Every message now stored on `subject`, in order.
    pub async fn messages_on(&self, stream: &str, subject: &str) -> Vec<jetstream::Message> {
        gradients_testkit::stream_messages(&self.bus.jetstream, stream, subject).await
    }

    /// Messages on `subject` once there are at least `count` (or after a few seconds).
    pub async fn wait_for_messages(&self, stream: &str, subject: &str, count: usize) -> Vec<jetstream::Message> {
        for _ in 0..50 {
            let found = self.messages_on(stream, subject).await;
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.messages_on(stream, subject).await
    }

    /// Number of messages stored in the task stream.
    pub async fn task_stream_messages(&self) -> u64 {
        let mut stream = self.bus.jetstream.get_stream(streams::TASKS).await.expect("stream");
        stream.info().await.expect("info").state.messages
    }

    /// Names of the objects in `bucket` (none when it does not exist).
    pub async fn objects_in(&self, bucket: &str) -> Vec<String> {
        let Ok(store) = self.bus.jetstream.get_object_store(bucket).await else {
            return Vec::new();
        };
        let mut list = store.list().await.expect("list");
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.expect("object info");
            if !info.deleted {
                names.push(info.name);
            }
        }
        names
    }

    /// Names of every object in the split buckets.
    pub async fn split_objects(&self) -> Vec<String> {
        let mut names = self.objects_in(buckets::TRAIN).await;
        names.extend(self.objects_in(buckets::VALIDATOR).await);
        names
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some((shutdown, handle)) = self.intake.take() {
            shutdown.cancel();
            handle.abort();
        }
    }
}

/// `n` distinct instruct rows as JSONL, columns instruction / input / output.
pub fn instruct_rows(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        let row = serde_json::json!({
            "instruction": format!("Add {i} and {}.", i * 7 % 13), "input": "", "output": format!("{}", i + i * 7 % 13)
        });
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// The typed error of a refused call.
pub fn refusal(result: Result<impl std::fmt::Debug, CallError>) -> gradients_proto::v1::Error {
    match result {
        Err(CallError::Service(error)) => error,
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}
