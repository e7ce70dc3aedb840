//! One GRPO run that can be advanced in slices, as the supervised [`crate::train::Run`]:
//! a strategy starts several, compares their validation rewards and continues the best.

use std::time::Instant;

use gradients_text::Example;
use indicatif::ProgressBar;
use serde::Serialize;
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};
use tokio_util::sync::CancellationToken;

use super::data::GrpoData;
use super::hyper::GrpoHyperparameters;
use super::objective::{grpo_loss, token_log_probs, LossInputs};
use super::rollout::{Generator, Rollout};
use super::GrpoError;
use crate::model::CausalLm;
use crate::train::objective::DeviceBatch;
use crate::train::{Hyperparameters, Progress, StopReason, TrainError};

/// Sequences per forward pass in an optimizer step (gradients accumulate across them):
/// bounds activation memory whatever `prompts_per_step × group_size` is.
const MICRO_BATCH: usize = 32;

/// A point of a curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub step: u64,
    pub value: f64,
}

/// What a GRPO run did: written to the training report and the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoRecord {
    pub hyperparameters: GrpoHyperparameters,
    pub planned_steps: u64,
    /// Optimizer steps.
    pub steps: u64,
    pub rollouts: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
    /// Mean sampled reward of each rollout, at the step it was taken before.
    pub reward_curve: Vec<Point>,
    /// Mean k3 KL to the start model per completion token, per optimizer step.
    pub kl_curve: Vec<Point>,
    /// Mean greedy reward on the validation prompts; step 0 is the start model's.
    pub validation_curve: Vec<Point>,
    pub best_validation_reward: f64,
    pub stop: Option<StopReason>,
    pub trainable_parameters: i64,
}

impl GrpoRecord {
    /// The start model's greedy validation reward (NaN before the first validation).
    pub fn start_reward(&self) -> f64 {
        self.validation_curve.first().filter(|p| p.step == 0).map_or(f64::NAN, |p| p.value)
    }
}

/// A GRPO run in progress.
pub struct GrpoRun {
    pub model: CausalLm,
    /// The frozen start model of the KL penalty (absent when β is 0).
    reference: Option<CausalLm>,
    optimizer: nn::Optimizer,
    pad_id: u32,
    /// The rollout being optimised and the updates left on it.
    current: Option<Prepared>,
    cursor: usize,
    best: Option<Vec<Tensor>>,
    pub record: GrpoRecord,
    cancel: Option<CancellationToken>,
}

/// A rollout on the device with the constants its updates need.
struct Prepared {
    rollout: Rollout,
    /// Per micro-batch: the sampling policy's and the reference's log-probabilities
    /// (`None` for the sampling policy when there is one update per rollout: then the
    /// policy is the sampling policy and its own log-probabilities, detached, stand in).
    old: Vec<Option<Tensor>>,
    reference: Vec<Option<Tensor>>,
    updates_left: usize,
}

impl GrpoRun {
    /// Prepares a copy of `base` (with LoRA adapters if asked) and its optimizer.
    pub fn new(
        base: &CausalLm,
        hyper: GrpoHyperparameters,
        planned_steps: u64,
        pad_id: u32,
    ) -> Result<Self, GrpoError> {
        hyper.validate()?;
        let mut model = base.duplicate();
        if let Some(lora) = &hyper.lora {
            if model.add_lora(lora, hyper.seed as i64) == 0 {
                return Err(TrainError::Config(format!("no layer matches the LoRA targets {:?}", lora.targets)).into());
            }
        }
        let optimizer = nn::AdamW { wd: hyper.weight_decay, ..Default::default() }
            .build(model.trainable(), hyper.learning_rate)
            .map_err(TrainError::Torch)?;
        let reference = (hyper.beta > 0.0).then(|| base.duplicate());
        let record = GrpoRecord {
            planned_steps,
            steps: 0,
            rollouts: 0,
            completion_tokens: 0,
            seconds: 0.0,
            reward_curve: Vec::new(),
            kl_curve: Vec::new(),
            validation_curve: Vec::new(),
            best_validation_reward: f64::NEG_INFINITY,
            stop: None,
            trainable_parameters: model.trainable_count(),
            hyperparameters: hyper,
        };
        Ok(Self { model, reference, optimizer, pad_id, current: None, cursor: 0, best: None, record, cancel: None })
    }

