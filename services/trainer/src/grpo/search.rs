//! GRPO's strategies: how a miner spends its budget on a GRPO task.
//!
//! - `baseline`: G.O.D.'s recipe ([`GrpoHyperparameters::baseline`]) for the whole budget;
//! - `probe`: a few candidates of learning rate and β, each trained for a short probe
//!   from the same start; the one with the best greedy validation reward (ties: the best
//!   sampled reward of its last rollouts) continues, weights and optimizer state kept,
//!   for the rest of the budget. The probes' steps count against the budget, and each
//!   candidate's schedule is planned as if it won, so the winner continues seamlessly.
//!
//! Whatever wins, the model returned is its best validated trained state, never the start
//! model itself: the evaluator refuses an unchanged model as NOT_A_FINE_TUNE, which costs
//! a miner more than a model that validates a little worse.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::data::GrpoData;
use super::hyper::GrpoHyperparameters;
use super::rollout::Generator;
use super::run::{GrpoRecord, GrpoRun};
use super::GrpoError;
use crate::model::CausalLm;
use crate::strategy::{Budget, StrategyKind};
use crate::train::Progress;

/// The GRPO strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GrpoStrategy {
    Baseline,
    Probe,
}

impl GrpoStrategy {
    /// The GRPO strategy a miner configured with a supervised strategy uses: `fixed` is
    /// the baseline recipe, every searching strategy searches.
    pub fn for_kind(kind: StrategyKind) -> Self {
        if kind == StrategyKind::Fixed {
            GrpoStrategy::Baseline
        } else {
            GrpoStrategy::Probe
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrpoStrategy::Baseline => "grpo-baseline",
            GrpoStrategy::Probe => "grpo-probe",
        }
    }
}

/// Share of the budget the probes of `probe` take together.
const PROBE_SHARE: f64 = 0.3;
/// The plan of a deadline budget's first steps, before their time is measured.
const GUESSED_STEPS: u64 = 100;
/// Steps the budget is measured with when it is a deadline (they count as the first
/// candidate's probe).
const TIMING_STEPS: u64 = 2;

/// What a strategy starts from.
pub struct GrpoContext<'a> {
    pub base: &'a CausalLm,
    pub data: &'a GrpoData,
    pub generator: Generator<'a>,
    pub pad_id: u32,
    /// New tokens per completion (what the evaluator allows).
    pub max_new_tokens: usize,
    pub budget: Budget,
    pub seed: u64,
    pub bar: ProgressBar,
    pub cancel: CancellationToken,
}

/// One candidate a strategy tried.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoTrial {
    pub hyperparameters: GrpoHyperparameters,
    pub steps: u64,
    pub best_validation_reward: f64,
}

/// A strategy's result.
pub struct GrpoOutcome {
    pub strategy: GrpoStrategy,
    pub model: CausalLm,
    pub record: GrpoRecord,
    pub trials: Vec<GrpoTrial>,
    /// The start model's mean greedy validation reward.
    pub start_reward: f64,
}

impl GrpoContext<'_> {
    fn start(&self, hyper: GrpoHyperparameters, planned_steps: u64) -> Result<GrpoRun, GrpoError> {
        Ok(GrpoRun::new(self.base, hyper, planned_steps, self.pad_id)?.cancelled_by(self.cancel.clone()))
    }

    /// The steps the budget affords at `seconds_per_step` (all of a step budget when there
    /// is no deadline).
    fn affordable_steps(&self, seconds_per_step: Option<f64>) -> u64 {
        let by_time = self.budget.deadline.zip(seconds_per_step).map(|(deadline, per_step)| {
            (deadline.saturating_duration_since(Instant::now()).as_secs_f64() / per_step.max(1e-6)) as u64
        });
        match (self.budget.steps, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 200,
        }
    }

    /// `hyper` with the context's completion length and seed.
    fn fitted(&self, hyper: GrpoHyperparameters) -> GrpoHyperparameters {
        GrpoHyperparameters { max_new_tokens: self.max_new_tokens, seed: self.seed, ..hyper }
    }
}

/// The candidates `probe` tries: full fine-tuning (our models are small enough) with groups
/// of 8, at three learning rates with β = 0.04 (TRL's former default) and the middle
/// rate without the KL penalty.
pub fn probe_candidates(seed: u64, max_new_tokens: usize) -> Vec<GrpoHyperparameters> {
    let tuned = GrpoHyperparameters {
        group_size: 8,
        prompts_per_step: 8,
        updates_per_rollout: 2,
        lora: None,
        beta: 0.04,
        max_new_tokens,
        seed,
        ..GrpoHyperparameters::baseline(seed)
    };
    [(3e-4, 0.04), (1e-3, 0.04), (3e-3, 0.04), (1e-3, 0.0)]
        .into_iter()
        .map(|(learning_rate, beta)| GrpoHyperparameters { learning_rate, beta, ..tuned.clone() })
        .collect()
}

/// Runs `strategy` within `ctx.budget`.
pub fn run(strategy: GrpoStrategy, ctx: &GrpoContext<'_>) -> Result<GrpoOutcome, GrpoError> {
    let start_reward = ctx.generator.greedy_reward(ctx.base, &ctx.data.validation, ctx.max_new_tokens)?;
    let (model, record, trials) = match strategy {
        GrpoStrategy::Baseline => baseline(ctx, start_reward)?,
        GrpoStrategy::Probe => probe(ctx, start_reward)?,
    };
    Ok(GrpoOutcome { strategy, model, record, trials, start_reward })
}

