//! `gradients-trainer pretrain` and `train` as real processes: a base model from the
//! generated corpus, fine-tuned on a generated task, with every output file; and a clear
//! failure for a broken base model.

use std::process::Command;

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gradients-trainer"))
}

#[test]
fn pretrain_then_train_writes_model_artifact_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny-1m");
    let output = trainer()
        .args(["pretrain", "--preset", "tiny-1m", "--steps", "30", "--corpus-bytes", "200000", "--device", "cpu"])
        .arg("--out")
        .arg(&base)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let family = gradients_taskgen::family("uppercase").unwrap();
    let task =
        gradients_taskgen::write_task_dir(dir.path(), family, gradients_taskgen::TaskKind::Instruct, 80, 1, None)
            .unwrap();
    let out = dir.path().join("run");
    let output = trainer()
        .args(["train", "--strategy", "successive-halving", "--steps", "32", "--device", "cpu"])
        .arg("--base")
        .arg(&base)
        .arg("--task")
        .arg(&task)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("successive-halving on tiny-1m"), "{stdout}");
    for file in ["model.onnx", "manifest.json", "report.json", "loss.svg", "model/config.json", "model/tokenizer.json"]
    {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["strategy"], "successive-halving");
    assert_eq!(report["trials"].as_array().unwrap().len(), 8);
    assert!(std::fs::read_to_string(out.join("loss.svg")).unwrap().contains("<svg"));
}

#[test]
fn a_broken_base_model_fails_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("config.json"), b"{\"model_type\": \"llama\"}").unwrap();
    let family = gradients_taskgen::family("uppercase").unwrap();
    let task =
        gradients_taskgen::write_task_dir(dir.path(), family, gradients_taskgen::TaskKind::Instruct, 20, 1, None)
            .unwrap();
    let output = trainer()
        .args(["train", "--steps", "2", "--device", "cpu"])
        .arg("--base")
        .arg(&base)
        .arg("--task")
        .arg(&task)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("config.json"), "{stderr}");
}
