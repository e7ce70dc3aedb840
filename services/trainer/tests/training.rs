//! Training end to end on CPU with small models: the loss the trainer optimizes is the
//! market's, fine-tuning lowers held-out loss, DPO learns the preference, LoRA touches only
//! its adapters, runs are deterministic, and every strategy stays inside its budget.

use gradients_data::{Row, TaskType};
use gradients_model::ModelConfig;
use gradients_text::{loss, sft_example, Example, Tokenizer};
use gradients_trainer::model::{CausalLm, LoraConfig};
use gradients_trainer::presets;
use gradients_trainer::strategy::{self, Budget, Context, StrategyKind};
use gradients_trainer::train::objective::{answer_nll, evaluate_nll, DeviceBatch};
use gradients_trainer::train::{prepare, Hyperparameters, Run, Schedule, TrainData};
use indicatif::ProgressBar;
use serde_json::json;
use tch::Device;

fn config() -> ModelConfig {
    presets::byte_llama(64, 2, 4, 2, 128, 128, true)
}

fn row(value: serde_json::Value) -> Row {
    Row::from_map(value.as_object().expect("object").clone())
}

/// "Double the letter": a deterministic family small models learn in a few steps.
fn rows(count: usize, offset: usize) -> Vec<Row> {
    (offset..offset + count)
        .map(|i| {
            let word: String = (0..3).map(|j| (b'a' + ((i * 7 + j * 3) % 26) as u8) as char).collect();
            let doubled: String = word.chars().flat_map(|c| [c, c]).collect();
            row(json!({"instruction": "Double every letter.", "input": word, "output": doubled}))
        })
        .collect()
}

fn preference_rows(count: usize, offset: usize) -> Vec<Row> {
    rows(count, offset)
        .into_iter()
        .map(|r| {
            let input = r.get_str("input").expect("input").to_owned();
            let chosen = r.get_str("output").expect("output").to_owned();
            row(json!({"prompt": format!("Double every letter: {input}"), "chosen": chosen, "rejected": input}))
        })
        .collect()
}

fn held_out_loss(model: &CausalLm, tokenizer: &Tokenizer, held_out: &[Row]) -> f64 {
    let examples: Vec<Example> = held_out
        .iter()
        .enumerate()
        .map(|(i, r)| sft_example(tokenizer, TaskType::Instruct, i + 1, r, 128).expect("example"))
        .collect();
    let refs: Vec<&Example> = examples.iter().collect();
    evaluate_nll(model, &refs, tokenizer.pad_id(), 16).mean()
}

fn hyper(learning_rate: f64) -> Hyperparameters {
    Hyperparameters {
        learning_rate,
        epochs: f64::INFINITY,
        batch_size: 8,
        gradient_accumulation: 2,
        warmup_ratio: 0.1,
        schedule: Schedule::Cosine,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        seed: 3,
        lora: None,
        dpo_beta: 0.1,
        max_len: 128,
        eval_every: 20,
        patience: None,
    }
}

fn train(data: &TrainData, hyper: Hyperparameters, steps: u64, base: &CausalLm) -> CausalLm {
    let reference = (data.task_type == TaskType::Dpo).then(|| base.duplicate());
    let mut run = Run::new(base.duplicate(), reference, hyper, steps, 257, data).expect("run");
    run.advance(data, steps, None, &ProgressBar::hidden()).expect("advance");
    run.finish(data).0
}

#[test]
fn the_tensor_loss_is_the_markets_loss() {
    let tokenizer = Tokenizer::byte_level();
    let model = CausalLm::new(&config(), Device::Cpu, 11);
    let examples: Vec<Example> =
        rows(3, 0).iter().map(|r| sft_example(&tokenizer, TaskType::Instruct, 1, r, 128).expect("example")).collect();
    let refs: Vec<&Example> = examples.iter().collect();
    let batch = DeviceBatch::new(&refs, tokenizer.pad_id(), Device::Cpu);
    let logits = batch.logits(&model, false);
    let (nll, tokens) = answer_nll(&logits, &batch);
    let mut reference = loss::LossSum::default();
    for (i, example) in examples.iter().enumerate() {
        let row_logits = Vec::<f32>::try_from(logits.get(i as i64).flatten(0, -1)).expect("logits");
        reference.add(loss::answer_nll(&row_logits, presets::BYTE_VOCAB, example));
    }
    assert_eq!(tokens as u64, reference.tokens);
    assert!((nll.double_value(&[]) - reference.nll).abs() < 1e-3 * reference.nll, "{nll} vs {}", reference.nll);
}

