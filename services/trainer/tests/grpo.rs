//! GRPO on CPU with real libtorch: the objective's pieces on hand-computed cases; training
//! that raises a tiny model's mean greedy reward (what the evaluator scores) on held-out
//! prompts, scored by the market's own reward functions (gradients-reward), on a
//! hand-written arithmetic task and on taskgen's GRPO families; both strategies inside
//! their step budgets; and a GRPO job delivered like any other (model folder, ONNX,
//! manifest, report).
//!
//! The margins were measured first: `GRPO_SEEDS=1,2,3,4,5 cargo test -p gradients-trainer
//! --test grpo -- --nocapture` prints base and trained rewards for each seed.

use gradients_data::Row;
use gradients_reward::{RewardSet, RewardSpec};
use gradients_text::Tokenizer;
use gradients_trainer::grpo::objective::{
    clipped_surrogate, group_advantages, grpo_loss, kl_k3, token_log_probs, LossInputs, ADVANTAGE_EPS,
};
use gradients_trainer::grpo::{self, Generator, GrpoContext, GrpoData, GrpoRun, GrpoStrategy};
use gradients_trainer::job::{self, Job, JobReport};
use gradients_trainer::model::CausalLm;
use gradients_trainer::presets;
use gradients_trainer::strategy::{Budget, StrategyKind};
use indicatif::ProgressBar;
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).expect("values")
}

#[test]
fn advantages_are_normalised_within_each_group() {
    let advantages = group_advantages(&[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4);
    // Group 1: mean 0.5, sample std sqrt(4 · 0.25 / 3) = 0.57735.
    let expected = 0.5 / (0.25f64 * 4.0 / 3.0).sqrt().add_eps();
    for (got, want) in advantages[..4].iter().zip([expected, -expected, -expected, expected]) {
        assert!(close(*got, want, 1e-12), "{got} vs {want}");
    }
    // Group 2: every reward equal, so no completion is better than another.
    assert_eq!(&advantages[4..], &[0.0; 4]);
    let skewed = group_advantages(&[3.0, 0.0, 0.0], 3);
    assert!(close(skewed.iter().sum::<f64>(), 0.0, 1e-12), "advantages of a group sum to 0");
    assert!(close(skewed[0], 2.0 / 3f64.sqrt().add_eps(), 1e-12), "{skewed:?}");
}

trait AddEps {
    fn add_eps(self) -> f64;
}

impl AddEps for f64 {
    fn add_eps(self) -> f64 {
        self + ADVANTAGE_EPS
    }
}

#[test]
fn the_ratio_is_clipped_on_the_side_that_would_gain() {
    let ln = |p: f64| p.ln();
    // Ratios 1.5 and 0.5 against the sampling policy, each with advantage +1 and −1.
    let old = Tensor::from_slice(&[ln(0.5), ln(0.5)]).view([1, 2]).repeat([2, 1]);
    let new = Tensor::from_slice(&[ln(0.75), ln(0.25)]).view([1, 2]).repeat([2, 1]);
    let advantages = Tensor::from_slice(&[1.0f64, -1.0]);
    let surrogate = values(&clipped_surrogate(&new, &old, &advantages, 0.2));
    // A > 0: min(1.5, 1.2) = 1.2 (no gain past 1 + ε), min(0.5, 0.8) = 0.5 (losses count).
    // A < 0: min(−1.5, −1.2) = −1.5, min(−0.5, −0.8) = −0.8.
    for (got, want) in surrogate.iter().zip([1.2, 0.5, -1.5, -0.8]) {
        assert!(close(*got, want, 1e-9), "{surrogate:?}");
    }
}

#[test]
fn kl_k3_is_zero_at_identical_policies_and_positive_elsewhere() {
    let log_probs = Tensor::from_slice(&[0.5f64.ln(), 0.1f64.ln(), 0.9f64.ln()]);
    assert_eq!(values(&kl_k3(&log_probs, &log_probs)), vec![0.0; 3]);
    // π_ref/π = 0.5: 0.5 − ln 0.5 − 1 = 0.193147.
    let reference = Tensor::from_slice(&[0.25f64.ln()]);
    let kl = values(&kl_k3(&Tensor::from_slice(&[0.5f64.ln()]), &reference))[0];
    assert!(close(kl, 0.5 - 0.5f64.ln() - 1.0, 1e-12), "{kl}");
    assert!(values(&kl_k3(&reference, &Tensor::from_slice(&[0.5f64.ln()])))[0] > 0.0);
}

#[test]
fn token_log_probs_are_of_the_tempered_next_token() {
    // One sequence [2, 0, 1] over a vocabulary of 3; logits at positions 0 and 1.
    let logits = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 0.0, 0.0, 4.0, 9.0, 9.0, 9.0]).view([1, 3, 3]);
    let ids = Tensor::from_slice(&[2i64, 0, 1]).view([1, 3]);
    let got = values(&token_log_probs(&logits, &ids, 2.0));
    let log_softmax = |l: [f64; 3], i: usize| l[i] / 2.0 - l.iter().map(|x| (x / 2.0).exp()).sum::<f64>().ln();
    let want = [log_softmax([1.0, 2.0, 3.0], 0), log_softmax([0.0, 0.0, 4.0], 1)];
    assert!(close(got[0], want[0], 1e-6) && close(got[1], want[1], 1e-6), "{got:?} vs {want:?}");
}

