//! `pbt`: population-based training (Jaderberg et al. 2017, "Population Based Training of
//! Neural Networks") on a small population. Members start at log-spaced learning rates
//! and train side by side at a constant rate; after each generation the worse half is
//! replaced by copies of the better half's weights (exploit) with the rate halved or
//! doubled and, now and then, the other decay schedule (explore). After the last
//! generation the best member goes on alone for the rest of the budget, its rate decaying
//! to zero by its schedule.
//!
//! Why it should help: a single rate chosen up front is a guess about the whole run, and
//! the best rate drifts as the loss falls. PBT keeps the weights of whichever line of
//! rates is doing best at each point, so the winner's steps are a lineage of good choices
//! rather than one, and a member that diverges or stalls costs only one generation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{run_to_end, trial_of, Context, Trial};
use crate::model::CausalLm;
use crate::train::{Hyperparameters, Run, RunRecord, Schedule, StopReason, TrainError};

/// The share of the budget the population spends, all members and generations together.
const POPULATION_SHARE: f64 = 0.5;
/// Fewer steps than this per member and generation compare nothing but noise.
const MIN_INTERVAL: u64 = 3;
/// The initial rates span this range (full fine-tuning).
const LOWEST_RATE: f64 = 5e-4;
const HIGHEST_RATE: f64 = 1e-2;

fn recipe(ctx: &Context<'_>) -> Hyperparameters {
    // Constant while in the population; its own decay once alone.
    ctx.full_fine_tuning(3e-3)
}

/// Population size, generations and steps per member per generation for `total` steps
/// (a population of one: no search, one run of all of it).
pub fn plan(total: u64) -> (usize, u64, u64) {
    let population_steps = (total as f64 * POPULATION_SHARE) as u64;
    for (members, generations) in [(4, 3), (3, 3), (3, 2), (2, 2), (2, 1)] {
        let interval = population_steps / (members * generations);
        if interval >= MIN_INTERVAL {
            return (members as usize, generations, interval);
        }
    }
    (1, 1, 0)
}

/// The loss at the member's latest validation (not its best: exploitation follows where
/// a member is now).
fn current_loss(run: &Run) -> f64 {
    let loss = run.record.validation_curve.last().map_or(f64::INFINITY, |p| p.loss);
    if run.record.stop == Some(StopReason::Diverged) || !loss.is_finite() {
        f64::INFINITY
    } else {
        loss
    }
}

pub fn run(ctx: &Context<'_>) -> Result<(CausalLm, RunRecord, Vec<Trial>), TrainError> {
    let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed ^ 0x70b7);
    let hyper = recipe(ctx);
    let total = ctx.total_steps(&hyper)?;
    ctx.bar.set_length(total);
    let (members, generations, interval) = plan(total);
    // Each member with the schedule it will decay by once alone.
    let mut population: Vec<(Run, Schedule)> = Vec::with_capacity(members);
    for m in 0..members {
        let mut member = hyper.clone();
        let position = if members == 1 { 0.5 } else { m as f64 / (members - 1) as f64 };
        member.learning_rate = (LOWEST_RATE.ln() + position * (HIGHEST_RATE.ln() - LOWEST_RATE.ln())).exp();
        let decay = if m % 2 == 0 { Schedule::Linear } else { Schedule::Cosine };
        population.push((ctx.start(member, total)?, decay));
    }
    let mut trials = Vec::new();
    let mut used = 0;
    for generation in 0..generations {
        if generation > 0 && ctx.budget.expired() {
            break;
        }
        // This generation's share of the time left, by the same split as its steps.
        let done = POPULATION_SHARE * generation as f64 / generations as f64;
        let deadline = ctx.budget.partial_deadline(POPULATION_SHARE / generations as f64 / (1.0 - done));
        for (member, _) in &mut population {
            let before = member.steps();
            if member.record.stop != Some(StopReason::Diverged) {
                member.advance(ctx.data, interval, deadline, &ctx.bar)?;
            }
            used += member.steps() - before;
            member.validate(ctx.data);
        }
        population.sort_by(|a, b| current_loss(&a.0).total_cmp(&current_loss(&b.0)));
        if generation + 1 == generations || population.len() < 2 {
            break;
        }
        let half = population.len() / 2;
        for loser in half..population.len() {
            let (source, mut decay) = (&population[loser - half].0, population[loser - half].1);
            let mut explored = source.hyper().clone();
            explored.learning_rate *= if rng.random_bool(0.5) { 0.5 } else { 2.0 };
            if rng.random_bool(0.25) {
                decay = if decay == Schedule::Linear { Schedule::Cosine } else { Schedule::Linear };
            }
            let replacement = (source.fork(explored, total, ctx.data)?, decay);
            let (replaced, _) = std::mem::replace(&mut population[loser], replacement);
            trials.push(trial_of(&replaced.record));
        }
    }
    let (mut best, schedule) = population.remove(0);
    trials.extend(population.iter().map(|(r, _)| trial_of(&r.record)));
    drop(population);
    let rest = total.saturating_sub(used);
    best.decay_over(schedule, rest);
    best.record.hyperparameters.eval_every = (rest / 5).max(1);
    let (model, record) = run_to_end(ctx, best, ctx.budget.deadline)?;
    trials.push(trial_of(&record));
    Ok((model, record, trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_shrinks_with_the_budget_and_never_exceeds_it() {
        assert_eq!(plan(200), (4, 3, 8));
        assert_eq!(plan(40), (3, 2, 3));
        assert_eq!(plan(12), (2, 1, 3));
        assert_eq!(plan(10), (1, 1, 0));
        for total in 1..400 {
            let (members, generations, interval) = plan(total);
            assert!(members as u64 * generations * interval <= total, "{total}");
        }
    }
}
