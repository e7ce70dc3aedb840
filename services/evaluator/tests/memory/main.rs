//! The evaluator's hard memory cap, in a process of its own (the capped ONNX Runtime arena
//! is the process's, sized by the first session it makes): a small file that passes every
//! static check but builds a gigabyte tensor at run time is refused with
//! `MEMORY_LIMIT_EXCEEDED` by the cap itself, and the same worker then scores an honest
//! fine-tune.

// The evaluator suite's helpers, of which this test uses a few.
#![allow(dead_code)]

#[path = "../evaluator/common.rs"]
mod common;
#[path = "../evaluator/models.rs"]
mod models;

use std::time::Duration;

use gradients_miner::Identity;
use gradients_proto::onnx::{attribute_proto, AttributeProto, ModelProto, NodeProto, TensorProto};
use gradients_proto::v1::{ErrorCode, EvaluationKind, EvaluationStatus, TaskType};

use common::{in_ms, instruct_rows, Market};

/// The cap under test: far above what the test models need, far below the blow-up.
const CAP_BYTES: u64 = 256 << 20;
/// The side of the square f32 tensor the hostile file expands to: 16384² × 4 bytes = 1 GiB.
const SIDE: i64 = 16_384;

fn node(op: &str, inputs: &[&str], outputs: &[&str], keepdims: Option<i64>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: keepdims
            .map(|k| AttributeProto {
                name: Some("keepdims".into()),
                r#type: Some(attribute_proto::AttributeType::Int as i32),
                i: Some(k),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// The model with a run-time blow-up on the way to its logits: the logits' maximum is
/// expanded to a `SIDE × SIDE` tensor (allowed ops only, a two-element shape constant, no
/// declared dimension), reduced again and added back, so nothing can be pruned or folded
/// away before the run.
fn with_blowup(model: &mut ModelProto) {
    let graph = model.graph.as_mut().unwrap();
    let producer = graph.node.iter_mut().find(|n| n.output.iter().any(|o| o == "logits")).unwrap();
    for output in producer.output.iter_mut().filter(|o| *o == "logits") {
        *output = "logits_raw".into();
    }
    graph.initializer.push(TensorProto {
        name: Some("blowup_shape".into()),
        dims: vec![2],
        data_type: Some(7),
        int64_data: vec![SIDE, SIDE],
        ..Default::default()
    });
    graph.node.push(node("ReduceMax", &["logits_raw"], &["probe"], Some(0)));
    graph.node.push(node("Expand", &["probe", "blowup_shape"], &["blowup"], None));
    graph.node.push(node("ReduceMax", &["blowup"], &["blowup_max"], Some(0)));
    graph.node.push(node("Add", &["logits_raw", "blowup_max"], &["logits"], None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_time_blowup_is_refused_by_the_cap_and_the_worker_serves_on() {
    let mut market = Market::start().await;
    market.settings.evaluator.max_session_memory_bytes = CAP_BYTES;
    market.settings.evaluator.concurrency = 1;
    let deadline = in_ms(3_600_000);
    let task = market.create_task(TaskType::Instruct, &instruct_rows(24, 0), &instruct_rows(12, 100), deadline).await;
    let config = models::config();
    let base_weights = models::weights(&config, 1);
    let hostile = models::tamper(&models::export(&config, &models::nudged(&base_weights, 0.02)), with_blowup);
    let honest = models::export(&config, &models::nudged(&base_weights, 0.01));
    // The static checks see a small, ordinary file: it is the cap that must refuse it.
    assert!((hostile.len() as u64) < CAP_BYTES / 100);
    let facts = gradients_model::onnx::inspect(&hostile).expect("the hostile file parses");
    assert!(facts.parameter_count == config.parameter_count());

    let (blower, fine_tuner) = (Identity::generate(), Identity::generate());
    for miner in [&blower, &fine_tuner] {
        market.register(miner).await;
        market.assign(&task, miner, 2, deadline).await;
    }
    market.spawn_evaluator(market.shutdown.clone());
    let manifest = br#"{"note":"manifests are not trusted"}"#;
    let blown = market.register(&blower).await.submit(&task, &hostile, manifest).await.unwrap();
    let scored = market.register(&fine_tuner).await.submit(&task, &honest, manifest).await.unwrap();

    // The base model's evaluation and both submissions'.
    let results = market.wait_for(&task, 3, Duration::from_secs(120)).await;
    let of =
        |id: &str| results.iter().find(|r| r.submission_id == id && r.kind == EvaluationKind::MinerSubmission as i32);
    let refused = of(&blown.submission_id).expect("the hostile submission was evaluated");
    let error = refused.error.clone().unwrap_or_default();
    assert_eq!(
        (refused.status(), error.code()),
        (EvaluationStatus::Invalid, ErrorCode::MemoryLimitExceeded),
        "{}",
        error.message
    );
    assert!(error.message.contains(&CAP_BYTES.to_string()), "the refusal names the cap: {}", error.message);
    let honest_result = of(&scored.submission_id).expect("the honest submission was evaluated");
    assert_eq!(honest_result.status(), EvaluationStatus::Valid, "{:?}", honest_result.error);
    assert!(honest_result.test_loss.unwrap().is_finite());
    market.shutdown.cancel();
}
