//! `deploy/nats/gradients.conf` as it ships, on a real nats-server: a miner with its own
//! user works the whole protocol (register, offers, its assignments, granted data,
//! submissions) and can read no bucket and announce no task itself.

use std::time::Duration;

use futures::StreamExt;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{buckets, streams};
use gradients_bus::{objects, topology, Bus};
use gradients_config::{NatsSettings, Settings};
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{DatasetRef, MinerCapabilities, Offer, Task, TaskCreated, TaskSplits, TaskType, Timestamp};
use gradients_testkit::{eventually, workspace_root, NatsServer};
use prost::Message;
use tokio_util::sync::CancellationToken;

struct AcceptAll;

impl OfferHandler for AcceptAll {
    async fn decide(&self, _offer: &Offer) -> Decision {
        Decision::Accept { estimated_seconds: 1.0 }
    }
}

/// The shipped config with the passwords filled in and one miner's block for `miner_id`;
/// the port and store come from the test server.
fn deploy_config(miner_id: &str) -> String {
    deploy_config_for(&[miner_id])
}

/// The shipped config with the miner block repeated for each of `miner_ids`.
fn deploy_config_for(miner_ids: &[&str]) -> String {
    let text = std::fs::read_to_string(workspace_root().join("deploy/nats/gradients.conf")).unwrap();
    let start = text.find("      { user: MINER_ID").expect("the miner block");
    let marker = "allow_responses: true } }\n";
    let end = start + text[start..].find(marker).expect("its end") + marker.len();
    let block = &text[start..end];
    let blocks: String = miner_ids.iter().map(|id| block.replace("MINER_ID", id)).collect();
    let mut text = format!("{}{blocks}{}", &text[..start], &text[end..]).replace("port: 4222\n", "");
    text = text.replace("jetstream {\n  store_dir: \"/var/lib/gradients/nats\"\n}", "");
    for (variable, password) in [
        ("$GRADIENTS_INTAKE_PASSWORD", "intake-secret"),
        ("$GRADIENTS_DISPATCH_PASSWORD", "dispatch-secret"),
        ("$GRADIENTS_LEDGER_PASSWORD", "ledger-secret"),
        ("$GRADIENTS_EVALUATOR_PASSWORD", "evaluator-secret"),
        ("$GRADIENTS_CUSTOMER_PASSWORD", "customer-secret"),
        ("$GRADIENTS_AUDIT_PASSWORD", "audit-secret"),
        ("$GRADIENTS_AUDITOR_PASSWORD", "auditor-secret"),
        ("$GRADIENTS_MINER_PASSWORD", "miner-secret"),
    ] {
        text = text.replace(variable, &format!("\"{password}\""));
    }
    text
}

fn as_user(server: &NatsServer, user: &str, password: &str) -> NatsSettings {
    let auth = gradients_config::NatsAuth {
        user: Some(user.to_owned()),
        password: Some(password.to_owned()),
        ..Default::default()
    };
    NatsSettings { url: vec![server.url()], auth, connect_timeout_ms: 2_000, ..Default::default() }
}

/// A miner's connection: its own user, replies under its own inbox prefix.
fn as_miner(server: &NatsServer, miner_id: &str) -> NatsSettings {
    NatsSettings { inbox_prefix: Some(format!("_INBOX_{miner_id}")), ..as_user(server, miner_id, "miner-secret") }
}

