//! `random` and `successive-halving`: searches over sampled configurations.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{trial_of, Context, Trial};
use crate::model::{CausalLm, LoraConfig};
use crate::train::{Hyperparameters, Progress, Run, RunRecord, Schedule, StopReason, TrainError};

/// Configurations tried by `random`.
const RANDOM_TRIALS: usize = 4;
/// The share of `random`'s budget its trials spend, all together.
const TRIAL_SHARE: f64 = 0.4;
/// Configurations started by `successive-halving` (a power of two).
const HALVING_CONFIGS: usize = 8;

/// A configuration from the search space: learning rate (log-uniform, higher for LoRA),
/// batch size, schedule, warm-up, weight decay, and LoRA versus full fine-tuning.
fn sample(rng: &mut ChaCha8Rng, ctx: &Context<'_>) -> Hyperparameters {
    let lora = rng.random_bool(1.0 / 3.0).then(|| {
        let rank = [8, 16, 32][rng.random_range(0..3)];
        LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.05, targets: vec!["all-linear".into()] }
    });
    let (low, high): (f64, f64) = if lora.is_some() { (1e-3, 1e-2) } else { (3e-4, 3e-3) };
    Hyperparameters {
        learning_rate: (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp(),
        epochs: f64::INFINITY, // budgets, not epochs, end search runs
        batch_size: [4, 8, 16][rng.random_range(0..3)],
        gradient_accumulation: 1,
        warmup_ratio: [0.0, 0.05, 0.1][rng.random_range(0..3)],
        schedule: if rng.random_bool(0.5) { Schedule::Cosine } else { Schedule::Linear },
        weight_decay: [0.0, 0.01, 0.1][rng.random_range(0..3)],
        max_grad_norm: 1.0,
        seed: ctx.seed,
        lora,
        dpo_beta: 0.1,
        max_len: ctx.max_len,
        eval_every: u64::MAX,
        patience: Some(3),
    }
}

/// `random`: [`RANDOM_TRIALS`] configurations, each a short trial of [`TRIAL_SHARE`] of
/// the budget split among them; the trial with the lowest validation loss keeps its
/// weights and optimizer state and goes on for the rest of the budget (each trial's
/// schedule is planned for that full length, so the winner's schedule runs on unchanged).
pub fn random(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
    let configs: Vec<Hyperparameters> = (0..RANDOM_TRIALS).map(|_| sample(&mut rng, ctx)).collect();
    let total = ctx.total_steps(&configs[0])?;
    ctx.bar.set_length(total);
    // Too small a budget to split: the first configuration gets all of it.
    let count = if total >= 2 * RANDOM_TRIALS as u64 { RANDOM_TRIALS } else { 1 };
    let trial_steps = if count > 1 { ((total as f64 * TRIAL_SHARE) as u64 / count as u64).max(1) } else { 0 };
    let rest = total - trial_steps * count as u64;
    let mut runs = Vec::with_capacity(count);
    for (i, mut hyper) in configs.into_iter().take(count).enumerate() {
        if i > 0 && ctx.budget.expired() {
            break;
        }
        // The winner's plan: its trial, then the rest.
        let planned = trial_steps + rest;
        hyper.eval_every = (planned / 6).max(1);
        let mut run = ctx.start(hyper, planned)?;
        if trial_steps > 0 {
            let share = TRIAL_SHARE / (1.0 - TRIAL_SHARE * i as f64 / count as f64) / count as f64;
            run.advance(ctx.data, trial_steps, ctx.budget.partial_deadline(share), &ctx.bar)?;
            run.validate(ctx.data);
        }
        runs.push(run);
    }
    let winner = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.record.stop != Some(StopReason::Diverged))
        .min_by(|a, b| a.1.best_loss().total_cmp(&b.1.best_loss()))
        .map_or(0, |(i, _)| i);
    let mut chosen = runs.swap_remove(winner);
    let mut trials: Vec<Trial> = runs.iter().map(|r| trial_of(&r.record)).collect();
    drop(runs);
    if chosen.record.stop != Some(StopReason::Diverged) {
        chosen.extend_plan(rest);
    }
    let (model, record) = super::run_to_end(ctx, chosen, ctx.budget.deadline)?;
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}

