//! One training run that can be advanced in slices: what every strategy is built from.
//!
//! A run owns its model and optimizer, so a strategy can start several, advance each by
//! some steps, compare their validation losses and continue only the best (successive
//! halving), or advance one run to the end of its budget (fixed, lr-range-then-cosine).

use std::time::Instant;

use gradients_text::{Example, LossSum};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::Tensor;
use tokio_util::sync::CancellationToken;

use super::data::{Item, TrainData};
use super::hyper::{Hyperparameters, Schedule};
use super::objective::{answer_log_prob, answer_nll, dpo_loss, evaluate_nll, DeviceBatch};
use super::TrainError;
use crate::model::CausalLm;

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// All planned steps done.
    Completed,
    /// Validation stopped improving.
    EarlyStopped,
    /// The wall-clock deadline or step budget ran out.
    Budget,
    /// The loss became NaN or infinite (a learning rate too high): the best state is kept.
    Diverged,
}

/// Where a run is after [`Run::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// It can go on.
    Running,
    Stopped(StopReason),
}

/// A point of a loss curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub step: u64,
    pub loss: f64,
}

/// What a run did: written to the training report and the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub hyperparameters: Hyperparameters,
    pub planned_steps: u64,
    pub steps: u64,
    pub tokens: u64,
    pub seconds: f64,
    pub train_curve: Vec<Point>,
    pub validation_curve: Vec<Point>,
    pub best_validation_loss: f64,
    pub stop: Option<StopReason>,
    pub trainable_parameters: i64,
}

/// A training run in progress.
pub struct Run {
    pub model: CausalLm,
    /// The frozen starting point DPO measures against.
    reference: Option<CausalLm>,
    optimizer: nn::Optimizer,
    pad_id: u32,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
    best: Option<Vec<Tensor>>,
    evals_without_improvement: u32,
    /// The step the schedule counts from: 0, or where [`Run::decay_over`] restarted it.
    schedule_from: u64,
    pub record: RunRecord,
    /// Checked before every optimizer step; cancelled, the run fails with
    /// [`TrainError::Cancelled`].
    cancel: Option<CancellationToken>,
}

impl Run {
    /// Prepares `model` (adding LoRA adapters if asked) and its optimizer. `planned_steps`
    /// sets the schedule's length; budgets may stop the run before it.
    pub fn new(
        mut model: CausalLm,
        reference: Option<CausalLm>,
        hyper: Hyperparameters,
        planned_steps: u64,
        pad_id: u32,
        data: &TrainData,
    ) -> Result<Self, TrainError> {
        if let Some(lora) = &hyper.lora {
            if model.add_lora(lora, hyper.seed as i64) == 0 {
                return Err(TrainError::Config(format!("no layer matches the LoRA targets {:?}", lora.targets)));
            }
        }
        let optimizer = nn::AdamW { wd: hyper.weight_decay, ..Default::default() }
            .build(model.trainable(), hyper.learning_rate)
            .map_err(TrainError::Torch)?;
        tch::manual_seed(hyper.seed as i64);
        let record = RunRecord {
            planned_steps,
            steps: 0,
            tokens: 0,
            seconds: 0.0,
            train_curve: Vec::new(),
            validation_curve: Vec::new(),
            best_validation_loss: f64::INFINITY,
            stop: None,
            trainable_parameters: model.trainable_count(),
            hyperparameters: hyper.clone(),
        };
        Ok(Self {
            model,
            reference,
            optimizer,
            pad_id,
            rng: ChaCha8Rng::seed_from_u64(hyper.seed),
            order: (0..data.train.len()).collect(),
            cursor: data.train.len(), // shuffle on the first batch
            best: None,
            evals_without_improvement: 0,
            schedule_from: 0,
            record,
            cancel: None,
        })
    }

