//! The hostile zoo: artifacts and submissions made by the test itself to fool or stall the
//! evaluator, each refused with its own typed reason while the worker keeps serving (an
//! honest submission before and after them is scored).

use std::collections::BTreeMap;
use std::time::Duration;

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::objects;
use gradients_bus::subjects::{self, buckets};
use gradients_miner::identity::{domains, verify_message};
use gradients_miner::Identity;
use gradients_proto::onnx::{
    attribute_proto, tensor_shape_proto, type_proto, AttributeProto, GraphProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto,
};
use gradients_proto::v1::{ErrorCode, EvaluationKind, EvaluationStatus, TaskType};
use prost::Message;

use crate::common::{in_ms, instruct_rows, Market};
use crate::models;

fn float_tensor(name: &str, dims: &[i64], values: usize) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: vec![0.5; values],
        ..Default::default()
    }
}

fn node(op: &str, domain: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        domain: Some(domain.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn graph_of(model: &mut gradients_proto::onnx::ModelProto) -> &mut GraphProto {
    model.graph.as_mut().unwrap()
}

fn logits_dims(model: &mut gradients_proto::onnx::ModelProto) -> &mut Vec<tensor_shape_proto::Dimension> {
    let output = model.graph.as_mut().unwrap().output.iter_mut().find(|o| o.name.as_deref() == Some("logits")).unwrap();
    match output.r#type.as_mut().unwrap().value.as_mut().unwrap() {
        type_proto::Value::TensorType(t) => &mut t.shape.as_mut().unwrap().dim,
        _ => unreachable!(),
    }
}

/// Every hostile case is refused with its typed reason; the base model is evaluated once;
/// honest fine-tunes before and after are scored, with signed results.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_submissions_are_refused_with_typed_reasons() {
    let market = Market::start().await;
    let deadline = in_ms(3_600_000);
    let task = market.create_task(TaskType::Instruct, &instruct_rows(24, 0), &instruct_rows(12, 100), deadline).await;
    let config = models::config();
    let base_weights = models::weights(&config, 1);
    let base = market.base_onnx();
    let fine = models::export(&config, &models::nudged(&base_weights, 0.01));
    let fine_later = models::export(&config, &models::nudged(&base_weights, -0.01));

    // (name, artifact bytes, expected status, expected code)
    let mut files: Vec<(&str, Vec<u8>, EvaluationStatus, ErrorCode)> = vec![
        ("truncated file", fine[..fine.len() / 2].to_vec(), EvaluationStatus::Invalid, ErrorCode::NotOnnx),
        (
            "not ONNX at all",
            b"this is not a model, only text\n".repeat(40),
            EvaluationStatus::Invalid,
            ErrorCode::NotOnnx,
        ),
        (
            "wrong input names",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                g.input.iter_mut().find(|i| i.name.as_deref() == Some("input_ids")).unwrap().name =
                    Some("tokens".into());
            }),
            EvaluationStatus::Invalid,
            ErrorCode::WrongModelSignature,
        ),
        (
            "wrong output shape",
            models::tamper(&fine, |m| {
                logits_dims(m)[2].value = Some(tensor_shape_proto::dimension::Value::DimValue(100));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::WrongModelSignature,
        ),
        (
            "a forbidden op",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                g.node.push(node("ConstantOfShape", "", &["input_ids"], &["filler"]));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::ForbiddenOperator,
        ),
        (
            "a Loop with a huge trip count",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                g.initializer.push(TensorProto {
                    name: Some("trips".into()),
                    data_type: Some(7),
                    int64_data: vec![1 << 62],
                    ..Default::default()
                });
                let mut looped = node("Loop", "", &["trips", ""], &["spin"]);
                looped.attribute.push(AttributeProto {
                    name: Some("body".into()),
                    r#type: Some(attribute_proto::AttributeType::Graph as i32),
                    g: Some(GraphProto { name: Some("body".into()), ..Default::default() }),
                    ..Default::default()
                });
                g.node.push(looped);
            }),
            EvaluationStatus::Invalid,
            ErrorCode::ForbiddenOperator,
        ),
        (
            "a custom op domain",
            models::tamper(&fine, |m| {
                m.opset_import.push(OperatorSetIdProto { domain: Some("com.evil".into()), version: Some(1) });
                let g = graph_of(m);
                g.node.push(node("Exfiltrate", "com.evil", &["input_ids"], &["leak"]));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::CustomDomain,
        ),
        (
            "external data outside the artifact",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                let t = g.initializer.iter_mut().find(|t| t.name.as_deref() == Some("model.norm.weight")).unwrap();
                t.raw_data = None;
                t.float_data.clear();
                t.data_location = Some(1);
                t.external_data = vec![StringStringEntryProto {
                    key: Some("location".into()),
                    value: Some("../../../../etc/passwd".into()),
                }];
            }),
            EvaluationStatus::Invalid,
            ErrorCode::ExternalData,
        ),
        (
            "a declared dimension of 2^40",
            models::tamper(&fine, |m| {
                logits_dims(m)[1].value = Some(tensor_shape_proto::dimension::Value::DimValue(1 << 40));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::OnnxLimitExceeded,
        ),
        (
            "far too many parameters",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                g.initializer.push(float_tensor("model.layers.9.mlp.up_proj.weight", &[60_000, 60_000], 1));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::OnnxLimitExceeded,
        ),
        (
            "weights hidden in constants",
            models::tamper(&fine, |m| {
                let g = graph_of(m);
                g.initializer.push(float_tensor("stash", &[200, 500], 100_000));
            }),
            EvaluationStatus::Invalid,
            ErrorCode::ArchitectureMismatch,
        ),
        (
            "a valid model of a different base",
            models::export(&models::other_config(), &models::weights(&models::other_config(), 3)),
            EvaluationStatus::Invalid,
            ErrorCode::ArchitectureMismatch,
        ),
        ("the untouched base model", base.clone(), EvaluationStatus::Invalid, ErrorCode::NotAFineTune),
        (
            "the base model with new metadata",
            models::tamper(&base, |m| m.producer_name = Some("definitely-fine-tuned".into())),
            EvaluationStatus::Invalid,
            ErrorCode::NotAFineTune,
        ),
        (
            "an IR version from the future",
            models::tamper(&fine, |m| m.ir_version = Some(99)),
            EvaluationStatus::Invalid,
            ErrorCode::OnnxLimitExceeded,
        ),
    ];

    // Miners: the honest first and last, one per hostile file, and the submission-level cases.
    let honest = Identity::generate();
    let honest_later = Identity::generate();
    let copier = Identity::generate();
    let forger = Identity::generate();
    let late = Identity::generate();
    let checksum = Identity::generate();
    let wrong_subject = Identity::generate();
    let outsider = Identity::generate();
    let resigner = Identity::generate();
    let file_miners: Vec<Identity> = files.iter().map(|_| Identity::generate()).collect();
    let mut assigned: Vec<&Identity> =
        vec![&honest, &honest_later, &copier, &forger, &late, &checksum, &wrong_subject, &resigner];
    assigned.extend(file_miners.iter());
    for miner in assigned.iter().chain([&&outsider]) {
        market.register(miner).await;
    }
    let cohort = assigned.len() as u32;
    for miner in &assigned {
        let miner_deadline = if miner.id() == late.id() { in_ms(-1_000) } else { deadline };
        market.assign(&task, miner, cohort, miner_deadline).await;
    }
    let stop = market.shutdown.clone();
    market.spawn_evaluator(stop);

    let manifest = br#"{"note":"manifests are not trusted"}"#;
    let mut expected: BTreeMap<String, (String, EvaluationStatus, ErrorCode)> = BTreeMap::new();
    let mut expect = |submission: &gradients_proto::v1::Submission, what: &str, status, code| {
        expected.insert(submission.submission_id.clone(), (what.to_owned(), status, code));
    };

    let client = market.register(&honest).await;
    let first = client.submit(&task, &fine, manifest).await.unwrap();
    expect(&first, "an honest fine-tune", EvaluationStatus::Valid, ErrorCode::Unspecified);
    // The same signed submission replayed under a new message id (past JetStream's
    // de-duplication): evaluated once, whatever the bus delivers.
    let replay = OutgoingEvent {
        subject: subjects::submissions(&task, &honest.id()),
        id: format!("{}-replayed", first.submission_id),
        payload: first.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&market.bus.jetstream, replay).await.unwrap();
    // The honest submission taken over by another assigned miner: its id, its subject, its
    // signature, the honest miner's objects.
    let (artifact, manifest_ref) = (first.artifact.clone().unwrap(), first.manifest.clone().unwrap());
    let resigned = market.submit_raw(&task, &resigner, &resigner.id(), artifact, manifest_ref, None).await;
    expect(
        &resigned,
        "another miner's submission re-signed as its own",
        EvaluationStatus::Invalid,
        ErrorCode::ArtifactUnreadable,
    );

    // A byte copy of the honest artifact, uploaded by another miner to its own bucket.
    let copy = market.upload(&copier, &fine, "onnx").await;
    let copy_manifest = market.upload(&copier, manifest, "json").await;
    let copied = market.submit_raw(&task, &copier, &copier.id(), copy, copy_manifest, None).await;
    expect(
        &copied,
        "a byte copy of another miner's artifact",
        EvaluationStatus::Duplicate,
        ErrorCode::DuplicateArtifact,
    );

    for ((what, bytes, status, code), miner) in files.drain(..).zip(&file_miners) {
        let artifact = market.upload(miner, &bytes, "onnx").await;
        let manifest_ref = market.upload(miner, manifest, "json").await;
        let submission = market.submit_raw(&task, miner, &miner.id(), artifact, manifest_ref, None).await;
        expect(&submission, what, status, code);
    }

    // Signed by another key than the miner's.
    let artifact = market.upload(&forger, &fine_later, "onnx").await;
    let manifest_ref = market.upload(&forger, manifest, "json").await;
    let forged = market.submit_raw(&task, &Identity::generate(), &forger.id(), artifact, manifest_ref, None).await;
    expect(&forged, "a bad signature", EvaluationStatus::Invalid, ErrorCode::InvalidSignature);

    // A miner that was never assigned the task.
    let artifact = market.upload(&outsider, &fine_later, "onnx").await;
    let manifest_ref = market.upload(&outsider, manifest, "json").await;
    let unassigned = market.submit_raw(&task, &outsider, &outsider.id(), artifact, manifest_ref, None).await;
    expect(&unassigned, "a miner not assigned to the task", EvaluationStatus::Invalid, ErrorCode::NotAssigned);

    // After the miner's deadline (by JetStream's clock).
    let artifact = market.upload(&late, &fine_later, "onnx").await;
    let manifest_ref = market.upload(&late, manifest, "json").await;
    let tardy = market.submit_raw(&task, &late, &late.id(), artifact, manifest_ref, None).await;
    expect(&tardy, "a late submission", EvaluationStatus::Late, ErrorCode::DeadlinePassed);

    // The object under the declared sha256's name holds other bytes of the same length.
    let mut other = fine_later.clone();
    let last = other.len() - 1;
    other[last] ^= 0x55;
    let declared = objects::sha256_hex(&other);
    let (bucket, name) = buckets::artifact(&checksum.id(), &declared, "onnx");
    let store = objects::bucket(&market.bus, &bucket).await.unwrap();
    let mut stored = objects::put_bytes(&store, &bucket, &name, &fine_later).await.unwrap();
    stored.sha256 = declared;
    let manifest_ref = market.upload(&checksum, manifest, "json").await;
    let mismatched = market.submit_raw(&task, &checksum, &checksum.id(), stored, manifest_ref, None).await;
    expect(&mismatched, "a sha256 that does not match", EvaluationStatus::Invalid, ErrorCode::ChecksumMismatch);

    // Published on another miner's subject.
    let artifact = market.upload(&wrong_subject, &fine_later, "onnx").await;
    let manifest_ref = market.upload(&wrong_subject, manifest, "json").await;
    let elsewhere = Some(subjects::submissions(&task, &honest.id()));
    let misrouted =
        market.submit_raw(&task, &wrong_subject, &wrong_subject.id(), artifact, manifest_ref, elsewhere).await;
    expect(&misrouted, "a subject naming another miner", EvaluationStatus::Invalid, ErrorCode::SubjectMismatch);

    // The worker still serves an honest submission after all of the above.
    let later = market.register(&honest_later).await;
    let last_one = later.submit(&task, &fine_later, manifest).await.unwrap();
    expect(&last_one, "an honest fine-tune after the zoo", EvaluationStatus::Valid, ErrorCode::Unspecified);

    assert!(expected.len() >= 16 + 2, "the zoo has {} cases", expected.len() - 2);
    let results = market.wait_for(&task, expected.len() + 1, Duration::from_secs(120)).await;
    let key = market.evaluator_key();
    let mut seen = 0;
    for result in &results {
        verify_message(&key, domains::EVALUATION, result, &result.signature, |r| r.signature.clear())
            .expect("every evaluation is signed by the evaluator");
        if result.kind == EvaluationKind::BaseModel as i32 {
            assert_eq!(result.status, EvaluationStatus::Valid as i32, "{:?}", result.error);
            assert!(result.test_loss.unwrap() > 0.0 && result.synth_loss.is_some());
            continue;
        }
        let (what, status, code) = expected.get(&result.submission_id).expect("a known submission");
        let error = result.error.clone().unwrap_or_default();
        eprintln!("{what}: {:?} {:?} {}", result.status(), error.code(), error.message);
        assert_eq!((result.status(), error.code()), (*status, *code), "{what}: {}", error.message);
        if *status == EvaluationStatus::Valid {
            assert!(result.test_loss.unwrap().is_finite() && result.synth_loss.unwrap().is_finite());
            assert!(result.test_tokens > 0 && result.evidence.is_some());
        }
        seen += 1;
    }
    assert_eq!(seen, expected.len(), "one evaluation per submission");
    let replayed = market.evaluations(&task).await;
    assert_eq!(
        replayed.iter().filter(|r| r.submission_id == first.submission_id).count(),
        1,
        "a replay is not evaluated"
    );
    assert_eq!(results.iter().filter(|r| r.kind == EvaluationKind::BaseModel as i32).count(), 1);
    market.shutdown.cancel();
}
