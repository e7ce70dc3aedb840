//! A miner restarted in the middle of training loses nothing and submits once: the first
//! process takes an assignment and trains (renewing its lease) until it is stopped without
//! settling anything; a second process of the same miner (same key file, new connection)
//! is handed the same assignment, submits, and settles it. The market then holds exactly one
//! submission of that miner for that task, the one the second process signed, and the
//! assignment is never delivered again. Real nats-server; each process is its own Tokio
//! runtime and NATS connection, so stopping one drops its work and socket as a crash would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::objects::{self, sha256_hex};
use gradients_bus::subjects::{self, streams};
use gradients_bus::{topology, Bus};
use gradients_config::NatsSettings;
use gradients_miner::identity::domains;
use gradients_miner::{verify_submission, Identity, MinerClient};
use gradients_proto::v1::{Assignment, Submission};
use gradients_testkit::NatsServer;
use prost::Message;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// Short, so the crashed process's lease runs out within the test.
const ACK_WAIT: Duration = Duration::from_secs(1);
const TASK: &str = "restart-task";

/// A fresh runtime, as a new process of the miner would have.
fn process_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

/// The miner's client as a process started from `key` makes it, on its own connection.
async fn miner(settings: &NatsSettings, key: &Path, name: &str) -> MinerClient {
    let bus = Bus::connect(settings, name).await.expect("miner connects");
    MinerClient::new(bus, Identity::load(key).expect("miner key"), Duration::from_secs(5))
        .with_assignment_ack_wait(ACK_WAIT)
}

/// What the miner's training produces from an assignment: the same bytes on every run.
fn trained(assignment: &Assignment) -> (Vec<u8>, Vec<u8>) {
    let model = format!("model trained for {}", assignment.assignment_id).into_bytes();
    let manifest = format!("{{\"assignment\":\"{}\"}}", assignment.assignment_id).into_bytes();
    (model, manifest)
}

#[test]
fn a_miner_restarted_while_training_gets_its_assignment_back_and_submits_once() {
    let nats = NatsServer::start().expect("nats-server");
    let settings = NatsSettings { url: vec![nats.url()], ..NatsSettings::default() };
    let keys = tempfile::tempdir().expect("tempdir");
    let key: PathBuf = keys.path().join("miner.key");
    let identity = Identity::generate();
    identity.save(&key).expect("miner key");
    let miner_id = identity.id();
    let dispatch = Identity::generate();
    let dispatch_key = dispatch.public_key().to_vec();

    // The market: topology, the miner's bucket (dispatch makes it on assignment) and one
    // dispatch-signed assignment.
    let market = process_runtime();
    let bus = market.block_on(async {
        let bus = Bus::connect(&settings, "market").await.expect("connect");
        topology::declare(&bus, &settings).await.expect("topology");
        topology::miner_artifacts(&bus, &miner_id, 1 << 20, &settings).await.expect("bucket");
        let mut assignment = Assignment {
            assignment_id: format!("{TASK}/{miner_id}"),
            task_id: TASK.to_owned(),
            miner_id: miner_id.clone(),
            cohort_size: 1,
            ..Default::default()
        };
        assignment.signature = dispatch.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
        let event = OutgoingEvent {
            subject: subjects::assignments(&miner_id),
            id: assignment.assignment_id.clone(),
            payload: assignment.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&bus.jetstream, event).await.expect("assign");
        bus
    });

    // First process: takes the assignment and trains, renewing its lease, until it is
    // stopped. Its training never finishes, so it can submit nothing.
    let first = process_runtime();
    let (taken_tx, taken_rx) = oneshot::channel();
    {
        let (settings, key, dispatch_key) = (settings.clone(), key.clone(), dispatch_key.clone());
        first.spawn(async move {
            let client = miner(&settings, &key, "miner-first-run").await;
            let lease = client.next_assignment(&dispatch_key, Duration::from_secs(10)).await.expect("pull");
            let lease = lease.expect("assigned");
            let _ = taken_tx.send((lease.assignment_id.clone(), lease.deliveries()));
            let training = std::future::pending::<()>();
            lease.renewed_while(ACK_WAIT / 4, training).await;
            unreachable!("training never ends; the process is stopped first");
        });
    }
    let (first_id, first_deliveries) = market.block_on(taken_rx).expect("the first run took the assignment");
    assert_eq!(first_deliveries, 1);
    // While it trains, its lease holds: another process asking for work for three ack waits
    // gets nothing.
    let probe = market.block_on(async {
        let other = miner(&settings, &key, "miner-probe").await;
        other.next_assignment(&dispatch_key, ACK_WAIT * 3).await.expect("pull")
    });
    assert!(probe.is_none(), "a lease renewed by a training process was handed out again");

    // The process stops mid-training: its tasks and its connection are dropped, nothing is
    // acknowledged, nacked or submitted.
    first.shutdown_timeout(Duration::from_secs(5));

    // Second process of the same miner: the same assignment comes back (after the ack
    // wait), is trained and submitted, then settled.
    let second = process_runtime();
    let submitted = second.block_on(async {
        let client = miner(&settings, &key, "miner-second-run").await;
        let lease = client.next_assignment(&dispatch_key, ACK_WAIT * 10).await.expect("pull");
        let lease = lease.expect("the assignment comes back after the crash");
        assert_eq!(lease.assignment_id, first_id, "the same assignment, not a new one");
        assert_eq!(lease.deliveries(), 2, "delivered again, counted as a redelivery");
        let (model, manifest) = trained(&lease);
        let submission = client.submit(&lease.task_id, &model, &manifest).await.expect("submit");
        lease.finish().await.expect("settled");
        // Settled: never delivered again, to this run or any later one.
        let again = client.next_assignment(&dispatch_key, ACK_WAIT * 3).await.expect("pull");
        assert!(again.is_none(), "a finished assignment was delivered again");
        (submission, model)
    });
    drop(second);

    // Exactly one submission for the task, on the miner's own subject, signed by the miner
    // and naming the uploaded model, which reads back intact.
    let (submission, model) = submitted;
    market.block_on(async {
        let stream = bus.jetstream.get_stream(streams::SUBMISSIONS).await.expect("submissions stream");
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(subjects::submissions_of_task(TASK))
            .await
            .expect("stream info")
            .map(|entry| entry.expect("subject count"))
            .collect()
            .await;
        let own_subject = subjects::submissions(TASK, &miner_id);
        assert_eq!(counts, vec![(own_subject.clone(), 1)], "exactly one submission for the task");
        let stored = stream.get_last_raw_message_by_subject(&own_subject).await.expect("the submission");
        let stored = Submission::decode(stored.payload.as_ref()).expect("a Submission");
        assert_eq!(stored, submission, "the stored submission is the second run's");
        verify_submission(&own_subject, &stored, &identity.public_key()).expect("a submission readers accept");
        let artifact = stored.artifact.expect("artifact");
        assert_eq!(artifact.sha256, sha256_hex(&model));
        let store = objects::bucket(&bus, &artifact.bucket).await.expect("the miner's bucket");
        let read = objects::read_verified(&store, &artifact, 1 << 20).await.expect("the model reads back");
        assert_eq!(read.as_ref(), model.as_slice());
    });
}
