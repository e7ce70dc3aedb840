//! The evaluator's loss is the trainer's: for a model the trainer built and exported, the
//! market's loss computed by the evaluator (ONNX Runtime, `gradients_text` examples, the
//! evaluator's batching) equals the trainer's tch loss on the same rows within 1e-4, for
//! instruct, chat and DPO (against the base model as reference). And the evaluator's greedy
//! generation (ONNX Runtime, no cache, right padding) writes exactly the tokens the
//! trainer's greedy generation (tch, key-value cache, left padding) writes, so GRPO scores
//! what the miner's own generation produced.

use gradients_data::{Row, TaskType};
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::evaluate::{prepare, run_model, scores};
use gradients_text::{dpo_pair, sft_example, Example, Tokenizer};
use gradients_trainer::export::{export, BaseModel as ExportBase};
use gradients_trainer::model::CausalLm;
use gradients_trainer::train::objective::{answer_log_prob, dpo_loss, evaluate_nll, DeviceBatch};
use tch::Device;

const TOLERANCE: f64 = 1e-4;

fn rows(values: Vec<serde_json::Value>) -> Vec<Row> {
    values.into_iter().map(|v| Row::from_map(v.as_object().unwrap().clone())).collect()
}

fn instruct_rows() -> Vec<Row> {
    rows((0..14)
        .map(|i| serde_json::json!({"instruction": format!("Reverse w{i}x."), "input": if i % 3 == 0 { "now" } else { "" }, "output": format!("x{i}w")}))
        .collect())
}

fn chat_rows() -> Vec<Row> {
    rows(
        (0..10)
            .map(|i| {
                serde_json::json!({"messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": format!("What is {i} plus one?")},
                    {"role": "assistant", "content": format!("{}", i + 1)},
                    {"role": "user", "content": "And twice that?"},
                    {"role": "assistant", "content": format!("{}", 2 * (i + 1))}
                ]})
            })
            .collect(),
    )
}

fn dpo_rows() -> Vec<Row> {
    rows((0..12)
        .map(|i| serde_json::json!({"prompt": format!("Double {i}."), "chosen": format!("{}", 2 * i), "rejected": format!("{} or so", 2 * i + 1)}))
        .collect())
}

struct Models {
    _dir: tempfile::TempDir,
    base_tch: CausalLm,
    tuned_tch: CausalLm,
    base: BaseModel,
    tuned_onnx: Vec<u8>,
}

fn models() -> Models {
    let config = gradients_trainer::presets::byte_llama(48, 2, 6, 2, 80, 128, true);
    let tokenizer = Tokenizer::byte_level();
    let dir = tempfile::tempdir().unwrap();
    let base_tch = CausalLm::new(&config, Device::Cpu, 1);
    gradients_trainer::checkpoint::save(&base_tch, &tokenizer, &dir.path().join("base")).unwrap();
    let base = BaseModel::from_dir("base", &dir.path().join("base")).unwrap();
    // Another initialisation of the same architecture stands for a fine-tune.
    let tuned_tch = CausalLm::new(&config, Device::Cpu, 2);
    let info = ExportBase { name: "base".into(), weights_sha256: "0".repeat(64), tokenizer_sha256: "0".repeat(64) };
    let tuned_onnx = export(&tuned_tch, &info, serde_json::json!({})).unwrap().onnx;
    Models { _dir: dir, base_tch, tuned_tch, base, tuned_onnx }
}

fn evaluator_loss(models: &Models, task_type: TaskType, rows: &[Row]) -> f64 {
    let settings = gradients_config::EvaluatorSettings { batch_tokens: 300, ..Default::default() };
    let splits = prepare(&models.base, task_type, &[("test", rows)]).unwrap();
    let sums = run_model(models.tuned_onnx.clone().into(), &models.base, &splits, &settings).unwrap();
    let reference = (task_type == TaskType::Dpo)
        .then(|| run_model(models.base.onnx.clone(), &models.base, &splits, &settings).unwrap());
    scores(&splits, &sums, reference.as_deref(), 0.1).unwrap()[0].loss
}

fn max_len() -> usize {
    gradients_text::MAX_EXAMPLE_TOKENS.min(128)
}

#[test]
fn supervised_losses_match_the_trainer() {
    let models = models();
    let tokenizer = Tokenizer::byte_level();
    for (task_type, rows) in [(TaskType::Instruct, instruct_rows()), (TaskType::Chat, chat_rows())] {
        let examples: Vec<Example> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| sft_example(&tokenizer, task_type, i + 1, r, max_len()))
            .collect::<Result<_, _>>()
            .unwrap();
        let refs: Vec<&Example> = examples.iter().collect();
        let trainer = evaluate_nll(&models.tuned_tch, &refs, tokenizer.pad_id(), 4).mean();
        let evaluator = evaluator_loss(&models, task_type, &rows);
        eprintln!("{task_type}: trainer {trainer:.8} evaluator {evaluator:.8}");
        assert!((trainer - evaluator).abs() <= TOLERANCE, "{task_type}: {trainer} vs {evaluator}");
    }
}

