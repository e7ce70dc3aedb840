//! The strategies' promises, with real training of a small model on CPU: every strategy
//! keeps inside its step budget (odd and tiny budgets included) and its time budget; the
//! newer strategies (`sweep-decay`, `pbt`) beat the base model and the fixed recipe on a
//! task from `shared/taskgen`; and what is deterministic under concurrency (see
//! `gradients_trainer::strategy`'s module documentation): a full fine-tuning run gives
//! the same weights alone and beside other trainings in the same process; a LoRA run is
//! the same twice only in a process where nothing else trains.

use std::time::{Duration, Instant};

use gradients_data::{Row, TaskType};
use gradients_model::ModelConfig;
use gradients_taskgen::TaskKind;
use gradients_text::{sft_example, Example, Tokenizer};
use gradients_trainer::model::{CausalLm, LoraConfig};
use gradients_trainer::presets;
use gradients_trainer::strategy::{self, Budget, Context, Outcome, StrategyKind};
use gradients_trainer::train::objective::evaluate_nll;
use gradients_trainer::train::{prepare, Hyperparameters, Run, Schedule, StopReason, TrainData};
use indicatif::ProgressBar;
use tch::Device;

/// The test model; first called by every test, it also sets libtorch's intra-op threads
/// to one for the whole process: its threads spin while they wait, so on a machine loaded
/// by other processes two of them on two cores slow a step tenfold (the time budget test),
/// and the determinism tests compare runs that must use the same thread count.
fn config() -> ModelConfig {
    tch::set_num_threads(1);
    presets::byte_llama(64, 2, 4, 2, 128, 128, true)
}