fn trial_of(record: &GrpoRecord) -> GrpoTrial {
    GrpoTrial {
        hyperparameters: record.hyperparameters.clone(),
        steps: record.steps,
        best_validation_reward: record.best_validation_reward,
    }
}

/// Measures seconds per step on `run`'s first steps when the budget has a deadline.
fn timed_steps(ctx: &GrpoContext<'_>, run: &mut GrpoRun) -> Result<Option<f64>, GrpoError> {
    if ctx.budget.deadline.is_none() {
        return Ok(None);
    }
    let started = Instant::now();
    run.advance(ctx.data, &ctx.generator, TIMING_STEPS, ctx.budget.deadline, &ctx.bar)?;
    Ok(Some(started.elapsed().as_secs_f64() / TIMING_STEPS as f64))
}

/// Advances `run` to the end of its plan or the budget's deadline.
fn run_to_end(ctx: &GrpoContext<'_>, run: &mut GrpoRun) -> Result<(), GrpoError> {
    let steps = run.record.planned_steps;
    while let Progress::Running = run.advance(ctx.data, &ctx.generator, steps, ctx.budget.deadline, &ctx.bar)? {}
    Ok(())
}

fn baseline(ctx: &GrpoContext<'_>, _start_reward: f64) -> Result<(CausalLm, GrpoRecord, Vec<GrpoTrial>), GrpoError> {
    let hyper = ctx.fitted(GrpoHyperparameters::baseline(ctx.seed));
    // The recipe as G.O.D. runs it: its final model, validated once at the end.
    let mut run = ctx.start(hyper, ctx.budget.steps.unwrap_or(GUESSED_STEPS))?;
    let per_step = timed_steps(ctx, &mut run)?;
    let total = (ctx.affordable_steps(per_step) + run.record.steps).min(ctx.budget.steps.unwrap_or(u64::MAX));
    run.record.planned_steps = total.max(run.record.steps);
    ctx.bar.set_length(run.record.planned_steps);
    run_to_end(ctx, &mut run)?;
    let (model, record) = run.finish(ctx.data, &ctx.generator)?;
    let trials = vec![trial_of(&record)];
    Ok((model, record, trials))
}

fn probe(ctx: &GrpoContext<'_>, start_reward: f64) -> Result<(CausalLm, GrpoRecord, Vec<GrpoTrial>), GrpoError> {
    let candidates = probe_candidates(ctx.seed, ctx.max_new_tokens);
    let count = candidates.len() as u64;
    let mut runs = Vec::with_capacity(candidates.len());
    let mut per_step = None;
    for hyper in candidates {
        let mut run = ctx.start(hyper, ctx.budget.steps.unwrap_or(GUESSED_STEPS))?.with_start_reward(start_reward);
        if per_step.is_none() {
            per_step = timed_steps(ctx, &mut run)?;
        }
        runs.push(run);
    }
    let used: u64 = runs.iter().map(|r| r.record.steps).sum();
    let total = (ctx.affordable_steps(per_step) + used).min(ctx.budget.steps.unwrap_or(u64::MAX));
    let probe_steps = ((total as f64 * PROBE_SHARE) / count as f64).floor().max(1.0) as u64;
    // Planned as the winner: its probe, then everything the others' probes leave.
    let planned = total.saturating_sub(probe_steps * (count - 1)).max(probe_steps);
    ctx.bar.set_length(planned + probe_steps * (count - 1));
    let probe_deadline = ctx.budget.deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
        Instant::now() + Duration::from_secs_f64(left * PROBE_SHARE)
    });
    for run in &mut runs {
        run.record.planned_steps = planned;
        // Warm up within the probe, so that candidates are compared at their own rates.
        run.record.hyperparameters.warmup_ratio = (probe_steps as f64 / 3.0) / planned as f64;
        run.record.hyperparameters.eval_every = u64::MAX;
        let left = probe_steps.saturating_sub(run.record.steps);
        run.advance(ctx.data, &ctx.generator, left, probe_deadline, &ctx.bar)?;
        run.validate(ctx.data, &ctx.generator)?;
    }
    // The best validation reward after the probe; ties (common while greedy completions
    // still score 0) go to the higher sampled reward of the probe's last half.
    let key =
        |run: &GrpoRun| (run.record.validation_curve.last().map_or(f64::NEG_INFINITY, |p| p.value), late_reward(run));
    runs.sort_by(|a, b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal));
    let mut winner = runs.remove(0);
    let mut trials: Vec<GrpoTrial> = runs.iter().map(|r| trial_of(&r.record)).collect();
    drop(runs);
    let remaining = planned.saturating_sub(winner.record.steps);
    winner.record.hyperparameters.eval_every = (remaining / 5).max(1);
    run_to_end(ctx, &mut winner)?;
    let (model, record) = winner.finish(ctx.data, &ctx.generator)?;
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}

/// Mean sampled reward over the last half of a run's rollouts.
fn late_reward(run: &GrpoRun) -> f64 {
    let curve = &run.record.reward_curve;
    let late = &curve[curve.len() / 2..];
    late.iter().map(|p| p.value).sum::<f64>() / late.len().max(1) as f64
}
