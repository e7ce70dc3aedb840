//! `random` and `successive-halving`: searches over sampled configurations.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{trial_of, Context, Trial};
use crate::model::{CausalLm, LoraConfig};
use crate::train::{Hyperparameters, Progress, Run, RunRecord, Schedule, TrainError};

/// Configurations tried by `random`.
const RANDOM_TRIALS: u64 = 4;
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

/// `random`: a few configurations one after another, each with an equal share of what is
/// left; the lowest validation loss wins.
pub fn random(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
    let mut best: Option<(CausalLm, RunRecord)> = None;
    let mut trials = Vec::new();
    let total_steps = ctx.budget.steps;
    let mut steps_used = 0;
    for trial in 0..RANDOM_TRIALS {
        let mut hyper = sample(&mut rng, ctx);
        let left = RANDOM_TRIALS - trial;
        let seconds_per_step = ctx.seconds_per_step(&hyper)?;
        let budget = super::Budget { steps: total_steps.map(|t| t.saturating_sub(steps_used)), ..ctx.budget };
        let steps = (budget.affordable_steps(seconds_per_step) / left).max(1);
        hyper.eval_every = (steps / 6).max(1);
        ctx.bar.inc_length(steps);
        let run = ctx.start(hyper, steps)?;
        let (model, record) = super::run_to_end(ctx, run, ctx.budget.partial_deadline(1.0 / left as f64))?;
        steps_used += record.steps;
        trials.push(trial_of(&record));
        if best.as_ref().is_none_or(|(_, b)| record.best_validation_loss < b.best_validation_loss) {
            best = Some((model, record));
        }
    }
    let (model, record) = best.expect("at least one trial ran");
    Ok((model, record, trials))
}

/// `successive-halving`: start [`HALVING_CONFIGS`] runs; in each rung every survivor gets
/// the same share of the rung's budget, then the worse half (by validation loss) is
/// dropped; survivors keep their weights and optimizer state. Each of the log2(n)+1 rungs
/// gets an equal part of the budget.
pub fn successive_halving(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
    let rungs = HALVING_CONFIGS.ilog2() as u64 + 1;
    let configs: Vec<Hyperparameters> = (0..HALVING_CONFIGS).map(|_| sample(&mut rng, ctx)).collect();
    let seconds_per_step = ctx.seconds_per_step(&configs[0])?;
    // At least a step per configuration in the first rung: a step budget under
    // rungs × configurations (32) is exceeded by that much; a deadline still holds.
    let rung_steps = (ctx.budget.affordable_steps(seconds_per_step) / rungs).max(HALVING_CONFIGS as u64);
    // A survivor of every rung gets rung_steps / n + rung_steps / (n/2) + ... steps.
    let planned: u64 = (0..rungs).map(|k| rung_steps / (HALVING_CONFIGS as u64 >> k)).sum();
    let mut runs = configs
        .into_iter()
        .map(|mut hyper| {
            hyper.patience = None; // the rungs do the stopping
            ctx.start(hyper, planned)
        })
        .collect::<Result<Vec<Run>, _>>()?;
    ctx.bar.set_length(rung_steps * rungs);
    let mut trials = Vec::new();
    for rung in 0..rungs {
        let share = rung_steps / runs.len() as u64;
        let deadline = ctx.budget.partial_deadline(1.0 / (rungs - rung) as f64);
        for run in &mut runs {
            if !matches!(run.record.stop, Some(crate::train::StopReason::Diverged)) {
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
    let winner = runs.pop().expect("one run survives");
    let (model, record) = winner.finish(ctx.data);
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}