/// `count` rows of a taskgen family, split off after `skip` rows of the same stream.
fn family_rows(family: &str, count: usize, skip: usize) -> Vec<Row> {
    let family = gradients_taskgen::family(family).expect("family");
    let rows = gradients_taskgen::generate(family, TaskKind::Instruct, skip + count, 11).expect("rows");
    rows.into_iter().skip(skip).map(Row::from_map).collect()
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

fn run_strategy(kind: StrategyKind, base: &CausalLm, data: &TrainData, budget: Budget) -> Outcome {
    let ctx = Context {
        base,
        data,
        pad_id: Tokenizer::byte_level().pad_id(),
        max_len: 128,
        budget,
        seed: 7,
        bar: ProgressBar::hidden(),
        cancel: Default::default(),
    };
    strategy::run(kind, &ctx).unwrap_or_else(|e| panic!("{kind:?}: {e}"))
}

fn steps_used(outcome: &Outcome) -> u64 {
    outcome.trials.iter().map(|t| t.steps).sum()
}

#[test]
fn every_strategy_stays_inside_small_and_odd_step_budgets() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 1);
    let data = prepare(&family_rows("uppercase", 60, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    for budget in [1, 3, 10, 17, 40] {
        for kind in StrategyKind::all() {
            let outcome = run_strategy(kind, &base, &data, Budget::steps(budget));
            let used = steps_used(&outcome);
            assert!(used <= budget, "{kind:?} took {used} optimizer steps on a budget of {budget}");
            // Searching strategies spend the budget unless validation stopped the chosen
            // run early; fixed stops at its one epoch.
            let stopped_early = matches!(outcome.record.stop, Some(StopReason::EarlyStopped | StopReason::Diverged));
            if kind != StrategyKind::Fixed && !stopped_early {
                assert!(used * 10 >= budget * 9, "{kind:?} took only {used} of {budget} steps");
            }
            // The chosen model's record counts its own steps, a part of the whole.
            assert!(outcome.record.steps <= used, "{kind:?}");
        }
    }
}

#[test]
fn every_strategy_stays_inside_a_time_budget() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 1);
    let data = prepare(&family_rows("uppercase", 80, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let seconds = 3.0;
    for kind in StrategyKind::all() {
        let started = Instant::now();
        let outcome = run_strategy(kind, &base, &data, Budget::until(started + Duration::from_secs_f64(seconds)));
        let took = started.elapsed().as_secs_f64();
        // A step started before the deadline ends after it, and each run in flight then
        // validates once and the chosen one finishes: the slack is a few steps' time (as
        // measured on the chosen run: the machine may be loaded) and a second.
        let step = outcome.record.seconds / outcome.record.steps.max(1) as f64;
        let slack = 1.0 + 4.0 * step;
        assert!(took < seconds + slack, "{kind:?} took {took:.2} s of a {seconds} s budget (slack {slack:.2} s)");
        assert!(steps_used(&outcome) > 0, "{kind:?} trained nothing");
        eprintln!("{kind:?}: {} steps in {took:.2} s", steps_used(&outcome));
    }
}

#[test]
fn the_new_strategies_beat_the_base_model_and_the_fixed_recipe_on_a_generated_task() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 3);
    let data = prepare(&family_rows("reverse-word", 200, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let held_out = family_rows("reverse-word", 40, 200);
    let before = held_out_loss(&base, &tokenizer, &held_out);
    let fixed = run_strategy(StrategyKind::Fixed, &base, &data, Budget::steps(60));
    let fixed_loss = held_out_loss(&fixed.model, &tokenizer, &held_out);
    for kind in [StrategyKind::SweepDecay, StrategyKind::Pbt] {
        let outcome = run_strategy(kind, &base, &data, Budget::steps(60));
        let after = held_out_loss(&outcome.model, &tokenizer, &held_out);
        eprintln!(
            "{kind:?}: held-out {before:.3} -> {after:.3} (fixed {fixed_loss:.3}), {} trials",
            outcome.trials.len()
        );
        assert!(steps_used(&outcome) <= 60, "{kind:?}");
        assert!(after < 0.8 * before, "{kind:?}: held-out {before:.3} -> {after:.3}");
        assert!(after < fixed_loss, "{kind:?}: {after:.3} against fixed {fixed_loss:.3}");
    }
}

fn full_hyper(seed: u64) -> Hyperparameters {
    Hyperparameters {
        learning_rate: 2e-3,
        epochs: f64::INFINITY,
        batch_size: 8,
        gradient_accumulation: 1,
        warmup_ratio: 0.1,
        schedule: Schedule::Cosine,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        seed,
        lora: None,
        dpo_beta: 0.1,
        max_len: 128,
        eval_every: 5,
        patience: None,
    }
}

fn train(base: &CausalLm, data: &TrainData, hyper: Hyperparameters, steps: u64) -> CausalLm {
    let mut run = Run::new(base.duplicate(), None, hyper, steps, 257, data).expect("run");
    run.advance(data, steps, None, &ProgressBar::hidden()).expect("advance");
    run.finish(data).0
}

#[test]
fn a_seeded_full_fine_tuning_is_the_same_alone_and_beside_other_trainings() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 9);
    let data = prepare(&family_rows("uppercase", 64, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let alone = train(&base, &data, full_hyper(3), 12);
    // Beside it: another full run with another seed, and a LoRA run with dropout, which
    // draws from libtorch's process-global generator on every step and reseeds it.
    let mut lora = full_hyper(4);
    lora.lora = Some(LoraConfig { rank: 4, alpha: 8.0, dropout: 0.1, targets: vec!["all-linear".into()] });
    // A model is not shared between threads: each gets its own copy of the base.
    let copies = [base.duplicate(), base.duplicate(), base.duplicate()];
    let [base_a, base_b, base_c] = copies;
    let (data, lora) = (&data, &lora);
    let (beside, other, _) = std::thread::scope(|scope| {
        let a = scope.spawn(move || train(&base_a, data, full_hyper(3), 12));
        let b = scope.spawn(move || train(&base_b, data, full_hyper(5), 12));
        let c = scope.spawn(move || train(&base_c, data, lora.clone(), 12));
        (a.join().expect("a"), b.join().expect("b"), c.join().expect("c"))
    });
    assert!(alone.weights() == beside.weights(), "a concurrent training changed a seeded full fine-tuning");
    assert!(alone.weights() != other.weights(), "the seed must matter (data order)");
    // A whole strategy, several runs and forks, concurrently with another strategy.
    let lone = run_strategy(StrategyKind::Pbt, &base, data, Budget::steps(24));
    let (base_a, base_b) = (base.duplicate(), base.duplicate());
    let (together, _) = std::thread::scope(|scope| {
        let a = scope.spawn(move || run_strategy(StrategyKind::Pbt, &base_a, data, Budget::steps(24)).model.weights());
        let b =
            scope.spawn(move || run_strategy(StrategyKind::Random, &base_b, data, Budget::steps(24)).model.weights());
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert!(lone.model.weights() == together, "pbt beside random changed pbt's model");
}

/// The documented limit: LoRA draws its adapters' initial values and its dropout masks from
/// libtorch's process-global generator, which any other training in the process (even a
/// model copy) also draws from, and the test harness runs tests on parallel threads. So
/// the promise, a seeded LoRA run is the same twice in a process where nothing else
/// trains, is checked in a child process running only the test below.
#[test]
fn a_seeded_lora_run_alone_in_its_process_is_deterministic() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "lora_twice_in_a_process_of_its_own", "--ignored", "--test-threads=1"])
        .output()
        .expect("child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("1 passed"), "the child ran no test: {stdout}");
}

#[test]
#[ignore = "run alone in a child process by a_seeded_lora_run_alone_in_its_process_is_deterministic"]
fn lora_twice_in_a_process_of_its_own() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&config(), Device::Cpu, 9);
    let data = prepare(&family_rows("uppercase", 64, 0), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let mut lora = full_hyper(3);
    lora.learning_rate = 5e-3;
    lora.lora = Some(LoraConfig { rank: 4, alpha: 8.0, dropout: 0.1, targets: vec!["all-linear".into()] });
    let a = train(&base, &data, lora.clone(), 10);
    let b = train(&base, &data, lora, 10);
    assert!(a.weights() == b.weights(), "a seeded LoRA run alone in its process changed");
}
