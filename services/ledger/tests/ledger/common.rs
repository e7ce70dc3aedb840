//! The ledger's tests on the testkit's sandbox (a private nats-server and a scratch
//! database): ledger replicas in-process, and a publisher of the events the ledger consumes.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_config::Settings;
use gradients_ledger::client::LedgerClient;
use gradients_ledger::LedgerError;
use gradients_proto::v1::{
    Assignment, EvaluationKind, EvaluationResult, EvaluationStatus, Task, TaskCreated, TaskType, Timestamp,
};
use gradients_store::entity::ledger::{entry, task_result};
use gradients_store::sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use gradients_testkit::{eventually, Backend, Services};
use prost::Message;

/// The ledger under test on the testkit's sandbox (its server, database, settings and bus
/// are reached through `Deref`).
pub struct Sandbox {
    base: gradients_testkit::Sandbox,
    pub client: LedgerClient,
    /// A direct connection to the ledger's database, for counting rows.
    pub store: DatabaseConnection,
    /// Dispatch's key: [`Sandbox::assign`] signs with it, the ledger verifies with it.
    pub dispatch: gradients_miner::Identity,
    replicas: Services<LedgerError>,
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
    /// A sandbox with `replicas` ledger processes sharing one database and one consumer set.
    pub async fn start(backend: Backend, replicas: usize, tweak: impl FnOnce(&mut Settings) + Send) -> Sandbox {
        let dispatch = gradients_miner::Identity::generate();
        let dispatch_public_key = hex::encode(dispatch.public_key());
        let base = gradients_testkit::Sandbox::builder()
            .store(backend)
            .client_name("ledger-test")
            .settings(move |settings| {
                settings.nats.ack_wait_ms = 2_000;
                settings.ledger.sweep_interval_ms = 200;
                settings.ledger.evaluation_grace_ms = 0;
                settings.ledger.weights_interval_ms = 300;
                settings.ledger.dispatch_public_key = dispatch_public_key;
            })
            .settings(tweak)
            .build()
            .await;
        // The evaluator's key: [`Sandbox::evaluation`] signs with it, the ledger verifies.
        gradients_miner::Identity::generate().save(&base.settings.evaluator.key_file).expect("evaluator key");
        let store =
            gradients_store::connect(&base.settings.store, gradients_store::Schema::Ledger).await.expect("store");
        let client = LedgerClient::new(base.bus.clone(), Duration::from_secs(10));
        let mut sandbox = Sandbox { base, client, store, dispatch, replicas: Services::new() };
        for _ in 0..replicas {
            sandbox.start_replica();
        }
        if replicas > 0 {
            sandbox.wait_until_answering().await;
        }
        sandbox
    }

    /// Starts one more ledger replica.
    pub fn start_replica(&mut self) {
        let settings = self.base.settings.clone();
        self.replicas.spawn(|stop| gradients_ledger::run(settings, stop));
    }

    /// Kills replica `index` at once, mid-work, as a crash would.
    pub fn kill_replica(&mut self, index: usize) {
        self.replicas.kill(index);
    }

    async fn wait_until_answering(&self) {
        eventually(Duration::from_secs(10), "the ledger answers", || self.client.weights(1)).await;
    }

    /// Publishes an event with `id` as its message id.
    pub async fn publish(&self, subject: String, id: &str, payload: Vec<u8>) {
        let event = OutgoingEvent { subject, id: id.to_owned(), payload: payload.into(), traceparent: None };
        publish_event(&self.bus.jetstream, event).await.expect("publish");
    }

    /// Announces a task as intake would.
    pub async fn task_created(&self, task_id: &str, task_type: TaskType, hours: f64, deadline_ms: i64) {
        let task = Task {
            id: task_id.to_owned(),
            r#type: task_type as i32,
            base_model: "tiny-1m".to_owned(),
            hours_to_complete: hours,
            deadline: Some(Timestamp { unix_ms: deadline_ms }),
            ..Default::default()
        };
        let created = TaskCreated { event_id: task_id.to_owned(), task: Some(task), at: Some(Timestamp::now()) };
        self.publish(gradients_bus::subjects::TASK_CREATED.to_owned(), task_id, created.encode_to_vec()).await;
    }

    /// Assigns `miners` to a task as dispatch would (one cohort, signed by dispatch's key).
    pub async fn assign(&self, task_id: &str, miners: &[&str]) {
        use gradients_miner::identity::domains;
        for miner in miners {
            let mut assignment = Assignment {
                assignment_id: format!("{task_id}/{miner}"),
                task_id: task_id.to_owned(),
                miner_id: (*miner).to_owned(),
                cohort_size: miners.len() as u32,
                ..Default::default()
            };
            assignment.signature =
                self.dispatch.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
            let subject = gradients_bus::subjects::assignments(miner);
            self.publish(subject, &assignment.assignment_id.clone(), assignment.encode_to_vec()).await;
        }
    }

