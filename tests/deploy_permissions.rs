//! `deploy/nats/gradients.conf` as it ships, on a real nats-server: a miner with its own
//! user works the whole protocol (register, offers, its assignments, granted data,
//! submissions) and can read no bucket and announce no task itself.

use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::buckets;
use gradients_bus::{objects, topology, Bus};
use gradients_config::{NatsSettings, Settings};
use gradients_miner::{Decision, Identity, MinerClient, OfferHandler};
use gradients_proto::v1::{DatasetRef, MinerCapabilities, Offer, Task, TaskCreated, TaskSplits, TaskType, Timestamp};
use gradients_testkit::{workspace_root, NatsServer};
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
    let text = std::fs::read_to_string(workspace_root().join("deploy/nats/gradients.conf")).unwrap();
    let mut text = text.replace("MINER_ID", miner_id).replace("port: 4222\n", "");
    text = text.replace("jetstream {\n  store_dir: \"/var/lib/gradients/nats\"\n}", "");
    for (variable, password) in [
        ("$GRADIENTS_INTAKE_PASSWORD", "intake-secret"),
        ("$GRADIENTS_DISPATCH_PASSWORD", "dispatch-secret"),
        ("$GRADIENTS_LEDGER_PASSWORD", "ledger-secret"),
        ("$GRADIENTS_CUSTOMER_PASSWORD", "customer-secret"),
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
    let train =
        objects::put_bytes(&train_store, buckets::TRAIN, &buckets::split_object("t-perm", "train"), b"{\"a\":1}\n")
            .await
            .unwrap();
    let validator_store = objects::bucket(&intake, buckets::VALIDATOR).await.unwrap();
    let test = objects::put_bytes(
        &validator_store,
        buckets::VALIDATOR,
        &buckets::split_object("t-perm", "test"),
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
    let miner_nats = as_user(&server, &miner_identity.id(), "miner-secret");
    let miner_bus = Bus::connect(&miner_nats, "miner").await.unwrap();
    let miner = MinerClient::new(miner_bus.clone(), miner_identity, Duration::from_secs(3));
    let capabilities = MinerCapabilities {
        max_model_params: u64::MAX,
        task_types: vec![TaskType::Instruct as i32],
        gpu: false,
        max_concurrent_tasks: 1,
    };
    let mut registered = miner.register(capabilities.clone()).await;
    for _ in 0..50 {
        if registered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        registered = miner.register(capabilities.clone()).await;
    }
    registered.expect("the miner's user may register");
    let (serving, stop) = (miner.clone(), shutdown.clone());
    tokio::spawn(async move { serving.serve_offers(AcceptAll, stop).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

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
