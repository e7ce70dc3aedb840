//! A market around the evaluator: a private nats-server, the evaluator service (one or more
//! replicas) and what the other services would have published, signed with their keys:
//! a created task with its hidden splits, registered miners with their own artifact
//! buckets, dispatch's signed assignments, and the miners' signed submissions.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{self, buckets, kv, streams};
use gradients_bus::{objects, topology};
use gradients_miner::identity::domains;
use gradients_miner::{Identity, MinerClient};
use gradients_proto::v1::{
    Assignment, DatasetRef, EvaluationResult, Miner, ObjectRef, Submission, Task, TaskCreated, TaskSplits, TaskType,
    Timestamp,
};
use gradients_testkit::{eventually, stream_messages};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::models;

/// The base model's name in these tests.
pub const BASE: &str = "tiny-test";

/// The evaluator's market on the testkit's sandbox (its server, folder, settings and bus are
/// reached through `Deref`).
pub struct Market {
    base: gradients_testkit::Sandbox,
    pub dispatch: Identity,
    pub shutdown: CancellationToken,
}

impl Deref for Market {
    type Target = gradients_testkit::Sandbox;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl DerefMut for Market {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.base
    }
}

/// Rows of an instruct task: short arithmetic facts.
pub fn instruct_rows(n: usize, offset: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in offset..offset + n {
        out.push_str(&format!(
            "{{\"instruction\":\"Add {i} and {}.\",\"input\":\"\",\"output\":\"{}\"}}\n",
            i % 7,
            i + i % 7
        ));
    }
    out.into_bytes()
}

/// Rows of a DPO task.
pub fn dpo_rows(n: usize, offset: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in offset..offset + n {
        out.push_str(&format!(
            "{{\"prompt\":\"Double {i}.\",\"chosen\":\"{}\",\"rejected\":\"{}\"}}\n",
            2 * i,
            2 * i + 1
        ));
    }
    out.into_bytes()
}

impl Market {
    /// Starts NATS, writes the base model folder and dispatch's key, and declares the topology.
    pub async fn start() -> Self {
        let base = gradients_testkit::Sandbox::builder()
            .client_name("evaluator-tests")
            .settings(|settings| settings.evaluator.batch_tokens = 512)
            .build()
            .await;
        let dispatch = Identity::generate();
        dispatch.save(&base.settings.dispatch.key_file).unwrap();
        let weights = models::weights(&models::config(), 1);
        gradients_testkit::write_model_dir(&base.settings.evaluator.models_dir.join(BASE), &models::config(), &weights)
            .expect("the base model folder");
        Self { base, dispatch, shutdown: CancellationToken::new() }
    }

    /// Starts one evaluator replica that stops when `stop` is cancelled.
    pub fn spawn_evaluator(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let settings = self.settings.clone();
        tokio::spawn(async move {
            if let Err(e) = gradients_evaluator::run(settings, stop).await {
                panic!("the evaluator stopped: {e}");
            }
        })
    }

    /// The base model's weights and ONNX export.
    pub fn base_onnx(&self) -> Vec<u8> {
        models::export(&models::config(), &models::weights(&models::config(), 1))
    }

    /// Publishes a created task whose hidden splits hold `test` and `synth`.
    pub async fn create_task(&self, task_type: TaskType, test: &[u8], synth: &[u8], deadline_ms: i64) -> String {
        self.create_task_with(task_type, test, synth, deadline_ms, |_| {}).await
    }

    /// [`Market::create_task`] with the task changed by `change` first (GRPO's rewards).
    pub async fn create_task_with(
        &self,
        task_type: TaskType,
        test: &[u8],
        synth: &[u8],
        deadline_ms: i64,
        change: impl FnOnce(&mut Task),
    ) -> String {
        let task_id = uuid::Uuid::new_v4().to_string();
        let store = objects::bucket(&self.bus, buckets::VALIDATOR).await.unwrap();
        let put = |split: &'static str, data: &[u8]| {
            let (store, task_id) = (store.clone(), task_id.clone());
            let data = data.to_vec();
            async move {
                let object = objects::put_bytes(
                    &store,
                    buckets::VALIDATOR,
                    &buckets::split_object(&task_id, split, &objects::sha256_hex(&data)),
                    &data,
                )
                .await
                .unwrap();
                DatasetRef {
                    object: Some(object),
                    rows: data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64,
                }
            }
        };
        let splits =
            TaskSplits { train: None, test: Some(put("test", test).await), synth: Some(put("synth", synth).await) };
        let task = Task {
            id: task_id.clone(),
            name: "evaluator test".into(),
            r#type: task_type as i32,
            base_model: BASE.into(),
            hours_to_complete: 1.0,
            splits: Some(splits),
            created_at: Some(Timestamp::now()),
            deadline: Some(Timestamp { unix_ms: deadline_ms }),
            ..Default::default()
        };
        let mut task = task;
        change(&mut task);
        let created =
            TaskCreated { event_id: format!("created-{task_id}"), task: Some(task), at: Some(Timestamp::now()) };
        let event = OutgoingEvent {
            subject: subjects::TASK_CREATED.into(),
            id: created.event_id.clone(),
            payload: created.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await.unwrap();
        task_id
    }

