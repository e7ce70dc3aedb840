//! Hyperparameter strategies: how a miner spends its budget. The strategy is its edge.
//!
//! - `fixed`: the baseline — AutoTrain's default recipe, once, one epoch;
//! - `random`: a few random configurations, each a share of the budget; the best wins;
//! - `lr-range-test`: sweep the learning rate, then one long cosine run at the best;
//! - `successive-halving`: many configurations, short runs, keep the better half and
//!   give it more steps, until one is left.
//!
//! A budget is a step count (tests, reproducible benchmarks) and/or a wall-clock deadline
//! (the market: the task's deadline less a margin for export and upload).

mod fixed;
mod lr_range;
mod search;

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::model::CausalLm;
use crate::train::{Hyperparameters, Progress, Run, RunRecord, TrainData, TrainError};

/// The strategies this trainer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    Fixed,
    Random,
    LrRangeTest,
    SuccessiveHalving,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Fixed => "fixed",
            StrategyKind::Random => "random",
            StrategyKind::LrRangeTest => "lr-range-test",
            StrategyKind::SuccessiveHalving => "successive-halving",
        }
    }
}

/// How much training a strategy may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Optimizer steps, summed over every run the strategy starts.
    pub steps: Option<u64>,
    pub deadline: Option<Instant>,
}

impl Budget {
    pub fn steps(steps: u64) -> Self {
        Self { steps: Some(steps), deadline: None }
    }

    pub fn until(deadline: Instant) -> Self {
        Self { steps: None, deadline: Some(deadline) }
    }

    /// Seconds left before the deadline, if there is one.
    fn seconds_left(&self) -> Option<f64> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64())
    }

    /// The steps this budget affords at `seconds_per_step`.
    fn affordable_steps(&self, seconds_per_step: f64) -> u64 {
        let by_time = self.seconds_left().map(|s| (s / seconds_per_step.max(1e-6)) as u64);
        match (self.steps, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => u64::MAX,
        }
        .max(1)
    }

    /// A deadline `fraction` of the remaining time from now.
    fn partial_deadline(&self, fraction: f64) -> Option<Instant> {
        self.seconds_left().map(|s| Instant::now() + Duration::from_secs_f64(s * fraction))
    }
}

/// What a strategy starts from.
pub struct Context<'a> {
    pub base: &'a CausalLm,
    pub data: &'a TrainData,
    pub pad_id: u32,
    pub max_len: usize,
    pub budget: Budget,
    pub seed: u64,
    pub bar: ProgressBar,
    /// Stops every run of the strategy between two optimizer steps (see
    /// [`Run::cancelled_by`]).
    pub cancel: CancellationToken,
}

/// One configuration a strategy tried.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub hyperparameters: Hyperparameters,
    pub steps: u64,
    pub best_validation_loss: f64,
}

/// A strategy's result: the chosen model and how it got there.
pub struct Outcome {
    pub strategy: StrategyKind,
    pub model: CausalLm,
    pub record: RunRecord,
    pub trials: Vec<Trial>,
}

/// Runs `kind` within `ctx.budget`.
pub fn run(kind: StrategyKind, ctx: &Context<'_>) -> Result<Outcome, TrainError> {
    let (model, record, trials) = match kind {
        StrategyKind::Fixed => fixed::run(ctx)?,
        StrategyKind::Random => search::random(ctx)?,
        StrategyKind::LrRangeTest => lr_range::run(ctx)?,
        StrategyKind::SuccessiveHalving => search::successive_halving(ctx)?,
    };
    Ok(Outcome { strategy: kind, model, record, trials })
}

impl Context<'_> {
    /// A run of `hyper` from a fresh copy of the base model.
    fn start(&self, hyper: Hyperparameters, planned_steps: u64) -> Result<Run, TrainError> {
        let needs_reference = self.data.task_type == gradients_data::TaskType::Dpo;
        let reference = needs_reference.then(|| self.base.duplicate());
        Run::new(self.base.duplicate(), reference, hyper, planned_steps, self.pad_id, self.data)
            .map(|run| run.cancelled_by(self.cancel.clone()))
    }

    /// Seconds per optimizer step of `hyper`, measured on two steps of a throwaway run
    /// (only when a deadline makes it matter).
    fn seconds_per_step(&self, hyper: &Hyperparameters) -> Result<f64, TrainError> {
        if self.budget.deadline.is_none() {
            return Ok(1.0);
        }
        let mut probe = self.start(hyper.clone(), 2)?;
        let started = Instant::now();
        probe.advance(self.data, 2, None, &ProgressBar::hidden())?;
        Ok(started.elapsed().as_secs_f64() / 2.0)
    }
}

/// Advances `run` to the end of its plan or `deadline`, then finishes it.
fn run_to_end(ctx: &Context<'_>, mut run: Run, deadline: Option<Instant>) -> Result<(CausalLm, RunRecord), TrainError> {
    let steps = run.record.planned_steps;
    while let Progress::Running = run.advance(ctx.data, steps, deadline, &ctx.bar)? {}
    Ok(run.finish(ctx.data))
}

fn trial_of(record: &RunRecord) -> Trial {
    Trial {
        hyperparameters: record.hyperparameters.clone(),
        steps: record.steps,
        best_validation_loss: record.best_validation_loss,
    }
}