    /// The same run, knowing the start model's validation reward (step 0 of its curve). The
    /// start is a reference, never a candidate: the evaluator refuses an unchanged model
    /// (NOT_A_FINE_TUNE, a penalty), so a run that only gets worse still returns its best
    /// trained state.
    pub fn with_start_reward(mut self, reward: f64) -> Self {
        self.record.validation_curve.push(Point { step: 0, value: reward });
        self
    }

    /// Stopped with [`TrainError::Cancelled`] before its next optimizer step once `cancel`
    /// is cancelled.
    pub fn cancelled_by(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    pub fn hyper(&self) -> &GrpoHyperparameters {
        &self.record.hyperparameters
    }

    /// The best validation reward so far (−∞ before the first validation).
    pub fn best_reward(&self) -> f64 {
        self.record.best_validation_reward
    }

    /// The learning rate at `step` of `total`: the supervised runs' warm-up and schedule.
    fn learning_rate_at(&self, step: u64) -> f64 {
        let h = self.hyper();
        let schedule = Hyperparameters {
            learning_rate: h.learning_rate,
            warmup_ratio: h.warmup_ratio,
            schedule: h.schedule,
            ..Hyperparameters::autotrain(0)
        };
        schedule.learning_rate_at(step, self.record.planned_steps)
    }

    /// The next `prompts_per_step` training prompts, cycling through them in order (the
    /// preparation shuffled them once).
    fn next_prompts<'d>(&mut self, data: &'d GrpoData) -> Vec<&'d super::data::Prompt> {
        let count = self.hyper().prompts_per_step.min(data.train.len());
        (0..count)
            .map(|_| {
                let prompt = &data.train[self.cursor % data.train.len()];
                self.cursor += 1;
                prompt
            })
            .collect()
    }

    /// Samples a new rollout and computes the constants of its updates.
    fn prepare(&mut self, data: &GrpoData, generator: &Generator<'_>) -> Result<Prepared, GrpoError> {
        let prompts = self.next_prompts(data);
        let seed = self.hyper().seed.wrapping_add(self.record.rollouts.wrapping_mul(7919));
        let rollout = generator.rollout(&self.model, &prompts, self.hyper(), seed)?;
        self.record.rollouts += 1;
        self.record.completion_tokens += rollout.completion_tokens() as u64;
        self.record.reward_curve.push(Point { step: self.record.steps, value: rollout.mean_reward() });
        let temperature = self.hyper().temperature;
        let updates = self.hyper().updates_per_rollout;
        let _guard = tch::no_grad_guard();
        let (mut old, mut reference) = (Vec::new(), Vec::new());
        for chunk in rollout.sequences.chunks(MICRO_BATCH) {
            let batch = device_batch(chunk, self.pad_id, self.model.device());
            let log_probs =
                |model: &CausalLm| token_log_probs(&batch.logits(model, false), &batch.input_ids, temperature);
            old.push((updates > 1).then(|| log_probs(&self.model)));
            reference.push(self.reference.as_ref().map(log_probs));
        }
        Ok(Prepared { rollout, old, reference, updates_left: updates })
    }

    /// One optimizer step on the current rollout: the mean loss, KL and clipped fraction.
    fn update(&mut self, prepared: &Prepared) -> (f64, f64, f64) {
        let (epsilon, beta, temperature) = (self.hyper().clip_epsilon, self.hyper().beta, self.hyper().temperature);
        let total = prepared.rollout.sequences.len() as f64;
        let (mut loss_sum, mut kl_sum, mut clipped_sum) = (0.0, 0.0, 0.0);
        let chunks = prepared.rollout.sequences.chunks(MICRO_BATCH);
        let advantage_chunks = prepared.rollout.advantages.chunks(MICRO_BATCH);
        for (i, (chunk, advantages)) in chunks.zip(advantage_chunks).enumerate() {
            let device = self.model.device();
            let batch = device_batch(chunk, self.pad_id, device);
            let log_probs = token_log_probs(&batch.logits(&self.model, true), &batch.input_ids, temperature);
            let len = batch.answer_mask.size()[1];
            let mask = batch.answer_mask.narrow(1, 1, len - 1).to_kind(Kind::Float);
            let detached = log_probs.detach();
            let old = prepared.old[i].as_ref().unwrap_or(&detached);
            let advantages = Tensor::from_slice(advantages).to_kind(Kind::Float).to(device);
            let inputs = LossInputs {
                log_probs: &log_probs,
                old_log_probs: old,
                reference_log_probs: prepared.reference[i].as_ref(),
                advantages: &advantages,
                completion_mask: &mask,
            };
            let parts = grpo_loss(&inputs, epsilon, beta);
            // Each micro-batch's mean, weighted by its share: the mean over the rollout.
            let share = chunk.len() as f64 / total;
            let loss = parts.loss * share;
            loss.backward();
            loss_sum += loss.double_value(&[]);
            kl_sum += parts.kl * share;
            clipped_sum += parts.clipped_fraction * share;
        }
        (loss_sum, kl_sum, clipped_sum)
    }

    /// Advances by up to `steps` optimizer steps, stopping at `deadline`, at the end of
    /// the plan, or when the loss is no longer finite.
    pub fn advance(
        &mut self,
        data: &GrpoData,
        generator: &Generator<'_>,
        steps: u64,
        deadline: Option<Instant>,
        bar: &ProgressBar,
    ) -> Result<Progress, GrpoError> {
        let started = Instant::now();
        let mut outcome = Progress::Running;
        for _ in 0..steps {
            if self.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
                self.record.seconds += started.elapsed().as_secs_f64();
                return Err(TrainError::Cancelled.into());
            }
            if self.record.steps >= self.record.planned_steps {
                outcome = Progress::Stopped(StopReason::Completed);
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                outcome = Progress::Stopped(StopReason::Budget);
                break;
            }
            let prepared = match self.current.take() {
                Some(prepared) if prepared.updates_left > 0 => prepared,
                _ => self.prepare(data, generator)?,
            };
            let lr = self.learning_rate_at(self.record.steps);
            self.optimizer.set_lr(lr);
            self.optimizer.zero_grad();
            let (loss, kl, clipped) = self.update(&prepared);
            let finite = loss.is_finite()
                && self.model.trainable().trainable_variables().iter().all(|v| {
                    let grad = v.grad();
                    !grad.defined() || grad.isfinite().all().int64_value(&[]) == 1
                });
            if !finite {
                outcome = Progress::Stopped(StopReason::Diverged);
                break;
            }
            self.optimizer.clip_grad_norm(self.hyper().max_grad_norm);
            self.optimizer.step();
            self.record.steps += 1;
            self.record.kl_curve.push(Point { step: self.record.steps, value: kl });
            let reward = prepared.rollout.mean_reward();
            self.current = Some(Prepared { updates_left: prepared.updates_left - 1, ..prepared });
            bar.inc(1);
            bar.set_message(format!("reward {reward:.3} kl {kl:.4} clipped {clipped:.2} lr {lr:.1e}"));
            if self.record.steps.is_multiple_of(self.hyper().eval_every.max(1)) {
                self.validate(data, generator)?;
            }
        }
        self.record.seconds += started.elapsed().as_secs_f64();
        if let Progress::Stopped(reason) = outcome {
            self.record.stop = Some(reason);
        }
        Ok(outcome)
    }

    /// Scores greedy completions of the validation prompts and keeps the best trained state
    /// (ties go to the later one: greedy rewards tie often while completions still score 0,
    /// and the later state has learnt more from the sampled rewards).
    pub fn validate(&mut self, data: &GrpoData, generator: &Generator<'_>) -> Result<f64, GrpoError> {
        if let Some(last) = self.record.validation_curve.last().filter(|p| p.step == self.record.steps) {
            return Ok(last.value);
        }
        let reward = generator.greedy_reward(&self.model, &data.validation, self.hyper().max_new_tokens)?;
        self.record.validation_curve.push(Point { step: self.record.steps, value: reward });
        if reward >= self.record.best_validation_reward {
            self.record.best_validation_reward = reward;
            self.best = Some(self.model.snapshot());
        }
        Ok(reward)
    }

    /// Ends the run: validates once more, restores the best state, merges LoRA adapters.
    pub fn finish(mut self, data: &GrpoData, generator: &Generator<'_>) -> Result<(CausalLm, GrpoRecord), GrpoError> {
        self.validate(data, generator)?;
        if let Some(best) = &self.best {
            self.model.restore(best);
        }
        self.model.merge_lora();
        Ok((self.model, self.record))
    }
}

fn device_batch(sequences: &[Example], pad_id: u32, device: tch::Device) -> DeviceBatch {
    let refs: Vec<&Example> = sequences.iter().collect();
    DeviceBatch::new(&refs, pad_id, device)
}