#[test]
fn the_loss_averages_each_completion_over_its_own_tokens() {
    // Two completions, three positions: the first owns positions 1 and 2, the second 2.
    let mask = Tensor::from_slice(&[0.0f64, 1.0, 1.0, 0.0, 0.0, 1.0]).view([2, 3]);
    let log_probs = Tensor::from_slice(&[-1.0f64, -0.5, -2.0, -1.0, -1.0, -0.2]).view([2, 3]).set_requires_grad(true);
    let old = log_probs.detach();
    let reference = Tensor::from_slice(&[-1.0f64, -0.5, -1.0, -1.0, -1.0, -0.2]).view([2, 3]);
    let advantages = Tensor::from_slice(&[1.0f64, -1.0]);
    let inputs = LossInputs {
        log_probs: &log_probs,
        old_log_probs: &old,
        reference_log_probs: Some(&reference),
        advantages: &advantages,
        completion_mask: &mask,
    };
    let beta = 0.1;
    let parts = grpo_loss(&inputs, 0.2, beta);
    // At ratio 1 the surrogate is A per token; the only KL is at row 0, position 2:
    // k3 = e^(−1 + 2) − 1 − 1 = e − 2.
    let k3 = std::f64::consts::E - 2.0;
    let j = ((1.0 + 1.0 - beta * k3) / 2.0 + (-1.0)) / 2.0;
    assert!(close(parts.loss.double_value(&[]), -j, 1e-6), "{} vs {}", parts.loss.double_value(&[]), -j);
    assert!(close(parts.kl, k3 / 3.0, 1e-6), "{}", parts.kl);
    assert_eq!(parts.clipped_fraction, 0.0);
    // The policy gradient at ratio 1: −A / (|o_i| · B) on each completion token, nothing
    // elsewhere; the KL term adds β(1 − π_ref/π)/(|o_i| B) where the policies differ.
    // (k3's derivative in log π is 1 − π_ref/π.)
    parts.loss.backward();
    let grad = values(&log_probs.grad());
    let kl_grad = beta * (1.0 - 1f64.exp()) / 4.0;
    let want = [0.0, -1.0 / 4.0, -1.0 / 4.0 + kl_grad, 0.0, 0.0, 1.0 / 2.0];
    for (got, want) in grad.iter().zip(want) {
        assert!(close(*got, want, 1e-6), "{grad:?} vs {want}");
    }
}

/// "What is a plus b?" with one-digit sums, scored as a customer's arithmetic task would be:
/// writing only a number (format) and its closeness to the sum.
fn arithmetic_rows(count: usize, offset: usize) -> Vec<Row> {
    (offset..offset + count)
        .map(|i| {
            let (a, b) = ((i * 7) % 5, (i * 3 + 1) % 5);
            row(json!({"prompt": format!("What is {a} plus {b}?"), "answer": a + b}))
        })
        .collect()
}

fn row(value: serde_json::Value) -> Row {
    Row::from_map(value.as_object().expect("object").clone())
}

fn arithmetic_rewards() -> RewardSet {
    RewardSet::new(vec![
        RewardSpec::named("regex_format").with_param("pattern", "[0-9]+"),
        RewardSpec::named("numeric_closeness").with_param("column", "answer").with_param("scale", "9"),
    ])
    .expect("valid rewards")
}

fn tiny_config() -> gradients_model::ModelConfig {
    presets::byte_llama(64, 2, 4, 2, 128, 128, true)
}

/// Completions of the tests: short, so that a step takes a tenth of a second on a CPU core.
const MAX_NEW_TOKENS: usize = 8;

fn prompts_of(rows: &[Row], rewards: &RewardSet, tokenizer: &Tokenizer, seed: u64) -> GrpoData {
    grpo::prepare(rows, rewards, tokenizer, 128 - MAX_NEW_TOKENS, seed).expect("prompts")
}

/// Every prompt of `data`, training and validation.
fn all_prompts(data: &GrpoData) -> Vec<grpo::Prompt> {
    data.train.iter().chain(&data.validation).cloned().collect()
}