    /// Registers a miner as dispatch would: its registry entry and its own artifacts bucket.
    pub async fn register(&self, identity: &Identity) -> MinerClient {
        let registry =
            topology::key_value(&self.bus, kv::MINERS, "miners", Duration::from_secs(3600), &self.settings.nats)
                .await
                .unwrap();
        let miner = Miner {
            miner_id: identity.id(),
            public_key: identity.public_key().to_vec(),
            registered_at: Some(Timestamp::now()),
            ..Default::default()
        };
        registry.put(identity.id(), miner.encode_to_vec().into()).await.unwrap();
        topology::miner_artifacts(&self.bus, &identity.id(), 1 << 30, &self.settings.nats).await.unwrap();
        MinerClient::new(self.bus.clone(), identity.clone(), Duration::from_secs(5))
    }

    /// Dispatch's signed assignment of `task_id` to `miner`.
    pub async fn assign(&self, task_id: &str, miner: &Identity, cohort_size: u32, deadline_ms: i64) {
        let mut assignment = Assignment {
            assignment_id: format!("{task_id}-{}", miner.id()),
            task_id: task_id.into(),
            miner_id: miner.id(),
            deadline: Some(Timestamp { unix_ms: deadline_ms }),
            cohort_size,
            ..Default::default()
        };
        assignment.signature = self.dispatch.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
        let event = OutgoingEvent {
            subject: subjects::assignments(&miner.id()),
            id: assignment.assignment_id.clone(),
            payload: assignment.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await.unwrap();
    }

    /// Uploads `artifact` to `miner`'s bucket under its content name and returns its reference.
    pub async fn upload(&self, miner: &Identity, artifact: &[u8], extension: &str) -> ObjectRef {
        let (bucket, name) = buckets::artifact(&miner.id(), &objects::sha256_hex(artifact), extension);
        let store = objects::bucket(&self.bus, &bucket).await.unwrap();
        if store.info(&name).await.is_ok() {
            return ObjectRef { bucket, name, sha256: objects::sha256_hex(artifact), size: artifact.len() as u64 };
        }
        objects::put_bytes(&store, &bucket, &name, artifact).await.unwrap()
    }

    /// A signed submission of `artifact` by `miner`, changed by `tamper` after signing
    /// when given (to forge), published on `subject` (default: the miner's own).
    pub async fn submit_raw(
        &self,
        task_id: &str,
        signer: &Identity,
        miner_id: &str,
        artifact: ObjectRef,
        manifest: ObjectRef,
        subject: Option<String>,
    ) -> Submission {
        let mut submission = Submission {
            submission_id: uuid::Uuid::new_v4().to_string(),
            task_id: task_id.into(),
            miner_id: miner_id.into(),
            artifact: Some(artifact),
            manifest: Some(manifest),
            submitted_at: Some(Timestamp::now()),
            signature: Vec::new(),
        };
        submission.signature = signer.sign_message(domains::SUBMISSION, &submission, |s| s.signature.clear());
        let event = OutgoingEvent {
            subject: subject.unwrap_or_else(|| subjects::submissions(task_id, miner_id)),
            id: submission.submission_id.clone(),
            payload: submission.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await.unwrap();
        submission
    }

    /// Every evaluation published for `task_id` so far.
    pub async fn evaluations(&self, task_id: &str) -> Vec<EvaluationResult> {
        stream_messages(&self.bus.jetstream, streams::EVALUATIONS, &subjects::evaluations(task_id))
            .await
            .iter()
            .map(|m| EvaluationResult::decode(m.payload.as_ref()).unwrap())
            .collect()
    }

    /// Waits until `task_id` has at least `n` evaluations (at most `limit`).
    pub async fn wait_for(&self, task_id: &str, n: usize, limit: Duration) -> Vec<EvaluationResult> {
        eventually(limit, &format!("{n} evaluations of {task_id}"), || async {
            let found = self.evaluations(task_id).await;
            if found.len() >= n {
                Ok(found)
            } else {
                Err(format!("{} evaluations", found.len()))
            }
        })
        .await
    }

    /// Waits until the evaluator has been handed and has acknowledged every submission and
    /// event it consumes, so no further evaluation is on its way.
    pub async fn wait_until_settled(&self) {
        use gradients_bus::subjects::consumers;
        eventually(Duration::from_secs(60), "the evaluator settled", || async {
            for (stream, consumer) in [
                (streams::SUBMISSIONS, consumers::EVALUATOR_SUBMISSIONS),
                (streams::TASKS, consumers::EVALUATOR_TASKS),
                (streams::ASSIGNMENTS, consumers::EVALUATOR_ASSIGNMENTS),
            ] {
                gradients_testkit::consumer_settled(&self.bus.jetstream, stream, consumer).await?;
            }
            Ok::<(), String>(())
        })
        .await;
    }

    /// The evaluator's public key, as a verifier reads it.
    pub fn evaluator_key(&self) -> Vec<u8> {
        gradients_evaluator::public_key(&self.settings).unwrap()
    }

    pub fn models_dir(&self) -> PathBuf {
        self.settings.evaluator.models_dir.clone()
    }
}

/// Milliseconds from now.
pub fn in_ms(ms: i64) -> i64 {
    Timestamp::now().unix_ms + ms
}