/// How `successive-halving` spends `total` steps: the configurations it starts (a power of
/// two, at most [`HALVING_CONFIGS`], fewer when the budget cannot give each a step per
/// rung) and each survivor's steps in each rung. The last rung (one survivor) takes
/// what the earlier rungs left, so the plan sums to `total` exactly.
pub fn halving_plan(total: u64) -> (usize, Vec<u64>) {
    let mut configs = HALVING_CONFIGS;
    while configs > 1 && total < (configs * (configs.ilog2() as usize + 1)) as u64 {
        configs /= 2;
    }
    let rungs = configs.ilog2() as u64 + 1;
    let rung_steps = total / rungs;
    let mut shares: Vec<u64> = (0..rungs - 1).map(|k| rung_steps / (configs as u64 >> k)).collect();
    let used: u64 = shares.iter().enumerate().map(|(k, s)| s * (configs as u64 >> k)).sum();
    shares.push(total - used);
    (configs, shares)
}

/// `successive-halving`: start up to [`HALVING_CONFIGS`] runs; in each rung every
/// survivor gets the same share of the rung's budget, then the worse half (by validation
/// loss) is dropped; survivors keep their weights and optimizer state. Each of the
/// log2(n)+1 rungs gets an equal part of the budget (see [`halving_plan`]).
pub fn successive_halving(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
    let configs: Vec<Hyperparameters> = (0..HALVING_CONFIGS).map(|_| sample(&mut rng, ctx)).collect();
    let total = ctx.total_steps(&configs[0])?;
    let (count, shares) = halving_plan(total);
    let rungs = shares.len() as u64;
    // A survivor of every rung takes every share.
    let planned: u64 = shares.iter().sum();
    let mut runs = configs
        .into_iter()
        .take(count)
        .map(|mut hyper| {
            hyper.patience = None; // the rungs do the stopping
            ctx.start(hyper, planned)
        })
        .collect::<Result<Vec<Run>, _>>()?;
    ctx.bar.set_length(total);
    let mut trials = Vec::new();
    for (rung, &share) in shares.iter().enumerate() {
        if rung > 0 && ctx.budget.expired() {
            break;
        }
        let deadline = ctx.budget.partial_deadline(1.0 / (rungs - rung as u64) as f64);
        for run in &mut runs {
            if !matches!(run.record.stop, Some(StopReason::Diverged)) {
                let _: Progress = run.advance(ctx.data, share, deadline, &ctx.bar)?;
            }
            run.validate(ctx.data);
        }
        runs.sort_by(|a, b| a.best_loss().total_cmp(&b.best_loss()));
        if runs.len() > 1 {
            for dropped in runs.split_off(runs.len() / 2) {
                trials.push(trial_of(&dropped.record));
            }
        }
    }
    // One survivor, or more when the deadline ended the rungs early: the best wins.
    runs.sort_by(|a, b| a.best_loss().total_cmp(&b.best_loss()));
    let winner = runs.remove(0);
    trials.extend(runs.iter().map(|r| trial_of(&r.record)));
    let (model, record) = winner.finish(ctx.data);
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halving_plan_spends_exactly_the_budget() {
        assert_eq!(halving_plan(10), (2, vec![2, 6]));
        assert_eq!(halving_plan(40), (8, vec![1, 2, 5, 14]));
        for total in 1..500 {
            let (configs, shares) = halving_plan(total);
            let used: u64 = shares.iter().enumerate().map(|(k, s)| s * (configs as u64 >> k).max(1)).sum();
            assert_eq!(used, total, "{total}: {configs} configs, {shares:?}");
            assert!(shares.iter().all(|&s| s > 0), "{total}: {shares:?}");
        }
    }
}
