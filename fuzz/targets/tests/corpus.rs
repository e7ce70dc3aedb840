//! The fuzz targets on stable: every committed input of `fuzz/corpus/<target>`, then a seeded
//! random run of mutations of them (bit flips, truncations, insertions, splices), so
//! `make test` exercises what libFuzzer would start from. `FUZZ_ITERATIONS` (default 20,000
//! per target) and `FUZZ_SEED` change the run; a failure prints the seed and the input.
//!
//! `cargo test -p gradients-fuzz --test corpus -- --ignored write_seed_corpus` rewrites the
//! seeds (valid messages of every kind, data sets of every task type, exported ONNX models).

use std::path::PathBuf;

use gradients_fuzz::{dataset_parse, onnx_checks, wire_messages, WIRE_MESSAGES};
use gradients_proto::v1 as proto;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Target = fn(&[u8]);

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target)
}

/// The committed inputs of `target`, by file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("readable"))
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 3, "{target}: the corpus is missing");
    inputs
}

/// Runs `target` on `input`, naming the input when it panics.
fn run_one(name: &str, target: Target, input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        panic!("{name}: {what} panicked; input ({} bytes): {:02x?}", input.len(), &input[..input.len().min(256)]);
    }
}

fn replay(target_name: &str, target: Target) {
    for (file, input) in corpus(target_name) {
        run_one(target_name, target, &input, &format!("corpus file {file}"));
    }
}

/// One mutation of `input`, with `other` for splices.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if bytes.is_empty() { 0 } else { rng.random_range(0..bytes.len()) };
        match rng.random_range(0..6) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.random_range(0..8),
            1 if !bytes.is_empty() => bytes[at] = rng.random(),
            2 => bytes.truncate(at),
            3 => {
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                bytes.splice(at..at, junk);
            }
            4 if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                bytes.splice(at..at, other[from..].iter().take(64).copied());
            }
            _ if !bytes.is_empty() => {
                // Varint-heavy formats break at lengths: make one huge.
                bytes[at] = 0xff;
            }
            _ => bytes.push(rng.random()),
        }
    }
    bytes
}

fn random_run(target_name: &str, target: Target) {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x6772_6164);
    let inputs = corpus(target_name);
    let mut rng = StdRng::seed_from_u64(seed);
    for iteration in 0..iterations {
        let base = &inputs[rng.random_range(0..inputs.len())].1;
        let other = &inputs[rng.random_range(0..inputs.len())].1;
        let input = if iteration % 10 == 0 {
            (0..rng.random_range(0..256)).map(|_| rng.random()).collect()
        } else {
            mutate(&mut rng, base, other)
        };
        run_one(target_name, target, &input, &format!("iteration {iteration} of seed {seed}"));
    }
}

#[test]
fn wire_messages_corpus() {
    replay("wire_messages", wire_messages);
}

#[test]
fn wire_messages_random() {
    random_run("wire_messages", wire_messages);
}

#[test]
fn dataset_parse_corpus() {
    replay("dataset_parse", dataset_parse);
}

#[test]
fn dataset_parse_random() {
    random_run("dataset_parse", dataset_parse);
}

#[test]
fn onnx_checks_corpus() {
    replay("onnx_checks", onnx_checks);
}

#[test]
fn onnx_checks_random() {
    random_run("onnx_checks", onnx_checks);
}

/// The seeds reach past the decoders: each wire seed decodes as its message, the data sets
/// parse, and the exported model passes the checks (so mutations start from valid inputs).
#[test]
fn seeds_are_valid_inputs() {
    let limits = gradients_evaluator::checks::Limits::from_settings(&Default::default());
    let models: Vec<_> = corpus("onnx_checks").into_iter().filter(|(name, _)| name.starts_with("valid-")).collect();
    assert!(!models.is_empty());
    for (name, bytes) in models {
        gradients_evaluator::checks::ModelFacts::read(&bytes, &limits)
            .unwrap_or_else(|e| panic!("{name} should pass the checks: {e:?}"));
    }
    let accepted = corpus("dataset_parse")
        .into_iter()
        .filter(|(_, input)| {
            let (&selector, body) = input.split_first().unwrap();
            let task_type = [
                gradients_data::TaskType::Instruct,
                gradients_data::TaskType::Chat,
                gradients_data::TaskType::Dpo,
                gradients_data::TaskType::Grpo,
            ][usize::from(selector) % 4];
            gradients_data::parse(task_type, &Default::default(), body, &gradients_fuzz::DATASET_LIMITS).is_ok()
        })
        .count();
    assert!(accepted >= 4, "only {accepted} data set seeds parse");
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn wire(name: &str, message: &impl Message) {
    let selector = WIRE_MESSAGES.iter().position(|(n, _)| *n == name).expect("a fuzzed message") as u8;
    let mut bytes = vec![selector];
    bytes.extend(message.encode_to_vec());
    write("wire_messages", &format!("{name}.bin"), &bytes);
}

/// A tiny Llama-style model exported as the trainer exports, weights deterministic.
fn tiny_model(tied: bool) -> Vec<u8> {
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
        "num_hidden_layers": 1, "num_key_value_heads": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "vocab_size": 32, "max_position_embeddings": 64, "tie_word_embeddings": tied
    });
    let config = gradients_model::ModelConfig::from_json(config.to_string().as_bytes()).expect("a tiny config");
    let mut weights = gradients_model::Weights(Default::default());
    for (i, spec) in config.parameters().into_iter().enumerate() {
        let count: usize = spec.shape.iter().product();
        let data = (0..count).map(|j| ((i * 31 + j) % 17) as f32 / 17.0 - 0.5).collect();
        weights.0.insert(spec.name.clone(), gradients_model::Weight::new(spec.shape.clone(), data));
    }
    gradients_model::onnx::export(&config, &weights).expect("export")
}