fn generator<'a>(tokenizer: &'a Tokenizer, rewards: &'a RewardSet) -> Generator<'a> {
    Generator { tokenizer, rewards, eos_ids: vec![tokenizer.eos_id()], pad_id: tokenizer.pad_id() }
}

/// The seeds to train with: 1, or the list in `GRPO_SEEDS` (to measure the spread).
fn seeds() -> Vec<u64> {
    std::env::var("GRPO_SEEDS")
        .map(|v| v.split(',').map(|s| s.trim().parse().expect("GRPO_SEEDS: comma-separated integers")).collect())
        .unwrap_or_else(|_| vec![1])
}

#[test]
fn grpo_raises_the_mean_greedy_reward_above_the_base_models() {
    // One libtorch thread: on a loaded 2-core machine its thread pool stalls a step tenfold.
    tch::set_num_threads(1);
    let tokenizer = Tokenizer::byte_level();
    let rewards = arithmetic_rewards();
    let held_out = all_prompts(&prompts_of(&arithmetic_rows(40, 1000), &rewards, &tokenizer, 0));
    let steps = 60;
    for seed in seeds() {
        let base = CausalLm::new(&tiny_config(), Device::Cpu, seed as i64);
        let data = prompts_of(&arithmetic_rows(200, 0), &rewards, &tokenizer, seed);
        let generator = generator(&tokenizer, &rewards);
        // The probe's middle candidate: lr 1e-3, β 0.04, G 8, 8 prompts a step, μ 2.
        let hyper = grpo::search::probe_candidates(seed, MAX_NEW_TOKENS)[1].clone();
        let started = std::time::Instant::now();
        let mut run = GrpoRun::new(&base, hyper, steps, tokenizer.pad_id()).expect("run");
        run.advance(&data, &generator, steps, None, &ProgressBar::hidden()).expect("advance");
        let (model, record) = run.finish(&data, &generator).expect("finish");
        let before = generator.greedy_reward(&base, &held_out, MAX_NEW_TOKENS).expect("base");
        let after = generator.greedy_reward(&model, &held_out, MAX_NEW_TOKENS).expect("trained");
        let sampled = |i: usize| record.reward_curve[i].value;
        eprintln!(
            "seed {seed}: held-out greedy reward {before:.3} -> {after:.3} in {} steps ({:.1}s); sampled {:.3} -> {:.3}",
            record.steps,
            started.elapsed().as_secs_f64(),
            sampled(0),
            sampled(record.reward_curve.len() - 1)
        );
        assert_eq!(record.steps, steps);
        // Measured over seeds 1-5: 0.000 -> 0.500 every time (greedy completions become
        // numbers). The stated margin is 0.3.
        assert!(after >= before + 0.3, "seed {seed}: held-out greedy reward {before:.3} -> {after:.3}");
    }
}

/// Trains `family`'s GRPO task with the probe strategy and returns the held-out greedy
/// reward of the base and trained models.
fn family_gain(family: &str, seed: u64, steps: u64) -> (f64, f64) {
    let family = gradients_taskgen::family(family).expect("family");
    let rewards = RewardSet::new(family.grpo_rewards()).expect("the family's rewards");
    let rows: Vec<Row> = gradients_taskgen::generate(family, gradients_taskgen::TaskKind::Grpo, 240, seed)
        .expect("rows")
        .into_iter()
        .map(Row::from_map)
        .collect();
    let (train, held_out) = rows.split_at(200);
    let tokenizer = Tokenizer::byte_level();
    let data = prompts_of(train, &rewards, &tokenizer, seed);
    let held_out = all_prompts(&prompts_of(held_out, &rewards, &tokenizer, seed));
    let base = CausalLm::new(&tiny_config(), Device::Cpu, seed as i64);
    let ctx = GrpoContext {
        base: &base,
        data: &data,
        generator: generator(&tokenizer, &rewards),
        pad_id: tokenizer.pad_id(),
        max_new_tokens: MAX_NEW_TOKENS,
        budget: Budget::steps(steps),
        seed,
        bar: ProgressBar::hidden(),
        cancel: Default::default(),
    };
    let outcome = grpo::run_strategy(GrpoStrategy::Probe, &ctx).expect("probe");
    let used: u64 = outcome.trials.iter().map(|t| t.steps).sum();
    assert!(used <= steps, "{family:?}: {used} steps on a budget of {steps}", family = family.name);
    let before = ctx.generator.greedy_reward(&base, &held_out, MAX_NEW_TOKENS).expect("base");
    let after = ctx.generator.greedy_reward(&outcome.model, &held_out, MAX_NEW_TOKENS).expect("trained");
    eprintln!("{}: held-out greedy reward {before:.3} -> {after:.3} ({used} steps)", family.name);
    (before, after)
}

