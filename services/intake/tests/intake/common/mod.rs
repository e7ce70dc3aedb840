//! Intake's tests on the testkit's sandbox (a private nats-server and a scratch database):
//! intake running in-process, a client, and helpers to look at what reached the streams and buckets.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use gradients_bus::api::CallError;
use gradients_bus::subjects::{buckets, streams};
use gradients_config::Settings;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_intake::IntakeError;
use gradients_proto::v1::{ErrorCode, SubmitTaskRequest, TaskType};
use gradients_testkit::{eventually, Backend, Services};

/// The base model the sandbox publishes and its requests name.
pub const BASE_MODEL: &str = "tiny-1m";

/// A running intake on the testkit's sandbox (its server, database, settings and bus are
/// reached through `Deref`). Dropping it stops intake, the server and the database.
pub struct Sandbox {
    base: gradients_testkit::Sandbox,
    /// The customer most tests act as.
    pub customer: CustomerKey,
    pub client: IntakeClient,
    /// A key configured in `intake.operator_keys`.
    pub operator: CustomerKey,
    intake: Services<IntakeError>,
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
    /// Intake with test-sized limits on `backend`.
    pub async fn start(backend: Backend) -> Sandbox {
        Self::start_with(backend, |_| {}).await
    }

    /// Intake with test-sized limits, then `tweak` applied to its settings.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Settings) + Send) -> Sandbox {
        let operator = CustomerKey::generate();
        let operator_key = hex::encode(operator.public_key());
        let base = gradients_testkit::Sandbox::builder()
            .store(backend)
            .client_name("intake-test")
            // Intake declares the topology itself.
            .without_topology()
            .settings(move |settings| {
                settings.intake.limits.min_rows = 20;
                settings.intake.operator_keys = vec![operator_key];
            })
            .settings(tweak)
            .build()
            .await;
        let customer = CustomerKey::generate();
        let client = IntakeClient::new(base.bus.clone(), customer.clone(), Duration::from_secs(10));
        let mut sandbox = Sandbox { base, customer, client, operator, intake: Services::new() };
        sandbox.start_intake().await;
        // Intake refuses a task whose base model is not published; the tests' tasks name this one.
        gradients_testkit::publish_base_model(&sandbox.base.bus, BASE_MODEL).await.expect("publish the base model");
        sandbox
    }

    /// Starts intake with the sandbox's settings and waits until it answers.
    pub async fn start_intake(&mut self) {
        assert!(self.intake.is_empty(), "intake is already running");
        let settings = self.base.settings.clone();
        self.intake.spawn(|stop| gradients_intake::run(settings, stop));
        self.wait_until_answering().await;
    }

    /// Stops intake gracefully and returns how it ended.
    pub async fn stop_intake(&mut self) -> Result<(), IntakeError> {
        self.intake.stop(0).await
    }

    /// Waits for intake to end on its own (a fault point) and returns how it ended.
    pub async fn wait_for_intake_exit(&mut self) -> Result<(), IntakeError> {
        self.intake.wait_for_exit(0, Duration::from_secs(20)).await
    }

    async fn wait_until_answering(&mut self) {
        let operator = self.client_for(&self.operator);
        let intake = &self.intake;
        eventually(Duration::from_secs(10), "intake answers", || async {
            assert!(!intake.has_ended(0), "intake stopped while starting");
            // As the operator: allowed whatever `intake.customer_keys` says.
            match operator.get("no-such-task").await {
                Err(CallError::Service(e)) if e.code == ErrorCode::TaskNotFound as i32 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    /// Waits until intake has handled everything it was sent and published everything it
    /// decided (its status consumer has nothing pending or awaiting an ack, its outbox
    /// nothing unpublished). Tests call it before asserting that something did *not* happen.
    pub async fn wait_until_settled(&self) {
        use gradients_bus::subjects::consumers;
        use gradients_store::entity::outbox;
        use gradients_store::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let store =
            gradients_store::connect(&self.settings.store, gradients_store::Schema::Intake).await.expect("store");
        eventually(Duration::from_secs(30), "intake settled", || async {
            gradients_testkit::consumer_settled(&self.bus.jetstream, streams::TASKS, consumers::INTAKE_STATUS).await?;
            let unpublished = outbox::Entity::find()
                .filter(outbox::Column::PublishedAtMs.is_null())
                .count(&store)
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
            base_model: BASE_MODEL.to_owned(),
            hours_to_complete: 1.0,
            dataset: Some(dataset),
            ..Default::default()
        }
    }

    /// Every message now stored on `subject`, in order.
    pub async fn messages_on(&self, stream: &str, subject: &str) -> Vec<jetstream::Message> {
        gradients_testkit::stream_messages(&self.bus.jetstream, stream, subject).await
    }

    /// Messages on `subject` once there are at least `count`.
    pub async fn wait_for_messages(&self, stream: &str, subject: &str, count: usize) -> Vec<jetstream::Message> {
        eventually(Duration::from_secs(10), &format!("{count} messages on {subject}"), || async {
            let found = self.messages_on(stream, subject).await;
            if found.len() >= count {
                Ok(found)
            } else {
                Err(format!("{} messages", found.len()))
            }
        })
        .await
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