#[test]
#[ignore = "rewrites the committed seeds"]
fn write_seed_corpus() {
    let now = Some(proto::Timestamp { unix_ms: 1_764_000_000_000 });
    let object =
        |name: &str| proto::ObjectRef { bucket: "gradients-train".into(), name: name.into(), ..Default::default() };
    wire(
        "SubmitTaskRequest",
        &proto::SubmitTaskRequest {
            name: "capitals".into(),
            base_model: "tiny-1m".into(),
            hours_to_complete: 0.5,
            idempotency_key: "k-1".into(),
            ..Default::default()
        },
    );
    wire("GetTaskRequest", &proto::GetTaskRequest { task_id: "0192c3a0-0000-7000-8000-000000000001".into() });
    wire("ListTasksRequest", &proto::ListTasksRequest { page_size: 20, ..Default::default() });
    wire("CancelTaskRequest", &proto::CancelTaskRequest { task_id: "t".into(), reason: "changed my mind".into() });
    wire("PrepareUploadRequest", &proto::PrepareUploadRequest {});
    wire("TaskResultRequest", &proto::TaskResultRequest { task_id: "t".into(), ..Default::default() });
    wire("ChallengeRequest", &proto::ChallengeRequest {});
    wire(
        "RegisterMinerRequest",
        &proto::RegisterMinerRequest { public_key: vec![1; 32], signature: vec![2; 64], ..Default::default() },
    );
    wire("Heartbeat", &proto::Heartbeat { active_tasks: 1, at: now, signature: vec![4; 64], ..Default::default() });
    wire("DeregisterMinerRequest", &proto::DeregisterMinerRequest { miner_id: "m".into(), ..Default::default() });
    wire("ListMinersRequest", &proto::ListMinersRequest {});
    wire(
        "TrainDataRequest",
        &proto::TrainDataRequest {
            object: Some(object("train.jsonl")),
            offset: 0,
            length: 4096,
            at: now,
            ..Default::default()
        },
    );
    wire(
        "OfferReply",
        &proto::OfferReply { offer_id: "o".into(), miner_id: "m".into(), accepted: true, ..Default::default() },
    );
    wire("LedgerTaskRequest", &proto::LedgerTaskRequest { task_id: "t".into() });
    wire("LedgerEntriesRequest", &proto::LedgerEntriesRequest { miner_id: "m".into(), ..Default::default() });
    wire("LedgerWeightsRequest", &proto::LedgerWeightsRequest { ..Default::default() });
    wire(
        "TaskCreated",
        &proto::TaskCreated {
            task: Some(proto::Task { id: "t".into(), base_model: "tiny-1m".into(), ..Default::default() }),
            ..Default::default()
        },
    );
    wire("TaskStatusChanged", &proto::TaskStatusChanged { task_id: "t".into(), ..Default::default() });
    wire(
        "Assignment",
        &proto::Assignment { task_id: "t".into(), miner_id: "m".into(), deadline: now, ..Default::default() },
    );
    wire(
        "EvaluationResult",
        &proto::EvaluationResult {
            task_id: "t".into(),
            miner_id: "m".into(),
            test_loss: Some(1.25),
            ..Default::default()
        },
    );
    wire(
        "Submission",
        &proto::Submission {
            task_id: "t".into(),
            miner_id: "m".into(),
            artifact: Some(object("model.onnx")),
            signature: vec![3; 64],
            ..Default::default()
        },
    );

    let instruct =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/tasks/capitals/data.jsonl"))
            .expect("the capitals example");
    let with_type = |selector: u8, body: &[u8]| [&[selector][..], body].concat();
    let renamed = String::from_utf8(instruct.clone())
        .unwrap()
        .replace("\"question\"", "\"instruction\"")
        .replace("\"answer\"", "\"output\"");
    write("dataset_parse", "instruct-capitals.jsonl", &with_type(0, renamed.as_bytes()));
    write("dataset_parse", "instruct-wrong-columns.jsonl", &with_type(0, &instruct));
    let rows = |line: &str| (0..5).map(|i| line.replace("{i}", &i.to_string())).collect::<Vec<_>>().join("\n");
    let chat =
        rows(r#"{"messages": [{"role": "user", "content": "hi {i}"}, {"role": "assistant", "content": "hello {i}"}]}"#);
    write("dataset_parse", "chat.jsonl", &with_type(1, chat.as_bytes()));
    let dpo = rows(r#"{"prompt": "2+{i}?", "chosen": "{i}+2", "rejected": "no"}"#);
    write("dataset_parse", "dpo.jsonl", &with_type(2, dpo.as_bytes()));
    let grpo = rows(r#"{"prompt": "say {i}"}"#);
    write("dataset_parse", "grpo.jsonl", &with_type(3, grpo.as_bytes()));
    write("dataset_parse", "bom-crlf-blank.jsonl", &with_type(0, "\u{feff}{\"instruction\": \"a\", \"output\": \"b\"}\r\n\r\n{\"instruction\": \"c\", \"output\": \"d\"}\r\n{\"instruction\": \"e\", \"output\": \"f\"}\r\n".as_bytes()));

    write("onnx_checks", "valid-tiny-llama.onnx", &tiny_model(false));
    write("onnx_checks", "valid-tiny-llama-tied.onnx", &tiny_model(true));
    write("onnx_checks", "not-onnx.txt", b"this is not a model");
    write("onnx_checks", "empty.onnx", b"");
}
