//! `sweep-decay`: a short sweep of a few learning rates, each a real run from the base
//! model at a constant rate; the run with the lowest validation loss keeps its weights and
//! optimizer state and goes on alone, its rate decaying linearly to zero over the rest of
//! the budget.
//!
//! Why it should help: `lr-range-test` reads a rate off a one-step-per-rate curve and then
//! takes a tenth of it, and throws the sweep's steps away. Here each candidate rate is
//! judged by what it does to the validation loss after a few real steps, the chosen run's
//! steps are kept, and the decay spends the remaining budget annealing at the rate that
//! was shown to work: on the small models and budgets of the market that is typically a
//! rate several times higher than a tenth of the sweep's minimum.

use super::{run_to_end, trial_of, Context, Trial};
use crate::model::CausalLm;
use crate::train::{Hyperparameters, Run, RunRecord, Schedule, StopReason, TrainError};

/// The candidate peak rates (full fine-tuning), low to high.
pub const RATES: [f64; 4] = [3e-4, 1e-3, 3e-3, 1e-2];
/// The share of the budget the sweep spends, all candidates together.
const SWEEP_SHARE: f64 = 0.3;
/// Fewer steps than this per candidate say nothing: train at the middle rate instead.
const MIN_PROBE_STEPS: u64 = 2;

fn recipe(ctx: &Context<'_>) -> Hyperparameters {
    ctx.full_fine_tuning(RATES[2])
}

/// The rates to sweep and the steps each gets, for `total` steps in all.
pub fn plan(total: u64) -> (Vec<f64>, u64) {
    let sweep = (total as f64 * SWEEP_SHARE) as u64;
    for count in (2..=RATES.len()).rev() {
        let probe = sweep / count as u64;
        if probe >= MIN_PROBE_STEPS {
            // Fewer candidates: keep the middle of the grid.
            let skip = (RATES.len() - count).div_ceil(2);
            return (RATES[skip..skip + count].to_vec(), probe);
        }
    }
    (vec![RATES[2]], 0)
}

pub fn run(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let hyper = recipe(ctx);
    let total = ctx.total_steps(&hyper)?;
    ctx.bar.set_length(total);
    let (rates, probe) = plan(total);
    let mut runs = Vec::with_capacity(rates.len());
    for (i, &rate) in rates.iter().enumerate() {
        if i > 0 && ctx.budget.expired() {
            break;
        }
        let mut candidate = hyper.clone();
        candidate.learning_rate = rate;
        let mut run = ctx.start(candidate, total)?;
        if probe > 0 {
            // The sweep's share of the time, split evenly among the candidates left.
            let share = SWEEP_SHARE / (1.0 - SWEEP_SHARE * i as f64 / rates.len() as f64) / rates.len() as f64;
            run.advance(ctx.data, probe, ctx.budget.partial_deadline(share), &ctx.bar)?;
            run.validate(ctx.data);
        }
        runs.push(run);
    }
    let used: u64 = runs.iter().map(Run::steps).sum();
    let winner = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.record.stop != Some(StopReason::Diverged))
        .min_by(|a, b| a.1.best_loss().total_cmp(&b.1.best_loss()))
        .map_or(0, |(i, _)| i);
    let mut chosen = runs.swap_remove(winner);
    let mut trials: Vec<Trial> = runs.iter().map(|r| trial_of(&r.record)).collect();
    drop(runs);
    let rest = total.saturating_sub(used);
    chosen.decay_over(Schedule::Linear, rest);
    chosen.record.hyperparameters.eval_every = (rest / 5).max(1);
    let (model, record) = run_to_end(ctx, chosen, ctx.budget.deadline)?;
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_shrinks_to_the_middle_of_the_grid_on_small_budgets() {
        assert_eq!(plan(100), (RATES.to_vec(), 7));
        assert_eq!(plan(40), (RATES.to_vec(), 3));
        assert_eq!(plan(20), (RATES[1..4].to_vec(), 2));
        assert_eq!(plan(14), (RATES[1..3].to_vec(), 2));
        assert_eq!(plan(10), (vec![RATES[2]], 0));
        for total in 1..300 {
            let (rates, probe) = plan(total);
            assert!(rates.len() as u64 * probe <= total, "{total}");
        }
    }
}
