//! `gradients eval run|inspect` as a real process: a local ONNX file scored with the
//! evaluator's checks and scorer prints the number the evaluator's library computes, and a
//! hostile file is refused with its typed reason and a non-zero exit; then
//! `gradients model publish|list` against a private nats-server.

use std::path::Path;
use std::process::{Command, Output};

use gradients_data::TaskType;
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::evaluate::{check_and_score, prepare};
use gradients_model::{files, ModelConfig, Weight, Weights};
use gradients_testkit::NatsServer;
use gradients_text::Tokenizer;
use serde_json::Value;

/// The testkit's base model architecture, with weights of this test's own.
fn config() -> ModelConfig {
    gradients_testkit::base_model_config()
}

/// Weights following a simple deterministic pattern; `shift` makes another model.
fn weights(shift: f32) -> Weights {
    let mut weights = Weights::default();
    for spec in config().parameters() {
        let n: usize = spec.shape.iter().product();
        let data = if spec.name.contains("norm") {
            vec![1.0; n]
        } else {
            (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1 + shift).collect()
        };
        weights.0.insert(spec.name.clone(), Weight::new(spec.shape.clone(), data));
    }
    weights
}

/// A base model folder with its ONNX export (readers take `model.onnx` as it is).
fn write_base(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(files::CONFIG), config().to_json()).unwrap();
    std::fs::write(dir.join(files::TOKENIZER), Tokenizer::byte_level().to_json()).unwrap();
    std::fs::write(dir.join(files::ONNX), gradients_model::onnx::export(&config(), &weights(0.0)).unwrap()).unwrap();
}

fn gradients(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gradients"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("gradients runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {} / {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `eval run` prints the library's loss for a fine-tune, refuses the untouched base and a
/// truncated file with their codes (exit 3); `eval inspect` shows the parameters.
#[test]
fn eval_run_and_inspect_score_and_refuse_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    write_base(&base_dir);
    let tuned = gradients_model::onnx::export(&config(), &weights(0.003)).unwrap();
    std::fs::write(dir.path().join("tuned.onnx"), &tuned).unwrap();
    std::fs::write(dir.path().join("truncated.onnx"), &tuned[..tuned.len() / 3]).unwrap();
    let rows: String = (0..12)
        .map(|i| format!("{{\"instruction\":\"Say {i}.\",\"input\":\"\",\"output\":\"{i} it is\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("rows.jsonl"), &rows).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let base = base_dir.display().to_string();
    let env = [("GRADIENTS__TELEMETRY__LOG_FILTER", "warn".to_owned())];

    let run = |artifact: &str| {
        gradients(
            &[
                "eval",
                "run",
                "--artifact",
                artifact,
                "--data",
                &path("rows.jsonl"),
                "--type",
                "instruct",
                "--base-model",
                &base,
                "--json",
            ],
            &env,
        )
    };
    let scored = run(&path("tuned.onnx"));
    assert!(scored.status.success(), "{}", String::from_utf8_lossy(&scored.stderr));
    let printed = json(&scored);
    let model = BaseModel::from_dir("base", &base_dir).unwrap();
    let parsed = gradients_data::from_jsonl(rows.as_bytes()).unwrap();
    let splits = prepare(&model, TaskType::Instruct, &[("rows", &parsed)]).unwrap();
    let settings = gradients_config::EvaluatorSettings::default();
    let (_, expected) = check_and_score(tuned.clone(), &model, TaskType::Instruct, &splits, &settings).unwrap();
    assert_eq!(printed["loss"].as_f64(), Some(expected[0].loss), "the CLI prints the evaluator's number");
    assert_eq!(printed["tokens"].as_u64(), Some(expected[0].tokens));

    let untouched = run(&format!("{base}/model.onnx"));
    assert_eq!(untouched.status.code(), Some(3));
    assert_eq!(json(&untouched)["code"], "NOT_A_FINE_TUNE");
    let truncated = run(&path("truncated.onnx"));
    assert_eq!(truncated.status.code(), Some(3));
    assert_eq!(json(&truncated)["code"], "NOT_ONNX");

    let inspected = gradients(&["eval", "inspect", &path("tuned.onnx"), "--json"], &env);
    assert!(inspected.status.success());
    assert_eq!(json(&inspected)["parameter_count"].as_u64(), Some(config().parameter_count()));
}

/// `model publish` stores a folder's files, its ONNX export and their sha256s; `model list`
/// shows it; the evaluator's reader gets the same model back.
#[test]
fn model_publish_and_list() {
    let nats = NatsServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny");
    // Publishing exports from the weights: write them as the trainer does (no ONNX file).
    let weights = weights(0.0);
    gradients_testkit::write_model_dir(&folder, &config(), &weights).unwrap();
    let env = [("GRADIENTS__NATS__URL", nats.url()), ("GRADIENTS__TELEMETRY__LOG_FILTER", "warn".to_owned())];

    let published = gradients(&["model", "publish", &folder.display().to_string(), "--name", "tiny-test"], &env);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let listed = gradients(&["model", "list", "--json"], &env);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let models = json(&listed);
    assert_eq!(models[0]["name"], "tiny-test");
    assert_eq!(models[0]["parameter_count"].as_u64(), Some(config().parameter_count()));
    let onnx_sha = models[0]["files"]["model.onnx"]["sha256"].as_str().unwrap().to_owned();
    let expected = gradients_bus::objects::sha256_hex(&gradients_model::onnx::export(&config(), &weights).unwrap());
    assert_eq!(onnx_sha, expected, "the published export is the exporter's, byte for byte");
}