    /// Publishes an evaluation result under message id `msg_id`.
    /// The result is signed with the evaluator's key, as the evaluator signs it.
    pub async fn evaluation(&self, msg_id: &str, result: &EvaluationResult) {
        let evaluator = gradients_miner::Identity::load(&self.settings.evaluator.key_file).expect("evaluator key");
        let mut signed = result.clone();
        signed.signature =
            evaluator.sign_message(gradients_miner::identity::domains::EVALUATION, &signed, |r| r.signature.clear());
        self.publish(gradients_bus::subjects::evaluations(&result.task_id), msg_id, signed.encode_to_vec()).await;
    }

    /// A finalizer on the sandbox's database, as another replica would run it.
    pub fn finalizer(&self) -> gradients_ledger::Finalizer {
        let metrics = gradients_telemetry::Metrics::new("test");
        gradients_ledger::Finalizer {
            db: self.store.clone(),
            settings: self.settings.ledger.clone(),
            models: self.settings.models.clone(),
            outbox: gradients_store::outbox::Relay::new(self.store.clone(), self.bus.clone(), metrics.clone()),
            metrics,
            evidence: None,
        }
    }

    /// Rows in `ledger_entries`.
    pub async fn entry_count(&self) -> u64 {
        entry::Entity::find().count(&self.store).await.expect("count")
    }

    /// Tasks finalized so far.
    pub async fn result_count(&self) -> u64 {
        task_result::Entity::find().count(&self.store).await.expect("count")
    }

    /// Waits until at least `count` tasks are finalized and returns how many are.
    pub async fn wait_for_results(&self, count: u64) -> u64 {
        eventually(Duration::from_secs(15), &format!("{count} finalized tasks"), || async {
            let done = self.result_count().await;
            if done >= count {
                Ok(done)
            } else {
                Err(format!("{done} finalized"))
            }
        })
        .await
    }

    /// Waits until the ledger holds `assignments` assignments and `evaluations` evaluations.
    pub async fn wait_for_rows(&self, assignments: u64, evaluations: u64) {
        use gradients_store::entity::ledger::{assignment, evaluation};
        let what = format!("{assignments} assignments and {evaluations} evaluations in the ledger");
        eventually(Duration::from_secs(15), &what, || async {
            let a = assignment::Entity::find().count(&self.store).await.expect("count");
            let e = evaluation::Entity::find().count(&self.store).await.expect("count");
            if a >= assignments && e >= evaluations {
                Ok(())
            } else {
                Err(format!("{a} assignments, {e} evaluations"))
            }
        })
        .await;
    }

    /// Waits until the ledger has processed everything it was sent: each of its consumers
    /// has nothing pending or awaiting an ack, and its outbox nothing unpublished. Tests call
    /// it before asserting that something did *not* happen.
    pub async fn wait_until_settled(&self) {
        use gradients_bus::subjects::{consumers, streams};
        use gradients_store::entity::outbox;
        use gradients_store::sea_orm::{ColumnTrait, QueryFilter};
        let js = &self.bus.jetstream;
        eventually(Duration::from_secs(30), "the ledger settled", || async {
            for (stream, consumer) in [
                (streams::TASKS, consumers::LEDGER_TASKS),
                (streams::ASSIGNMENTS, consumers::LEDGER_ASSIGNMENTS),
                (streams::EVALUATIONS, consumers::LEDGER_EVALUATIONS),
            ] {
                gradients_testkit::consumer_settled(js, stream, consumer).await?;
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

    /// Every message now stored on `subject` in `stream`.
    pub async fn messages_on(&self, stream: &str, subject: &str) -> Vec<async_nats::jetstream::Message> {
        gradients_testkit::stream_messages(&self.bus.jetstream, stream, subject).await
    }
}

/// A valid miner evaluation.
pub fn valid(task_id: &str, miner: &str, test: f64, synth: f64, submitted_at_ms: i64) -> EvaluationResult {
    EvaluationResult {
        evaluation_id: format!("eval/{task_id}/{miner}"),
        task_id: task_id.to_owned(),
        miner_id: miner.to_owned(),
        submission_id: format!("sub/{task_id}/{miner}"),
        status: EvaluationStatus::Valid as i32,
        test_loss: Some(test),
        synth_loss: Some(synth),
        artifact_sha256: format!("sha-{miner}-{task_id}"),
        evaluated_at: Some(Timestamp::now()),
        submitted_at: Some(Timestamp { unix_ms: submitted_at_ms }),
        ..Default::default()
    }
}

/// A refused submission.
pub fn invalid(task_id: &str, miner: &str) -> EvaluationResult {
    EvaluationResult {
        evaluation_id: format!("eval/{task_id}/{miner}"),
        task_id: task_id.to_owned(),
        miner_id: miner.to_owned(),
        status: EvaluationStatus::Invalid as i32,
        error: Some(gradients_bus::api::api_error(gradients_proto::v1::ErrorCode::InvalidSignature, "bad signature")),
        ..Default::default()
    }
}

/// A reference measurement (base model or fixed baseline) on the test split.
pub fn reference(task_id: &str, kind: EvaluationKind, test: f64) -> EvaluationResult {
    EvaluationResult {
        evaluation_id: format!("eval/{task_id}/{}", kind.as_str_name()),
        task_id: task_id.to_owned(),
        status: EvaluationStatus::Valid as i32,
        test_loss: Some(test),
        kind: kind as i32,
        ..Default::default()
    }
}