#[test]
fn dpo_loss_matches_the_trainer() {
    let models = models();
    let tokenizer = Tokenizer::byte_level();
    let rows = dpo_rows();
    let pairs: Vec<(Example, Example)> =
        rows.iter().enumerate().map(|(i, r)| dpo_pair(&tokenizer, i + 1, r, max_len()).unwrap()).collect();
    let _guard = tch::no_grad_guard();
    let (chosen, rejected): (Vec<&Example>, Vec<&Example>) = pairs.iter().map(|(c, r)| (c, r)).unzip();
    let chosen = DeviceBatch::new(&chosen, tokenizer.pad_id(), Device::Cpu);
    let rejected = DeviceBatch::new(&rejected, tokenizer.pad_id(), Device::Cpu);
    let lp = |m: &CausalLm, b: &DeviceBatch| answer_log_prob(&b.logits(m, false), b);
    let trainer = dpo_loss(
        &lp(&models.tuned_tch, &chosen),
        &lp(&models.tuned_tch, &rejected),
        &lp(&models.base_tch, &chosen),
        &lp(&models.base_tch, &rejected),
        0.1,
    )
    .double_value(&[]);
    let evaluator = evaluator_loss(&models, TaskType::Dpo, &rows);
    eprintln!("dpo: trainer {trainer:.8} evaluator {evaluator:.8}");
    assert!((trainer - evaluator).abs() <= TOLERANCE, "dpo: {trainer} vs {evaluator}");
}

/// A model whose greedy completions vary: a fresh initialisation with its weights scaled up
/// (at the initial scale a model only repeats the prompt's last token).
fn writer(config: &gradients_model::ModelConfig, seed: i64) -> CausalLm {
    let model = CausalLm::new(config, Device::Cpu, seed);
    let _guard = tch::no_grad_guard();
    for (name, mut tensor) in model.base_variables() {
        if !name.contains("norm") {
            let _ = tensor.f_mul_scalar_(30.0).unwrap();
        }
    }
    model
}

#[test]
fn greedy_generation_matches_the_trainer() {
    use gradients_evaluator::generation::Generator;
    use gradients_evaluator::runtime::{create_session, SessionLimits, Watchdog};
    use gradients_trainer::generate::{generate, GenerateConfig};

    let config = gradients_trainer::presets::byte_llama(48, 2, 6, 2, 80, 128, true);
    let tokenizer = Tokenizer::byte_level();
    let info = ExportBase { name: "base".into(), weights_sha256: "0".repeat(64), tokenizer_sha256: "0".repeat(64) };
    let settings = gradients_config::EvaluatorSettings { batch_tokens: 400, ..Default::default() };
    let prompts: Vec<Vec<u32>> = (0..12)
        .map(|i| {
            let row = Row::from_map(
                serde_json::json!({"prompt": format!("Write {} then {}.", "ab".repeat(i % 4), i * 7)})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            gradients_text::grpo_prompt_ids(&tokenizer, i + 1, &row, 100).unwrap()
        })
        .collect();
    let max_new = 24;
    let (mut compared, mut stopped, mut distinct) = (0, 0, std::collections::BTreeSet::new());
    for seed in [3, 4, 5] {
        let model = writer(&config, seed);
        let trainer =
            generate(&model, &prompts, &GenerateConfig::greedy(max_new, vec![tokenizer.eos_id()], tokenizer.pad_id()))
                .unwrap();
        let onnx = export(&model, &info, serde_json::json!({})).unwrap().onnx;
        let mut session = create_session(onnx.into(), SessionLimits::from_settings(&settings)).unwrap();
        let watchdog = Watchdog::start(settings.run_timeout()).unwrap();
        let mut generator = Generator {
            session: &mut session,
            watchdog: &watchdog,
            vocab: config.vocab_size(),
            pad_id: tokenizer.pad_id(),
            stop_ids: vec![tokenizer.eos_id()],
            max_len: 128,
            batch_tokens: settings.batch_tokens,
        };
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let (evaluator, stats) = generator.greedy(&refs, max_new).unwrap();
        eprintln!("seed {seed}: {} runs, {} positions, {} new tokens", stats.runs, stats.positions, stats.new_tokens);
        for (i, (t, e)) in trainer.iter().zip(&evaluator).enumerate() {
            // The trainer's ids end with the end-of-text that stopped them; the evaluator's do not.
            let mut expected = t.ids.clone();
            if t.stopped {
                expected.pop();
            }
            assert_eq!(e.ids, expected, "seed {seed}, prompt {i}: ONNX Runtime and tch write different tokens");
            assert_eq!(e.stopped, t.stopped, "seed {seed}, prompt {i}");
            compared += e.ids.len();
            stopped += usize::from(e.stopped);
            distinct.extend(e.ids.iter().copied());
        }
    }
    eprintln!(
        "{compared} tokens equal, {stopped} of 36 completions ended by end-of-text, {} distinct ids",
        distinct.len()
    );
    assert!(distinct.len() > 10, "the completions should not be one repeated token");
}