/// A miner's user can do its job through dispatch and nothing more.
#[tokio::test]
async fn a_miner_user_works_the_protocol_and_reads_no_bucket() {
    gradients_telemetry::init_for_tests();
    let miner_identity = Identity::generate();
    let server = NatsServer::start_with_config(&deploy_config(&miner_identity.id())).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Intake's user declares the topology and announces a task with real splits.
    let intake_nats = as_user(&server, "intake", "intake-secret");
    let intake = Bus::connect(&intake_nats, "intake").await.unwrap();
    topology::declare(&intake, &intake_nats).await.unwrap();
    let train_store = objects::bucket(&intake, buckets::TRAIN).await.unwrap();
    let train_bytes = b"{\"a\":1}\n";
    let train_name = buckets::split_object("t-perm", "train", &objects::sha256_hex(train_bytes));
    let train = objects::put_bytes(&train_store, buckets::TRAIN, &train_name, train_bytes).await.unwrap();
    let validator_store = objects::bucket(&intake, buckets::VALIDATOR).await.unwrap();
    let test = objects::put_bytes(
        &validator_store,
        buckets::VALIDATOR,
        &buckets::split_object("t-perm", "test", &objects::sha256_hex(b"{\"secret\":1}\n")),
        b"{\"secret\":1}\n",
    )
    .await
    .unwrap();

    // Dispatch runs as its own user.
    let mut settings = Settings { nats: as_user(&server, "dispatch", "dispatch-secret"), ..Default::default() };
    settings.store.url = format!("sqlite://{}?mode=rwc", dir.path().join("dispatch.db").display());
    settings.dispatch.http_addr = "127.0.0.1:0".into();
    settings.dispatch.key_file = dir.path().join("dispatch.key");
    let dispatch_key = gradients_dispatch::load_or_create_identity(&settings).unwrap().public_key();
    let shutdown = CancellationToken::new();
    tokio::spawn(gradients_dispatch::run(settings, shutdown.clone()));

    // The miner, as its own user, registers and answers offers.
    let miner_nats = as_miner(&server, &miner_identity.id());
    let miner_bus = Bus::connect(&miner_nats, "miner").await.unwrap();
    let miner = MinerClient::new(miner_bus.clone(), miner_identity, Duration::from_secs(3));
    let capabilities = MinerCapabilities {
        max_model_params: u64::MAX,
        task_types: vec![TaskType::Instruct as i32],
        gpu: false,
        max_concurrent_tasks: 1,
    };
    eventually(Duration::from_secs(10), "the miner's user registering", || miner.register(capabilities.clone())).await;
    let (serving, stop) = (miner.clone(), shutdown.clone());
    tokio::spawn(async move { serving.serve_offers(AcceptAll, stop).await });
    wait_until_listening(&server, &miner.miner_id()).await;

    let task = Task {
        id: "t-perm".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-10m".into(),
        splits: Some(TaskSplits {
            train: Some(DatasetRef { object: Some(train.clone()), rows: 1 }),
            synth: None,
            test: Some(DatasetRef { object: Some(test.clone()), rows: 1 }),
        }),
        deadline: Some(Timestamp { unix_ms: Timestamp::now().unix_ms + 3_600_000 }),
        ..Default::default()
    };
    let created = TaskCreated { event_id: "t-perm".into(), task: Some(task.clone()), at: Some(Timestamp::now()) };
    let announce = |bus: Bus| {
        let payload = created.encode_to_vec();
        async move {
            let event = OutgoingEvent {
                subject: gradients_bus::subjects::TASK_CREATED.into(),
                id: "t-perm".into(),
                payload: payload.into(),
                traceparent: None,
            };
            tokio::time::timeout(Duration::from_secs(3), publish_event(&bus.jetstream, event)).await
        }
    };
    assert!(matches!(announce(intake.clone()).await, Ok(Ok(_))), "intake may announce tasks");

    // The whole protocol works for the miner, through dispatch.
    let assignment = miner.next_assignment(&dispatch_key, Duration::from_secs(10)).await.unwrap().expect("assigned");
    assert_eq!(miner.fetch_train(&assignment).await.unwrap().as_ref(), b"{\"a\":1}\n");
    // Under its own grant it gets nothing the grant does not name: never the test split.
    let test_split = miner.fetch_object(&assignment, &test).await;
    assert!(test_split.is_err(), "dispatch must not serve the test split to a miner: {test_split:?}");
    // Nor the data of a task it was not assigned: the grant is dispatch's signed word.
    let mut elsewhere = assignment.clone();
    elsewhere.task_id = "t-other".into();
    let other_task = miner.fetch_train(&elsewhere).await;
    assert!(other_task.is_err(), "an assignment edited to another task is refused: {other_task:?}");
    miner.submit("t-perm", b"model", b"{}").await.expect("the miner's user may submit");

    // ...and nothing else: no bucket directly (not even the train split), no forged task.
    for bucket in [buckets::TRAIN, buckets::VALIDATOR] {
        let direct = tokio::time::timeout(Duration::from_secs(3), miner_bus.jetstream.get_object_store(bucket)).await;
        assert!(!matches!(direct, Ok(Ok(_))), "the miner must not open {bucket}");
    }
    let forged = announce(miner_bus.clone()).await;
    assert!(!matches!(forged, Ok(Ok(_))), "the miner must not announce tasks");
    shutdown.cancel();
}