    /// The same run, stopped with [`TrainError::Cancelled`] before its next optimizer step
    /// once `cancel` is cancelled: a step takes at most seconds, so a shutdown waits no
    /// longer than that for the training thread.
    pub fn cancelled_by(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Changes the peak learning rate from the next step on (the learning-rate sweep).
    pub fn set_learning_rate(&mut self, rate: f64) {
        self.record.hyperparameters.learning_rate = rate;
    }

    /// From the next step on, decays the learning rate by `schedule` (no warm-up) from its
    /// current peak to zero over `steps` more steps, and plans to end there: a run found
    /// good at a constant rate keeps its weights and optimizer state and anneals.
    pub fn decay_over(&mut self, schedule: Schedule, steps: u64) {
        let hyper = &mut self.record.hyperparameters;
        hyper.schedule = schedule;
        hyper.warmup_ratio = 0.0;
        self.schedule_from = self.record.steps;
        self.record.planned_steps = self.record.steps + steps;
        self.record.stop = None;
    }

    /// Plans `steps` more steps on the current schedule (a run chosen to go on).
    pub fn extend_plan(&mut self, steps: u64) {
        self.record.planned_steps = self.record.steps + steps;
        self.record.stop = None;
    }

    /// A new run from a copy of this run's current weights (adapters merged), with a fresh
    /// optimizer and `hyper`: population-based training's exploit step.
    pub fn fork(&self, hyper: Hyperparameters, planned_steps: u64, data: &TrainData) -> Result<Run, TrainError> {
        let reference = self.reference.as_ref().map(CausalLm::duplicate);
        let run = Run::new(self.model.duplicate(), reference, hyper, planned_steps, self.pad_id, data)?;
        Ok(match &self.cancel {
            Some(cancel) => run.cancelled_by(cancel.clone()),
            None => run,
        })
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.record.steps
    }

    pub fn hyper(&self) -> &Hyperparameters {
        &self.record.hyperparameters
    }

    /// The best validation loss so far (infinite before the first validation).
    pub fn best_loss(&self) -> f64 {
        self.record.best_validation_loss
    }

    fn next_items<'d>(&mut self, data: &'d TrainData) -> Vec<&'d Item> {
        let size = self.hyper().batch_size.min(data.train.len());
        let mut items = Vec::with_capacity(size);
        while items.len() < size {
            if self.cursor >= self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            items.push(&data.train[self.order[self.cursor]]);
            self.cursor += 1;
        }
        items
    }

    /// One micro-batch's loss (already divided for accumulation) and its tokens.
    fn micro_batch_loss(&mut self, data: &TrainData) -> (Tensor, u64) {
        let items = self.next_items(data);
        let device = self.model.device();
        match items[0] {
            Item::Supervised(_) => {
                let examples: Vec<&Example> = items.iter().filter_map(|i| supervised(i)).collect();
                let batch = DeviceBatch::new(&examples, self.pad_id, device);
                let (nll, tokens) = answer_nll(&batch.logits(&self.model, true), &batch);
                (nll / tokens.max(1) as f64, batch.tokens as u64)
            }
            Item::Preference { .. } => {
                let (chosen, rejected): (Vec<&Example>, Vec<&Example>) =
                    items.iter().filter_map(|i| preference(i)).unzip();
                let chosen = DeviceBatch::new(&chosen, self.pad_id, device);
                let rejected = DeviceBatch::new(&rejected, self.pad_id, device);
                let reference = self.reference.as_ref().expect("DPO runs are created with a reference model");
                let (ref_chosen, ref_rejected) = tch::no_grad(|| {
                    (
                        answer_log_prob(&chosen.logits(reference, false), &chosen),
                        answer_log_prob(&rejected.logits(reference, false), &rejected),
                    )
                });
                let loss = dpo_loss(
                    &answer_log_prob(&chosen.logits(&self.model, true), &chosen),
                    &answer_log_prob(&rejected.logits(&self.model, true), &rejected),
                    &ref_chosen,
                    &ref_rejected,
                    self.hyper().dpo_beta,
                );
                (loss, (chosen.tokens + rejected.tokens) as u64)
            }
        }
    }

    /// Advances by up to `steps` optimizer steps, stopping early at `deadline`, at the end
    /// of the plan, or when validation stops improving.
    pub fn advance(
        &mut self,
        data: &TrainData,
        steps: u64,
        deadline: Option<Instant>,
        bar: &ProgressBar,
    ) -> Result<Progress, TrainError> {
        let started = Instant::now();
        let accumulation = self.hyper().gradient_accumulation.max(1);
        let mut outcome = Progress::Running;
        for _ in 0..steps {
            if self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
                self.record.seconds += started.elapsed().as_secs_f64();
                return Err(TrainError::Cancelled);
            }
            if self.record.steps >= self.record.planned_steps {
                outcome = Progress::Stopped(StopReason::Completed);
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                outcome = Progress::Stopped(StopReason::Budget);
                break;
            }
            let lr = self.hyper().learning_rate_at(
                self.record.steps - self.schedule_from,
                self.record.planned_steps - self.schedule_from,
            );
            self.optimizer.set_lr(lr);
            self.optimizer.zero_grad();
            let mut step_loss = 0.0;
            for _ in 0..accumulation {
                let (loss, tokens) = self.micro_batch_loss(data);
                let loss = loss / accumulation as f64;
                loss.backward();
                step_loss += loss.double_value(&[]);
                self.record.tokens += tokens;
            }
            if !step_loss.is_finite() {
                outcome = Progress::Stopped(StopReason::Diverged);
                break;
            }
            self.optimizer.clip_grad_norm(self.hyper().max_grad_norm);
            self.optimizer.step();
            self.record.steps += 1;
            self.record.train_curve.push(Point { step: self.record.steps, loss: step_loss });
            bar.inc(1);
            bar.set_message(format!("loss {step_loss:.3} lr {lr:.1e}"));
            if self.record.steps.is_multiple_of(self.hyper().eval_every.max(1)) && self.validate(data) {
                outcome = Progress::Stopped(StopReason::EarlyStopped);
                break;
            }
        }
        self.record.seconds += started.elapsed().as_secs_f64();
        if let Progress::Stopped(reason) = outcome {
            self.record.stop = Some(reason);
        }
        Ok(outcome)
    }

    /// Validates, keeps the best state, and says whether patience has run out.
    pub fn validate(&mut self, data: &TrainData) -> bool {
        if self.record.validation_curve.last().is_some_and(|p| p.step == self.record.steps) {
            return false;
        }
        let loss = validation_loss(&self.model, self.reference.as_ref(), data, self.pad_id, self.hyper());
        self.record.validation_curve.push(Point { step: self.record.steps, loss });
        if loss < self.record.best_validation_loss {
            self.record.best_validation_loss = loss;
            self.best = Some(self.model.snapshot());
            self.evals_without_improvement = 0;
        } else {
            self.evals_without_improvement += 1;
        }
        self.hyper().patience.is_some_and(|p| self.evals_without_improvement >= p)
    }

    /// Ends the run: validates once more, restores the best state, merges LoRA adapters.
    pub fn finish(mut self, data: &TrainData) -> (CausalLm, RunRecord) {
        self.validate(data);
        if let Some(best) = &self.best {
            self.model.restore(best);
        }
        self.model.merge_lora();
        (self.model, self.record)
    }
}