/// taskgen's GRPO families a model that starts from random weights can learn: their
/// numeric closeness rewards any number, so some sampled completions of every group score
/// above others from the first step. (The families scored only by an exact word, a date
/// or JSON give such a model a reward of 0 on every completion, hence no advantage at all:
/// they need a pretrained base.)
/// (`compare-numbers` learns as these two do: measured in the README.)
const FAMILIES: [&str; 2] = ["arithmetic", "count-vowels"];

#[test]
fn the_probe_raises_the_reward_on_taskgen_families_within_its_budget() {
    tch::set_num_threads(1);
    for seed in seeds() {
        for family in FAMILIES {
            let (before, after) = family_gain(family, seed, 60);
            // Measured over seeds 1-3: 0.000 -> 0.333 to 0.350 on each family (greedy
            // completions become numbers: the format reward, a third of the weight). On 40
            // steps seed 3 stayed at 0 on arithmetic: 60 is the budget that held.
            assert!(after >= before + 0.2, "{family}, seed {seed}: held-out greedy reward {before:.3} -> {after:.3}");
        }
    }
}

#[test]
fn a_grpo_job_is_delivered_like_any_other_within_its_budget() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&tiny_config(), Device::Cpu, 3);
    let base_dir = dir.path().join("base");
    gradients_trainer::checkpoint::save(&base, &tokenizer, &base_dir).expect("base folder");
    let rewards = arithmetic_rewards();
    let rows = arithmetic_rows(40, 0);
    for (strategy, budget) in [(StrategyKind::Fixed, 6), (StrategyKind::LrRangeTest, 9)] {
        let out = dir.path().join(strategy.as_str());
        let output = job::run(Job {
            base_dir: &base_dir,
            base_name: "tiny-test",
            task_type: gradients_data::TaskType::Grpo,
            rows: &rows,
            rewards: Some(&rewards),
            strategy,
            budget: Budget::steps(budget),
            seed: 5,
            device: Device::Cpu,
            out_dir: &out,
            bar: ProgressBar::hidden(),
            cancel: Default::default(),
        })
        .expect("GRPO job");
        let JobReport::Grpo(report) = &output.report else { panic!("a GRPO job reports GRPO") };
        let used: u64 = report.trials.iter().map(|t| t.steps).sum();
        assert!(used <= budget && report.run.steps >= 1, "{strategy:?}: {used} steps on a budget of {budget}");
        assert_eq!(report.strategy, GrpoStrategy::for_kind(strategy));
        assert!(report.start_reward.is_finite() && report.final_reward.is_finite(), "{}", report.summary());
        for file in ["model.onnx", "manifest.json", "report.json", "reward.svg", "model/model.safetensors"] {
            assert!(out.join(file).is_file(), "{strategy:?}: {file} is missing");
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).expect("manifest")).expect("JSON");
        assert_eq!(manifest["training"]["strategy"], GrpoStrategy::for_kind(strategy).as_str(), "{manifest}");
    }
    // A GRPO job without reward functions is refused before training.
    let refused = job::run(Job {
        base_dir: &base_dir,
        base_name: "tiny-test",
        task_type: gradients_data::TaskType::Grpo,
        rows: &rows,
        rewards: None,
        strategy: StrategyKind::Fixed,
        budget: Budget::steps(2),
        seed: 5,
        device: Device::Cpu,
        out_dir: &dir.path().join("refused"),
        bar: ProgressBar::hidden(),
        cancel: Default::default(),
    });
    assert!(matches!(refused, Err(job::JobError::NoRewards)), "{:?}", refused.err());
}

#[test]
fn a_cancelled_grpo_job_stops_before_its_next_step_and_exports_nothing() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = Tokenizer::byte_level();
    let base_dir = dir.path().join("base");
    let base = CausalLm::new(&tiny_config(), Device::Cpu, 3);
    gradients_trainer::checkpoint::save(&base, &tokenizer, &base_dir).expect("base folder");
    let rewards = arithmetic_rewards();
    let rows = arithmetic_rows(40, 0);
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let out = dir.path().join("out");
    let outcome = job::run(Job {
        base_dir: &base_dir,
        base_name: "tiny-test",
        task_type: gradients_data::TaskType::Grpo,
        rows: &rows,
        rewards: Some(&rewards),
        strategy: StrategyKind::LrRangeTest,
        budget: Budget::steps(50),
        seed: 5,
        device: Device::Cpu,
        out_dir: &out,
        bar: ProgressBar::hidden(),
        cancel,
    });
    let cancelled = matches!(
        outcome,
        Err(job::JobError::Grpo(grpo::GrpoError::Train(gradients_trainer::train::TrainError::Cancelled)))
    );
    assert!(cancelled, "{:?}", outcome.err());
    assert!(!out.join("model.onnx").exists(), "a cancelled job exports nothing");
}
