//! `gradients bench market` as a real process: two generated tasks through the whole
//! market (a private nats-server, intake, dispatch, evaluator and ledger, and one
//! `gradients-trainer` process per strategy) with a tiny base model and a tiny budget. The
//! JSON has every key the issue names, the table is written, and the plots are a valid SVG
//! and a valid PNG. Then the same with `--grpo`: generated GRPO tasks, their rewards sent
//! with the task, scored by mean reward with every comparison counting upwards.
//!
//! Needs `gradients-trainer` built beside `gradients` (`cargo build -p gradients-trainer`;
//! `make test` builds every binary).

use std::path::Path;
use std::process::Command;

use gradients_model::{LlamaConfig, ModelConfig, Weight, Weights};
use gradients_text::Tokenizer;
use serde_json::Value;

/// A Llama-style model small enough to train in seconds on a loaded CPU.
fn config() -> ModelConfig {
    ModelConfig::Llama(LlamaConfig {
        vocab_size: Tokenizer::byte_level().vocab_size(),
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: vec![256],
        hidden_act: "silu".into(),
        ..Default::default()
    })
}

/// A base model folder as the trainer reads it: config, tokenizer, safetensors weights.
fn write_base(dir: &Path) {
    let mut weights = Weights::default();
    for spec in config().parameters() {
        let n: usize = spec.shape.iter().product();
        let data = if spec.name.contains("norm") {
            vec![1.0; n]
        } else {
            (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect()
        };
        weights.0.insert(spec.name.clone(), Weight::new(spec.shape.clone(), data));
    }
    gradients_testkit::write_model_dir(dir, &config(), &weights).unwrap();
}

/// Runs `gradients bench market` with `args` on the tiny base model written under `dir`,
/// two strategies and two steps; returns the parsed market.json.
fn run_bench(dir: &Path, args: &[&std::ffi::OsStr]) -> Value {
    let gradients = Path::new(env!("CARGO_BIN_EXE_gradients"));
    let trainer = gradients.with_file_name("gradients-trainer");
    assert!(trainer.is_file(), "{} is missing: run `cargo build -p gradients-trainer` first", trainer.display());
    let base = dir.join("tiny-test");
    write_base(&base);
    let nats_server = gradients_testkit::workspace_root().join(".deps/py/bin/nats-server");
    let output = Command::new(gradients)
        .args(["bench", "market", "--steps", "2", "--strategies", "fixed,random", "--hours", "0.2"])
        .args(args)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--base-model")
        .arg(&base)
        .arg("--trainer")
        .arg(&trainer)
        .arg("--nats-server")
        .arg(std::env::var_os("GRADIENTS_NATS_SERVER").map_or(nats_server, Into::into))
        .env("GRADIENTS__TELEMETRY__LOG_FILTER", "warn")
        .output()
        .expect("gradients runs");
    assert!(
        output.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(dir.join("out/market.json")).unwrap()).unwrap()
}

#[test]
fn bench_market_writes_every_key_a_table_and_valid_plots() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    for family in ["reverse-word", "parity"] {
        let family = gradients_taskgen::family(family).unwrap();
        gradients_taskgen::write_task_dir(&tasks, family, gradients_taskgen::TaskKind::Instruct, 60, 3, None).unwrap();
    }
    let report = run_bench(dir.path(), &["--tasks".as_ref(), tasks.as_os_str()]);
    let out = dir.path().join("out");
    assert_eq!(report["metric"], "loss");

    for key in [
        "win_rate",
        "mean_improvement",
        "median_improvement",
        "win_rate_vs_best_single",
        "mean_improvement_vs_best_single",
        "win_rate_equal_compute",
        "best_single_strategy",
        "tasks",
        "config",
    ] {
        assert!(report.get(key).is_some(), "market.json lacks {key}: {report:#}");
    }
    for key in
        ["win_rate", "mean_improvement", "median_improvement", "win_rate_vs_best_single", "win_rate_equal_compute"]
    {
        assert!(report[key].is_f64(), "{key} is a number: {}", report[key]);
    }
    let rows = report["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per task folder");
    for row in rows {
        for key in ["baseline_loss", "winner_loss", "improvement", "winner_strategy", "confidence", "equal_compute"] {
            assert!(row.get(key).is_some(), "a task row lacks {key}: {row:#}");
        }
        assert!(row["baseline_loss"].as_f64().unwrap() > 0.0);
        assert_eq!((row["metric"].as_str(), row["higher_is_better"].as_bool()), (Some("loss"), Some(false)));
        assert_eq!(row["strategies"].as_object().unwrap().len(), 2, "each strategy is a miner of the task");
        assert!(row["report_rows"].as_u64().unwrap() > 0, "rows held out for the report");
        let ledger_reasons: Vec<&str> =
            row["strategies"].as_object().unwrap().values().map(|s| s["ledger_reason"].as_str().unwrap()).collect();
        assert!(ledger_reasons.iter().all(|r| !r.is_empty()), "the ledger paid every miner: {ledger_reasons:?}");
    }
    assert_eq!(report["config"]["budget"]["per_miner_steps"], 2);
    assert_eq!(report["config"]["budget"]["equal_compute_per_miner_steps"], 1);

    let table = std::fs::read_to_string(out.join("market.md")).unwrap();
    assert!(table.contains("reverse-word") && table.contains("parity") && table.contains("win rate"), "{table}");
    let svg = std::fs::read_to_string(out.join("market.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "an SVG document");
    assert!(svg.contains("reverse-word"), "the tasks are labelled");
    let png = std::fs::read(out.join("market.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    assert!(u32::from_be_bytes(png[16..20].try_into().unwrap()) >= 640, "the plot's width");
    assert!(!out.join("work").exists(), "the market's work folder is removed");
}

/// `--grpo`: two generated GRPO families through the market. Each task is sent with its
/// family's reward functions (intake refuses a GRPO task without them), every miner's model
/// and the base model are scored by mean greedy reward on the report rows, and the rows
/// say so: `metric` "reward", `higher_is_better`, `…_reward` keys and no `…_loss` ones.
#[test]
fn bench_market_grpo_scores_by_reward() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_bench(
        dir.path(),
        &["--grpo", "--families", "arithmetic,compare-numbers", "--rows", "30", "--no-equal-compute"]
            .map(AsRef::as_ref),
    );
    assert_eq!(report["metric"], "reward", "{report:#}");
    for key in ["win_rate", "mean_gain", "mean_improvement", "best_single_strategy", "strategy_mean_gain"] {
        assert!(report.get(key).is_some(), "market.json lacks {key}: {report:#}");
    }
    assert!(report["win_rate"].is_f64() && report["mean_gain"].is_f64());
    let rows = report["tasks"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one task per family");
    for row in rows {
        assert_eq!(row["type"], "grpo");
        assert_eq!((row["metric"].as_str(), row["higher_is_better"].as_bool()), (Some("reward"), Some(true)));
        for key in ["base_reward", "baseline_reward", "winner_reward", "improvement", "gain", "confidence"] {
            assert!(row.get(key).is_some(), "a GRPO row lacks {key}: {row:#}");
        }
        assert!(row.get("baseline_loss").is_none() && row.get("winner_loss").is_none(), "{row:#}");
        let (baseline, winner) = (row["baseline_reward"].as_f64().unwrap(), row["winner_reward"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&baseline) && (0.0..=1.0).contains(&winner), "rewards in [0, 1]: {row:#}");
        assert!((row["gain"].as_f64().unwrap() - (winner - baseline)).abs() < 1e-9, "the gain counts upwards");
        for (name, strategy) in row["strategies"].as_object().unwrap() {
            assert!(!strategy["ledger_reason"].as_str().unwrap().is_empty(), "the ledger judged {name}");
            assert!(
                strategy.get("report_reward").is_some() && strategy.get("report_loss").is_none(),
                "{name}: {strategy:#}"
            );
        }
    }
    let table = std::fs::read_to_string(dir.path().join("out/market.md")).unwrap();
    assert!(table.contains("reward") && table.contains("arithmetic-grpo"), "{table}");
}
