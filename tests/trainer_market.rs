//! The reference trainer in the market: two `gradients-trainer` runtimes with different
//! strategies register with a real dispatch, accept a generated task submitted through
//! intake, train a real (tiny) model with tch, and submit signed ONNX artifacts whose
//! manifests and graphs check out.

mod common;

use std::time::Duration;

use gradients_bus::objects;
use gradients_bus::subjects::{buckets, streams};
use gradients_intake::client::IntakeClient;
use gradients_model::{files, Manifest};
use gradients_proto::v1::{Submission, SubmitTaskRequest, TaskType};
use gradients_testkit::{eventually, stream_messages, Backend};
use prost::Message;

use common::Market;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_trainers_fine_tune_and_submit_real_models() {
    let mut market = Market::start(|s| s.dispatch.min_miners_per_task = 2).await;
    let base = market.settings().clone();
    let dir = market.sandbox.dir.path().to_owned();
    gradients_dispatch::load_or_create_identity(&base).unwrap();

    // The base model the task names, installed where the trainers look for it.
    let (models, config) = market.install_tiny_base_model();

    market.intake(Backend::Sqlite).await;
    market.dispatch(Backend::Postgres).await;
    market.trainers(&base, &models, &["fixed", "lr-range-test"], 12);

    // A generated family, submitted as a customer would.
    let tasks = dir.join("tasks");
    let family = gradients_taskgen::family("reverse-word").unwrap();
    let folder =
        gradients_taskgen::write_task_dir(&tasks, family, gradients_taskgen::TaskKind::Instruct, 120, 3, None).unwrap();
    let bus = market.bus().clone();
    common::publish_base_model(&bus, &base, &models.join("tiny-1m"), "tiny-1m").await;
    let intake =
        IntakeClient::new(bus.clone(), gradients_intake::customer::CustomerKey::generate(), Duration::from_secs(10));
    let data = std::fs::read(folder.join("data.jsonl")).unwrap();
    let dataset = eventually(Duration::from_secs(10), "the upload", || intake.upload_dataset(&data)).await;
    let request = SubmitTaskRequest {
        idempotency_key: "trainer-market".into(),
        name: "reverse-word".into(),
        r#type: TaskType::Instruct as i32,
        base_model: "tiny-1m".into(),
        hours_to_complete: 0.05,
        dataset: Some(dataset),
        ..Default::default()
    };
    // Both trainers must have registered before dispatch makes its offers.
    market.wait_for_live_miners(2).await;
    let task = eventually(Duration::from_secs(10), "intake accepting the task", || intake.submit(&request))
        .await
        .task
        .unwrap();

    let submissions: Vec<Submission> = eventually(Duration::from_secs(60), "both trainers submitting", || async {
        let subject = gradients_bus::subjects::submissions_of_task(&task.id);
        let messages = stream_messages(&bus.jetstream, streams::SUBMISSIONS, &subject).await;
        let submissions: Vec<Submission> =
            messages.iter().map(|m| Submission::decode(m.payload.as_ref()).unwrap()).collect();
        if submissions.len() >= 2 {
            Ok(submissions)
        } else {
            Err(format!("{} submissions", submissions.len()))
        }
    })
    .await;
    assert_eq!(submissions.len(), 2, "both trainers submitted");
    assert_ne!(submissions[0].miner_id, submissions[1].miner_id);

    let mut strategies = Vec::new();
    for submission in &submissions {
        // Each miner's artifacts are in its own bucket, named by their content.
        let store = objects::bucket(&bus, &buckets::artifacts(&submission.miner_id)).await.unwrap();
        let onnx = objects::read_verified(&store, submission.artifact.as_ref().unwrap(), 1 << 30).await.unwrap();
        let manifest = objects::read_verified(&store, submission.manifest.as_ref().unwrap(), 1 << 20).await.unwrap();
        let manifest = Manifest::from_json(&manifest).unwrap();
        assert_eq!(manifest.base_model, "tiny-1m");
        assert_eq!(manifest.onnx_sha256, gradients_model::manifest::sha256_hex(&onnx));
        assert_eq!(manifest.config, config);
        let summary = gradients_model::onnx::inspect(&onnx).unwrap();
        assert_eq!(summary.parameter_count, config.parameter_count());
        strategies.push(manifest.training["strategy"].as_str().unwrap().to_owned());
        let steps = manifest.training["steps"].as_u64().unwrap();
        assert!((1..=12).contains(&steps), "{steps} steps");
    }
    strategies.sort();
    assert_eq!(strategies, ["fixed", "lr-range-test"]);
    // Each trainer kept its run: model folder, artifact, report and plot.
    for i in 0..2 {
        let run = dir.join(format!("runs-{i}")).join(&task.id);
        for file in [files::ONNX, files::MANIFEST, "report.json", "loss.svg", "model/model.safetensors"] {
            assert!(run.join(file).is_file(), "{} missing", run.join(file).display());
        }
    }
    market.stop().await;
}
