//! Hyperparameter strategies: how a miner spends its budget. The strategy is its edge.
//!
//! - `fixed`: the baseline — AutoTrain's default recipe, once, one epoch;
//! - `random`: a few random configurations, each a short trial; the best goes on, with
//!   its weights, for the rest of the budget;
//! - `lr-range-test`: sweep the learning rate, then one long cosine run at the best;
//! - `successive-halving`: many configurations, short runs, keep the better half and
//!   give it more steps, until one is left;
//! - `sweep-decay`: a few rates for a few steps each; the best run goes on, decaying;
//! - `pbt`: population-based training: exploit the better half's weights, explore rates.
//!
//! A budget is a step count (tests, reproducible benchmarks) and/or a wall-clock deadline
//! (the market: the task's deadline less a margin for export and upload). Every strategy
//! plans its steps once from the budget and the measured seconds per step
//! ([`Context::total_steps`]) and never takes more optimizer steps than that in all its
//! runs together (the measuring probe's three steps, on a throwaway copy, excepted); the
//! deadline also stops every run. Every strategy returns its chosen run's best state by
//! validation loss.
//!
//! **Determinism.** The seed decides the data order (a ChaCha8 generator per run), the
//! searches' samples and PBT's explore steps (one per strategy), none of which another
//! thread touches. Full fine-tuning draws nothing from libtorch's generator while it
//! trains, so a seeded strategy whose runs are all full fine-tuning (`fixed`,
//! `lr-range-test`, `sweep-decay`, `pbt`) gives the same weights alone or while other
//! trainings run in the same process (tested in `tests/strategies.rs`). LoRA is the
//! limit: its adapters' initial values and its dropout masks come from libtorch's
//! process-global generator (`tch::manual_seed`), which every other training and model
//! copy in the process also draws from; so a LoRA run (a third of `random`'s and
//! `successive-halving`'s configurations) is the same for the same seed only when
//! nothing else trains in its process at the time (tested in a child process), not when
//! a trainer runs two tasks at once. The same holds only on the same libtorch build and
//! intra-op thread count.

mod fixed;
mod lr_range;
mod pbt;
mod search;
mod sweep_decay;

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
    SweepDecay,
    Pbt,
}

impl StrategyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Fixed => "fixed",
            StrategyKind::Random => "random",
            StrategyKind::LrRangeTest => "lr-range-test",
            StrategyKind::SuccessiveHalving => "successive-halving",
            StrategyKind::SweepDecay => "sweep-decay",
            StrategyKind::Pbt => "pbt",
        }
    }

    /// Every strategy, in a fixed order.
    pub fn all() -> [StrategyKind; 6] {
        [
            StrategyKind::Fixed,
            StrategyKind::Random,
            StrategyKind::LrRangeTest,
            StrategyKind::SuccessiveHalving,
            StrategyKind::SweepDecay,
            StrategyKind::Pbt,
        ]
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
        // A tenth of the time is left for validations and choosing between runs.
        let by_time = self.seconds_left().map(|s| (0.9 * s / seconds_per_step.max(1e-6)) as u64);
        match (self.steps, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => u64::MAX,
        }
        .max(1)
    }

    /// Whether the deadline has passed: no further run or trial is started.
    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
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
        StrategyKind::SweepDecay => sweep_decay::run(ctx)?,
        StrategyKind::Pbt => pbt::run(ctx)?,
    };
    Ok(Outcome { strategy: kind, model, record, trials })
}

impl Context<'_> {
    /// Full fine-tuning at `learning_rate` with a constant schedule and no warm-up, no
    /// early stopping and no validation of its own: the plain run the searching strategies
    /// start from, changing what they search.
    fn full_fine_tuning(&self, learning_rate: f64) -> Hyperparameters {
        Hyperparameters {
            learning_rate,
            epochs: f64::INFINITY,
            batch_size: 8,
            gradient_accumulation: 1,
            warmup_ratio: 0.0,
            schedule: crate::train::Schedule::Constant,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            seed: self.seed,
            lora: None,
            dpo_beta: 0.1,
            max_len: self.max_len,
            eval_every: u64::MAX,
            patience: None,
        }
    }

    /// A run of `hyper` from a fresh copy of the base model.
    fn start(&self, hyper: Hyperparameters, planned_steps: u64) -> Result<Run, TrainError> {
        let needs_reference = self.data.task_type == gradients_data::TaskType::Dpo;
        let reference = needs_reference.then(|| self.base.duplicate());
        Run::new(self.base.duplicate(), reference, hyper, planned_steps, self.pad_id, self.data)
            .map(|run| run.cancelled_by(self.cancel.clone()))
    }

    /// The optimizer steps the budget affords runs like `hyper`, all runs together.
    fn total_steps(&self, hyper: &Hyperparameters) -> Result<u64, TrainError> {
        Ok(self.budget.affordable_steps(self.seconds_per_step(hyper)?))
    }

    /// Seconds per optimizer step of `hyper`, measured on two steps of a throwaway run
    /// after one untimed step (the first pays for allocations and would halve the plan),
    /// only when a deadline makes it matter.
    fn seconds_per_step(&self, hyper: &Hyperparameters) -> Result<f64, TrainError> {
        if self.budget.deadline.is_none() {
            return Ok(1.0);
        }
        let mut probe = self.start(hyper.clone(), 3)?;
        let first = Instant::now();
        probe.advance(self.data, 1, self.budget.deadline, &ProgressBar::hidden())?;
        let started = Instant::now();
        probe.advance(self.data, 2, self.budget.deadline, &ProgressBar::hidden())?;
        // Out of time while measuring (a deadline of a step or two): the untimed step.
        Ok(match probe.steps() {
            3 => started.elapsed().as_secs_f64() / 2.0,
            _ => first.elapsed().as_secs_f64().max(1e-3),
        })
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
