//! `lr-range-test`: a short exponential learning-rate sweep (Smith 2017, "Cyclical
//! Learning Rates"), then one cosine run at a tenth of the rate where the smoothed loss
//! was lowest, with early stopping, for the rest of the budget.

use super::{run_to_end, trial_of, Context, Trial};
use crate::model::CausalLm;
use crate::train::{Hyperparameters, Progress, RunRecord, Schedule, TrainError};

/// The sweep's range and share of the budget.
const SWEEP_FROM: f64 = 1e-6;
const SWEEP_TO: f64 = 1e-1;
const SWEEP_SHARE: f64 = 0.15;
const SWEEP_MIN_STEPS: u64 = 12;

fn recipe(ctx: &Context<'_>) -> Hyperparameters {
    Hyperparameters { warmup_ratio: 0.05, schedule: Schedule::Cosine, patience: Some(4), ..ctx.full_fine_tuning(1e-3) }
}

/// The learning rate the sweep suggests: a tenth of the rate at the lowest smoothed loss.
pub fn suggest(rates: &[f64], losses: &[f64]) -> f64 {
    let mut smoothed = Vec::with_capacity(losses.len());
    let mut average = 0.0;
    for (i, &loss) in losses.iter().enumerate() {
        average = 0.7 * average + 0.3 * loss;
        smoothed.push(average / (1.0 - 0.7f64.powi(i as i32 + 1)));
    }
    let lowest = smoothed.iter().enumerate().filter(|(_, l)| l.is_finite()).min_by(|a, b| a.1.total_cmp(b.1));
    lowest.map_or(SWEEP_FROM, |(i, _)| rates[i] / 10.0)
}

pub fn run(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut hyper = recipe(ctx);
    let total = ctx.total_steps(&hyper)?;
    ctx.bar.set_length(total);
    if total < 2 * SWEEP_MIN_STEPS {
        // Too small a budget to sweep and then train: all of it at the recipe's rate.
        hyper.eval_every = (total / 5).max(1);
        let run = ctx.start(hyper, total)?;
        let (model, record) = run_to_end(ctx, run, ctx.budget.deadline)?;
        let trials = vec![trial_of(&record)];
        return Ok((model, record, trials));
    }
    let sweep_steps = ((total as f64 * SWEEP_SHARE) as u64).max(SWEEP_MIN_STEPS);

    let mut sweep_hyper = hyper.clone();
    sweep_hyper.schedule = Schedule::Constant;
    sweep_hyper.warmup_ratio = 0.0;
    let mut sweep = ctx.start(sweep_hyper, sweep_steps)?;
    let (mut rates, mut losses) = (Vec::new(), Vec::new());
    for i in 0..sweep_steps {
        let rate = SWEEP_FROM * (SWEEP_TO / SWEEP_FROM).powf(i as f64 / (sweep_steps - 1).max(1) as f64);
        sweep.set_learning_rate(rate);
        let progress = sweep.advance(ctx.data, 1, ctx.budget.deadline, &ctx.bar)?;
        let loss = sweep.record.train_curve.last().map_or(f64::NAN, |p| p.loss);
        rates.push(rate);
        losses.push(loss);
        let best = losses.iter().copied().fold(f64::INFINITY, f64::min);
        // Past the minimum and blowing up: the rest of the sweep says nothing new.
        if progress != Progress::Running || !loss.is_finite() || loss > 4.0 * best {
            break;
        }
    }
    let sweep_record = sweep.record.clone();
    drop(sweep);

    hyper.learning_rate = suggest(&rates, &losses);
    let steps = total - sweep_record.steps;
    hyper.eval_every = (steps / 10).max(1);
    let run = ctx.start(hyper, steps)?;
    let (model, record) = run_to_end(ctx, run, ctx.budget.deadline)?;
    let trials = vec![trial_of(&sweep_record), trial_of(&record)];
    Ok((model, record, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_a_tenth_of_the_rate_at_the_smoothed_minimum() {
        let rates: Vec<f64> = (0..10).map(|i| 10f64.powi(i - 6)).collect();
        let losses = [5.0, 5.0, 4.9, 4.5, 3.0, 2.0, 1.5, 3.0, 9.0, f64::NAN];
        let suggested = suggest(&rates, &losses);
        // The raw minimum is at rate 1; smoothing lags by at most a step.
        assert!([1e-1, 1.0].iter().any(|r| (suggested - r / 10.0).abs() < 1e-12), "{suggested}");
        assert_eq!(suggest(&rates, &[f64::NAN; 10]), SWEEP_FROM);
    }
}