#[test]
fn fine_tuning_lowers_held_out_loss_by_a_margin() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 1);
    let data = prepare(&rows(200, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let held_out = rows(40, 500);
    let before = held_out_loss(&base, &tokenizer, &held_out);
    let tuned = train(&data, hyper(3e-3), 120, &base);
    let after = held_out_loss(&tuned, &tokenizer, &held_out);
    // From about ln(258) = 5.55 nats per answer token; the stated margin is a halving.
    assert!(after < 0.5 * before, "held-out loss {before:.3} -> {after:.3}");
}

#[test]
fn dpo_learns_to_prefer_the_chosen_answer() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 2);
    let data = prepare(&preference_rows(120, 0), TaskType::Dpo, &tokenizer, 128, 5).expect("data");
    let mut h = hyper(2e-3);
    h.dpo_beta = 0.5;
    let tuned = train(&data, h.clone(), 60, &base);
    let loss_of = |model: &CausalLm| gradients_trainer::train::run::validation_loss(model, Some(&base), &data, 257, &h);
    // DPO's loss starts at ln 2 (the policy equals the reference) and must fall.
    let (start, end) = (loss_of(&base), loss_of(&tuned));
    assert!((start - std::f64::consts::LN_2).abs() < 1e-4, "{start}");
    assert!(end < 0.5 * start, "validation DPO loss {start:.3} -> {end:.3}");
}

#[test]
fn lora_trains_only_adapters_and_merges_into_the_same_model() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 4);
    let data = prepare(&rows(64, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let mut h = hyper(5e-3);
    h.lora = Some(LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, targets: vec!["q_proj".into(), "v_proj".into()] });
    let mut run = Run::new(base.duplicate(), None, h, 30, 257, &data).expect("run");
    run.advance(&data, 30, None, &ProgressBar::hidden()).expect("advance");
    for (name, tensor) in run.model.base_variables() {
        assert!(tensor.equal(&base.base_variables()[&name]), "{name} changed under LoRA");
    }
    let ids = tch::Tensor::from_slice(&[35i64, 35, 35, 32, 73, 110]).view([1, 6]);
    let mask = tch::Tensor::ones([1, 6], (tch::Kind::Int64, Device::Cpu));
    let adapted = run.model.forward(&ids, &mask, false);
    assert!(!adapted.allclose(&base.forward(&ids, &mask, false), 1e-4, 1e-4, false), "the adapters learned nothing");
    let (merged, record) = run.finish(&data);
    assert!(record.trainable_parameters < 10_000, "{}", record.trainable_parameters);
    // finish() restores the best validation state before merging; compare against it.
    let merged_logits = merged.forward(&ids, &mask, false);
    let weights = merged.weights();
    let reloaded = {
        let copy = merged.duplicate();
        assert_eq!(copy.weights(), weights);
        copy
    };
    assert!(reloaded.forward(&ids, &mask, false).allclose(&merged_logits, 1e-5, 1e-5, false));
}

#[test]
fn same_seed_same_model() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 9);
    let data = prepare(&rows(48, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let a = train(&data, hyper(1e-3), 8, &base);
    let b = train(&data, hyper(1e-3), 8, &base);
    assert_eq!(a.weights(), b.weights());
}

#[test]
fn every_strategy_stays_inside_its_step_budget_and_improves_on_the_base() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 1);
    let data = prepare(&rows(120, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let before = held_out_loss(&base, &tokenizer, &rows(30, 500));
    for kind in [StrategyKind::Fixed, StrategyKind::Random, StrategyKind::LrRangeTest, StrategyKind::SuccessiveHalving]
    {
        let budget = 64;
        let ctx = Context {
            base: &base,
            data: &data,
            pad_id: tokenizer.pad_id(),
            max_len: 128,
            budget: Budget::steps(budget),
            seed: 7,
            bar: ProgressBar::hidden(),
            cancel: Default::default(),
        };
        let outcome = strategy::run(kind, &ctx).expect("strategy");
        let used: u64 = outcome.trials.iter().map(|t| t.steps).sum();
        assert!(used <= budget, "{kind:?} used {used} of {budget} steps");
        let after = held_out_loss(&outcome.model, &tokenizer, &rows(30, 500));
        assert!(after < before, "{kind:?}: {before:.3} -> {after:.3}");
        eprintln!("{kind:?}: {} trials, {used} steps, held-out {before:.3} -> {after:.3}", outcome.trials.len());
    }
}

#[test]
fn chat_rows_train_on_assistant_turns() {
    let tokenizer = Tokenizer::byte_level();
    let chat: Vec<Row> = rows(80, 0)
        .into_iter()
        .map(|r| {
            let (input, output) = (r.get_str("input").unwrap().to_owned(), r.get_str("output").unwrap().to_owned());
            row(json!({"messages": [
                {"role": "system", "content": "You double letters."},
                {"role": "user", "content": input},
                {"role": "assistant", "content": output}]}))
        })
        .collect();
    let data = prepare(&chat, TaskType::Chat, &tokenizer, 128, 5).expect("data");
    let base = CausalLm::new(&config(), Device::Cpu, 6);
    let h = hyper(3e-3);
    let before = gradients_trainer::train::run::validation_loss(&base, None, &data, 257, &h);
    let tuned = train(&data, h.clone(), 60, &base);
    let after = gradients_trainer::train::run::validation_loss(&tuned, None, &data, 257, &h);
    assert!(after < 0.6 * before, "chat validation loss {before:.3} -> {after:.3}");
}