fn supervised(item: &Item) -> Option<&Example> {
    match item {
        Item::Supervised(e) => Some(e),
        Item::Preference { .. } => None,
    }
}

fn preference(item: &Item) -> Option<(&Example, &Example)> {
    match item {
        Item::Preference { chosen, rejected } => Some((chosen, rejected)),
        Item::Supervised(_) => None,
    }
}

/// Validation loss: the market's answer NLL for supervised data; DPO's loss for preferences.
pub fn validation_loss(
    model: &CausalLm,
    reference: Option<&CausalLm>,
    data: &TrainData,
    pad_id: u32,
    hyper: &Hyperparameters,
) -> f64 {
    let batch_size = hyper.batch_size.max(8);
    let supervised: Vec<&Example> = data.validation.iter().filter_map(supervised).collect();
    if !supervised.is_empty() {
        return evaluate_nll(model, &supervised, pad_id, batch_size).mean();
    }
    let _guard = tch::no_grad_guard();
    let pairs: Vec<(&Example, &Example)> = data.validation.iter().filter_map(preference).collect();
    let reference = reference.expect("DPO validation needs the reference model");
    let mut total = LossSum::default();
    for chunk in pairs.chunks(batch_size) {
        let (chosen, rejected): (Vec<&Example>, Vec<&Example>) = chunk.iter().copied().unzip();
        let chosen = DeviceBatch::new(&chosen, pad_id, model.device());
        let rejected = DeviceBatch::new(&rejected, pad_id, model.device());
        let lp = |m: &CausalLm, b: &DeviceBatch| answer_log_prob(&b.logits(m, false), b);
        let loss = dpo_loss(
            &lp(model, &chosen),
            &lp(model, &rejected),
            &lp(reference, &chosen),
            &lp(reference, &rejected),
            hyper.dpo_beta,
        );
        total.add(LossSum { nll: loss.double_value(&[]) * chunk.len() as f64, tokens: chunk.len() as u64 });
    }
    total.mean()
}