/// Starts dispatch as its own user on `server`, keeping its files in `dir`.
async fn start_dispatch(server: &NatsServer, dir: &std::path::Path, shutdown: &CancellationToken) {
    let mut settings = Settings { nats: as_user(server, "dispatch", "dispatch-secret"), ..Default::default() };
    settings.store.url = format!("sqlite://{}?mode=rwc", dir.join("dispatch.db").display());
    settings.dispatch.http_addr = "127.0.0.1:0".into();
    settings.dispatch.key_file = dir.join("dispatch.key");
    tokio::spawn(gradients_dispatch::run(settings, shutdown.clone()));
}

/// Announces an instruct task with a real train split, as intake does.
async fn announce_task(intake: &Bus, task_id: &str) {
    let rows = b"{\"instruction\":\"a\",\"output\":\"b\"}\n";
    let store = objects::bucket(intake, buckets::TRAIN).await.unwrap();
    let name = format!("tasks/{task_id}/train-{}.jsonl", objects::sha256_hex(rows));
    let train = objects::put_bytes(&store, buckets::TRAIN, &name, rows).await.unwrap();
    let task = Task {
        id: task_id.into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-10m".into(),
        splits: Some(TaskSplits { train: Some(DatasetRef { object: Some(train), rows: 1 }), synth: None, test: None }),
        deadline: Some(Timestamp { unix_ms: Timestamp::now().unix_ms + 3_600_000 }),
        ..Default::default()
    };
    let created = TaskCreated { event_id: task_id.into(), task: Some(task), at: Some(Timestamp::now()) };
    let event = OutgoingEvent {
        subject: gradients_bus::subjects::TASK_CREATED.into(),
        id: task_id.into(),
        payload: created.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&intake.jetstream, event).await.unwrap();
}

/// Registers `miner`, retrying while dispatch starts.
async fn register(miner: &MinerClient) {
    let capabilities = MinerCapabilities {
        max_model_params: u64::MAX,
        task_types: vec![TaskType::Instruct as i32],
        gpu: false,
        max_concurrent_tasks: 1,
    };
    eventually(Duration::from_secs(10), "the miner registered", || miner.register(capabilities.clone())).await;
}

/// Waits until `miner_id` listens for offers: a probe offer sent as dispatch's user (no
/// task, so the answer means nothing) gets a reply once the subscription is live.
async fn wait_until_listening(server: &NatsServer, miner_id: &str) {
    let dispatch = Bus::connect(&as_user(server, "dispatch", "dispatch-secret"), "probe").await.unwrap();
    let subject = gradients_bus::subjects::miner_offers(miner_id);
    let probe = Offer::default().encode_to_vec();
    eventually(Duration::from_secs(10), "the miner listening for offers", || async {
        let asked = dispatch.client.request(subject.clone(), probe.clone().into());
        match tokio::time::timeout(Duration::from_secs(3), asked).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 3 s".to_owned()),
        }
    })
    .await;
}

/// Whether `attempt` succeeds within three seconds (a permission violation never answers).
async fn succeeds<T, E>(attempt: impl std::future::Future<Output = Result<T, E>>) -> bool {
    matches!(tokio::time::timeout(Duration::from_secs(3), attempt).await, Ok(Ok(_)))
}

/// Two miners under the shipped permissions: neither can read, overwrite or copy the
/// other's artifact, submit under the other's id, or read the other's replies; each can
/// still submit its own work.
#[tokio::test]
async fn miners_cannot_copy_overwrite_or_impersonate_each_other() {
    gradients_telemetry::init_for_tests();
    let (alice_key, bob_key) = (Identity::generate(), Identity::generate());
    let (alice_id, bob_id) = (alice_key.id(), bob_key.id());
    let server = NatsServer::start_with_config(&deploy_config_for(&[&alice_id, &bob_id])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let intake_nats = as_user(&server, "intake", "intake-secret");
    let intake = Bus::connect(&intake_nats, "intake").await.unwrap();
    topology::declare(&intake, &intake_nats).await.unwrap();
    start_dispatch(&server, dir.path(), &shutdown).await;

    let alice_bus = Bus::connect(&as_miner(&server, &alice_id), "alice").await.unwrap();
    let bob_bus = Bus::connect(&as_miner(&server, &bob_id), "bob").await.unwrap();
    let alice = MinerClient::new(alice_bus.clone(), alice_key, Duration::from_secs(3));
    let bob = MinerClient::new(bob_bus.clone(), bob_key, Duration::from_secs(3));
    register(&alice).await;
    register(&bob).await;
    let no_bucket = succeeds(intake.jetstream.get_object_store(&buckets::artifacts(&alice_id))).await;
    assert!(!no_bucket, "registering (open to anyone) reserves no storage");

    // Both are assigned one task: dispatch makes each miner's own artifacts bucket.
    for miner in [&alice, &bob] {
        let (serving, stop) = (miner.clone(), shutdown.clone());
        tokio::spawn(async move { serving.serve_offers(AcceptAll, stop).await });
    }
    for miner in [&alice, &bob] {
        wait_until_listening(&server, &miner.miner_id()).await;
    }
    announce_task(&intake, "t-rival").await;
    let dispatch_key = gradients_miner::Identity::load(&dir.path().join("dispatch.key")).unwrap().public_key();
    for miner in [&alice, &bob] {
        let assigned = miner.next_assignment(&dispatch_key, Duration::from_secs(10)).await.unwrap();
        assert_eq!(assigned.expect("assigned").task_id, "t-rival");
    }

    // Bob listens on every inbox while Alice talks to dispatch: he hears nothing of hers.
    let mut overheard = bob_bus.client.subscribe("_INBOX.>").await.unwrap();
    let mut overheard_alice = bob_bus.client.subscribe(format!("_INBOX_{alice_id}.>")).await.unwrap();
    let submission = alice.submit("t-rival", b"alice's fine-tuned model", b"{\"by\":\"alice\"}").await.unwrap();
    alice.heartbeat(0).await.unwrap();
    let artifact = submission.artifact.clone().unwrap();
    assert_eq!(
        (artifact.bucket.clone(), artifact.name.clone()),
        buckets::artifact(&alice_id, &artifact.sha256, "onnx")
    );
    let silence = Duration::from_millis(500);
    assert!(tokio::time::timeout(silence, overheard.next()).await.map(|m| m.is_none()).unwrap_or(true));
    assert!(tokio::time::timeout(silence, overheard_alice.next()).await.map(|m| m.is_none()).unwrap_or(true));

    // Bob cannot open Alice's bucket, read her object or write over it.
    let opened = succeeds(bob_bus.jetstream.get_object_store(&artifact.bucket)).await;
    assert!(!opened, "bob must not open alice's artifacts bucket");
    let direct = format!("$JS.API.DIRECT.GET.OBJ_{}.$O.{}.M.x", artifact.bucket, artifact.bucket);
    assert!(!succeeds(bob_bus.client.request(direct, "".into())).await, "no direct read of alice's objects");
    let overwrite = succeeds(async {
        bob_bus.jetstream.publish(format!("$O.{}.C.forged", artifact.bucket), "bob's junk".into()).await?.await
    })
    .await;
    assert!(!overwrite, "bob must not write into alice's bucket");

    // Nor learn who was assigned or submitted what from the streams' subject lists.
    for stream in [streams::ASSIGNMENTS, streams::SUBMISSIONS] {
        assert!(!succeeds(bob_bus.jetstream.get_stream(stream)).await, "bob must not read {stream}'s info");
    }

    // Bob cannot submit under Alice's id, not even her own signed submission (a copy).
    let as_alice = OutgoingEvent {
        subject: gradients_bus::subjects::submissions("t-rival", &alice_id),
        id: "bob-as-alice".into(),
        payload: submission.encode_to_vec().into(),
        traceparent: None,
    };
    assert!(!succeeds(publish_event(&bob_bus.jetstream, as_alice)).await, "bob must not submit as alice");

    // Each can still do its own work; a repeated upload reuses the object, never replaces it.
    let own = bob.submit("t-rival", b"bob's own model", b"{\"by\":\"bob\"}").await.expect("bob submits his own");
    assert_eq!(own.artifact.unwrap().bucket, buckets::artifacts(&bob_id));
    let again = alice.submit("t-rival", b"alice's fine-tuned model", b"{\"by\":\"alice\"}").await.unwrap();
    assert_eq!(again.artifact.unwrap(), artifact);
    let store = objects::bucket(&intake, &artifact.bucket).await.unwrap();
    let read = objects::read_verified(&store, &artifact, 1 << 20).await.unwrap();
    assert_eq!(read.as_ref(), b"alice's fine-tuned model");
    shutdown.cancel();
}

/// The auditor's identity as shipped: it gets proofs and checkpoints from the audit API
/// (and checks them offline), reaches the ledger's query API and the stored checkpoints,
/// and can publish no event, read no other stream and call no other API.
#[tokio::test]
async fn an_auditor_reads_and_proves_and_writes_nothing() {
    use gradients_audit::client::AuditClient;
    use gradients_audit::document::SignedCheckpoint;
    use gradients_audit::protocol::ProofRequest;
    use gradients_bus::subjects::{api, streams, AUDIT_CHECKPOINTS, LEDGER_ENTRIES};
    use gradients_proto::v1::LedgerEntry;

    gradients_telemetry::init_for_tests();
    let server = NatsServer::start_with_config(&deploy_config("m-none")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The audit service under its own user; the ledger's user publishes one entry.
    let mut settings = Settings { nats: as_user(&server, "audit", "audit-secret"), ..Default::default() };
    settings.audit.store_url = format!("sqlite://{}?mode=rwc", dir.path().join("audit.db").display());
    settings.audit.key_file = dir.path().join("audit.key");
    settings.audit.http_addr = "127.0.0.1:0".into();
    let shutdown = CancellationToken::new();
    let audit = tokio::spawn(gradients_audit::run(settings.clone(), shutdown.clone()));
    let ledger_nats = as_user(&server, "ledger", "ledger-secret");
    let ledger = Bus::connect(&ledger_nats, "ledger").await.unwrap();
    topology::declare(&ledger, &ledger_nats).await.unwrap();
    let entry = LedgerEntry { entry_id: "entry-1".into(), ..Default::default() };
    let event = OutgoingEvent {
        subject: LEDGER_ENTRIES.into(),
        id: "entry-1".into(),
        payload: entry.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&ledger.jetstream, event.clone()).await.unwrap();

    let auditor_nats =
        NatsSettings { inbox_prefix: Some("_INBOX_auditor".into()), ..as_user(&server, "auditor", "auditor-secret") };
    let auditor = Bus::connect(&auditor_nats, "auditor").await.unwrap();
    let client = AuditClient::new(auditor.client.clone(), Duration::from_secs(2));
    let proof = eventually(Duration::from_secs(5), "the auditor getting the entry's proof", || async {
        client.proof(&ProofRequest { msg_id: Some("entry-1".into()), ..Default::default() }).await
    })
    .await;
    let key = Identity::load(&settings.audit.key_file).unwrap().public_key();
    gradients_audit::offline::verify_inclusion(&proof, &key).expect("and it verifies offline");
    // The stored checkpoint is readable from the audit's stream.
    let stream = auditor.jetstream.get_stream(streams::AUDIT).await.expect("stream info of GRADIENTS_AUDIT");
    let stored = stream.get_last_raw_message_by_subject(AUDIT_CHECKPOINTS).await.expect("the latest checkpoint");
    let signed: SignedCheckpoint = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(signed, proof.checkpoint);
    // The ledger's query API is open to the auditor, and the ledger's user may answer it
    // (the reply goes to the auditor's own inbox).
    let answering = answer_ledger_queries(&ledger, api::LEDGER_WEIGHTS, "weights").await;
    let answer = ask_the_ledger(&auditor, api::LEDGER_WEIGHTS).await;
    assert_eq!(answer.expect("the auditor queries the ledger").payload.as_ref(), b"weights");
    answering.abort();

    // Nothing else: no event, no other API, no other stream, no consumer.
    let forged = OutgoingEvent { id: "forged".into(), ..event };
    assert!(publish_event(&auditor.jetstream, forged).await.is_err(), "an auditor publishes no event");
    let submit =
        tokio::time::timeout(Duration::from_secs(3), auditor.client.request(api::tasks(api::TASKS_SUBMIT), "".into()))
            .await;
    assert!(!matches!(submit, Ok(Ok(_))), "an auditor calls no task API");
    assert!(auditor.jetstream.get_stream(streams::LEDGER).await.is_err(), "an auditor reads no other stream");
    let consumer = stream.create_consumer(async_nats::jetstream::consumer::pull::Config::default()).await;
    assert!(consumer.is_err(), "an auditor makes no consumer");
    shutdown.cancel();
    audit.await.unwrap().unwrap();
}

/// The shipped config with the customer block repeated for each of `customer_ids`.
fn deploy_config_with_customers(customer_ids: &[&str]) -> String {
    let text = deploy_config("m0000000000000000000000000000000000000000");
    let start = text.find("      { user: CUSTOMER_ID").expect("the customer block");
    let marker = "\"_INBOX_CUSTOMER_ID.>\"] } } }\n";
    let end = start + text[start..].find(marker).expect("its end") + marker.len();
    let block = &text[start..end];
    let blocks: String = customer_ids.iter().map(|id| block.replace("CUSTOMER_ID", id)).collect();
    format!("{}{blocks}{}", &text[..start], &text[end..])
}

/// A customer's connection: its own user, replies under its own inbox prefix.
fn as_customer(server: &NatsServer, customer_id: &str) -> NatsSettings {
    NatsSettings {
        inbox_prefix: Some(format!("_INBOX_{customer_id}")),
        ..as_user(server, customer_id, "customer-secret")
    }
}

/// Two customers under the shipped permissions, intake as its own user: each uploads to
/// its own bucket and submits; neither can open, read, write or purge the other's
/// uploads, overhear the other's replies, create a stream, or see the other's task.
#[tokio::test]
async fn customers_cannot_read_or_purge_each_others_uploads() {
    use gradients_bus::subjects::api;
    use gradients_intake::client::IntakeClient;
    use gradients_intake::customer::CustomerKey;
    use gradients_proto::v1::{ErrorCode, ListTasksRequest, SubmitTaskRequest};

    gradients_telemetry::init_for_tests();
    let (alice_key, bob_key) = (CustomerKey::generate(), CustomerKey::generate());
    let (alice_id, bob_id) = (alice_key.id(), bob_key.id());
    let server = NatsServer::start_with_config(&deploy_config_with_customers(&[&alice_id, &bob_id])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let mut settings = Settings { nats: as_user(&server, "intake", "intake-secret"), ..Default::default() };
    settings.store.url = format!("sqlite://{}?mode=rwc", dir.path().join("intake.db").display());
    settings.intake.http_addr = "127.0.0.1:0".into();
    tokio::spawn(gradients_intake::run(settings, shutdown.clone()));

    let alice_bus = Bus::connect(&as_customer(&server, &alice_id), "alice").await.unwrap();
    // The task's base model, published (into the bucket intake declares as it starts) by
    // the one service user allowed to write gradients-models.
    let publisher = Bus::connect(&as_user(&server, "evaluator", "evaluator-secret"), "publisher").await.unwrap();
    gradients_testkit::eventually(Duration::from_secs(20), "the base model is published", || {
        gradients_testkit::publish_base_model(&publisher, "tiny-1m")
    })
    .await;
    let bob_bus = Bus::connect(&as_customer(&server, &bob_id), "bob").await.unwrap();
    let alice = IntakeClient::new(alice_bus.clone(), alice_key, Duration::from_secs(5));
    let bob = IntakeClient::new(bob_bus.clone(), bob_key, Duration::from_secs(5));
    let rows: String = (0..40).map(|i| format!("{{\"instruction\": \"say {i}\", \"output\": \"{i}\"}}\n")).collect();

    // Alice uploads to her own bucket and submits, while Bob listens on every inbox.
    let mut overheard = bob_bus.client.subscribe("_INBOX.>").await.unwrap();
    let mut overheard_alice = bob_bus.client.subscribe(format!("_INBOX_{alice_id}.>")).await.unwrap();
    // Intake may still be starting.
    let upload = eventually(Duration::from_secs(10), "alice uploading to her own bucket", || {
        alice.upload_dataset(rows.as_bytes())
    })
    .await;
    assert_eq!(upload.bucket, buckets::uploads(&alice_id));
    let pending = alice.upload_dataset(rows.as_bytes()).await.unwrap();
    let request = SubmitTaskRequest {
        idempotency_key: "alice-1".into(),
        name: "alice's task".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 1.0,
        dataset: Some(upload),
        ..Default::default()
    };
    let task = alice.submit(&request).await.expect("alice's task is accepted").task.unwrap();
    let silence = Duration::from_millis(500);
    assert!(tokio::time::timeout(silence, overheard.next()).await.map(|m| m.is_none()).unwrap_or(true));
    assert!(tokio::time::timeout(silence, overheard_alice.next()).await.map(|m| m.is_none()).unwrap_or(true));

    // Bob cannot open, read, write into or purge Alice's bucket, nor make a stream.
    let bucket = buckets::uploads(&alice_id);
    assert!(!succeeds(bob_bus.jetstream.get_object_store(&bucket)).await, "bob must not open alice's uploads");
    let direct = format!("$JS.API.DIRECT.GET.OBJ_{bucket}");
    let by_sequence = bob_bus.client.request(direct, "{\"seq\": 1}".into());
    assert!(!succeeds(by_sequence).await, "no read of alice's upload by sequence");
    let purge = bob_bus.client.request(format!("$JS.API.STREAM.PURGE.OBJ_{bucket}"), "".into());
    assert!(!succeeds(purge).await, "bob must not purge alice's uploads");
    let write =
        succeeds(async { bob_bus.jetstream.publish(format!("$O.{bucket}.C.forged"), "junk".into()).await?.await })
            .await;
    assert!(!write, "bob must not write into alice's bucket");
    let capture = bob_bus.client.request(
        format!("$JS.API.STREAM.CREATE.OBJ_gradients-uploads-{bob_id}x"),
        format!("{{\"name\": \"OBJ_gradients-uploads-{bob_id}x\", \"subjects\": [\"$O.gradients-uploads-cnew.>\"]}}")
            .into(),
    );
    assert!(!succeeds(capture).await, "a customer may create no stream");

    // The ledger's queries answer for any task, so customers may not call them at all (a task's
    // outcome reaches its owner through intake); the same answering ledger serves the auditor.
    let ledger = Bus::connect(&as_user(&server, "ledger", "ledger-secret"), "ledger").await.unwrap();
    let answering = answer_ledger_queries(&ledger, api::LEDGER_TASK, "a task result").await;
    let auditor_nats =
        NatsSettings { inbox_prefix: Some("_INBOX_auditor".into()), ..as_user(&server, "auditor", "auditor-secret") };
    let auditor = Bus::connect(&auditor_nats, "auditor").await.unwrap();
    let answered = ask_the_ledger(&auditor, api::LEDGER_TASK).await;
    assert_eq!(answered.expect("the ledger answers an auditor").payload.as_ref(), b"a task result");
    let query =
        tokio::time::timeout(Duration::from_secs(3), bob_bus.client.request(api::ledger(api::LEDGER_TASK), "".into()))
            .await;
    assert!(!matches!(query, Ok(Ok(_))), "a customer must not read the ledger: {query:?}");
    answering.abort();

    // Alice's pending upload is still there and whole (read as intake reads it).
    let intake_bus = Bus::connect(&as_user(&server, "intake", "intake-secret"), "intake-check").await.unwrap();
    let store = objects::bucket(&intake_bus, &bucket).await.expect("intake opens customers' buckets");
    let read = objects::read_verified(&store, &pending, 1 << 20).await.expect("alice's upload untouched");
    assert_eq!(read.as_ref(), rows.as_bytes());

    // Through intake, Alice's task does not exist for Bob; it does for Alice.
    assert_eq!(bob.get(&task.id).await.unwrap_err().code(), Some(ErrorCode::TaskNotFound));
    assert_eq!(bob.cancel(&task.id, "stranger").await.unwrap_err().code(), Some(ErrorCode::TaskNotFound));
    assert!(bob.list(&ListTasksRequest::default()).await.unwrap().tasks.is_empty());
    assert_eq!(alice.get(&task.id).await.unwrap().task.unwrap().customer_id, alice_id);
    shutdown.cancel();
}

/// Answers `endpoint` of the ledger's query API with `reply`, as the ledger's user, until
/// aborted: a stand-in ledger, so a test sees whether a caller's query gets through.
async fn answer_ledger_queries(ledger: &Bus, endpoint: &str, reply: &'static str) -> tokio::task::JoinHandle<()> {
    let mut queries = ledger.client.subscribe(gradients_bus::subjects::api::ledger(endpoint)).await.unwrap();
    ledger.client.flush().await.unwrap();
    let client = ledger.client.clone();
    tokio::spawn(async move {
        while let Some(query) = queries.next().await {
            client.publish(query.reply.expect("a reply subject"), reply.into()).await.unwrap();
            client.flush().await.unwrap();
        }
    })
}

/// Asks the ledger's `endpoint` as `caller`, asking again while the answering subscription
/// is not yet known to the server ("no responders"), for up to ten seconds; any other
/// outcome (an answer, a refusal) is returned as it is.
async fn ask_the_ledger(caller: &Bus, endpoint: &str) -> Result<async_nats::Message, async_nats::RequestError> {
    let subject = gradients_bus::subjects::api::ledger(endpoint);
    eventually(Duration::from_secs(10), &format!("a responder on {subject}"), || async {
        match caller.client.request(subject.clone(), "".into()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(e.to_string()),
            answer => Ok(answer),
        }
    })
    .await
}
