//! The market benchmark's statistics, as pure functions of measured values (a loss, lower
//! is better; or a GRPO task's mean reward, higher is better): improvement, win rates, the
//! best single strategy in hindsight, the equal-compute comparison and the paired-bootstrap
//! confidence (the ledger's function) that one model beats another on the same rows.
//!
//! Which way a value improves is a task's fact, [`higher_is_better`] the one place that
//! reads it (from `gradients_scoring::TaskType`, as the ledger does); every comparison
//! takes it from the task.
//!
//! Everything here is deterministic (the bootstrap is seeded) and does no I/O, so the
//! figures in the README can be recomputed from the JSON the benchmark writes.

use std::collections::BTreeMap;

use serde::Serialize;

/// Whether a task type's value is a reward (higher is better) rather than a loss.
pub fn higher_is_better(task_type: gradients_data::TaskType) -> bool {
    use gradients_data::TaskType as Data;
    use gradients_scoring::TaskType as Scoring;
    match task_type {
        Data::Instruct => Scoring::Instruct,
        Data::Chat => Scoring::Chat,
        Data::Dpo => Scoring::Dpo,
        Data::Grpo => Scoring::Grpo,
    }
    .higher_is_better()
}

/// The gain of `value` over `reference` in the value's own units, positive when better: a
/// loss gains by going down, a reward by going up.
pub fn gain(reference: f64, value: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        value - reference
    } else {
        reference - value
    }
}

/// [`gain`] relative to the reference, the ledger's rule: 0.25 reads "25% lower loss" or
/// "25% more reward". `None` when the reference is not positive (a base reward of 0 has
/// no relative improvement; its [`gain`] still says how much better).
pub fn improvement(reference: f64, value: f64, higher_is_better: bool) -> Option<f64> {
    (reference > 0.0 && reference.is_finite() && value.is_finite())
        .then(|| gain(reference, value, higher_is_better) / reference)
}

/// The middle value (the mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The market against one reference over tasks: how often it is strictly better, and by
/// how much on average and in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub tasks: usize,
    pub win_rate: f64,
    /// Over the tasks whose relative improvement is defined (see [`improvement`]); `None`
    /// when none is.
    pub mean_improvement: Option<f64>,
    pub median_improvement: Option<f64>,
    /// Mean [`gain`] in the values' own units, over every task.
    pub mean_gain: f64,
}

/// One task's reference and market values and which way they improve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub reference: f64,
    pub market: f64,
    pub higher_is_better: bool,
}

/// Compares pairs, one per task; `None` without tasks.
pub fn compare(pairs: &[Pair]) -> Option<Comparison> {
    let improvements: Vec<f64> =
        pairs.iter().filter_map(|p| improvement(p.reference, p.market, p.higher_is_better)).collect();
    let gains: Vec<f64> = pairs.iter().map(|p| gain(p.reference, p.market, p.higher_is_better)).collect();
    Some(Comparison {
        tasks: pairs.len(),
        win_rate: gains.iter().filter(|&&g| g > 0.0).count() as f64 / pairs.len().max(1) as f64,
        mean_improvement: mean(&improvements),
        median_improvement: median(&improvements),
        mean_gain: mean(&gains)?,
    })
}

/// What the benchmark measured on one task, on the report rows (rows the market never saw):
/// losses, or mean rewards when `higher_is_better`. A miner that delivered no valid model
/// counts as the base model: that is what its customer would be left with.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub higher_is_better: bool,
    pub base_value: f64,
    /// Each strategy's model at the full per-miner budget.
    pub strategy_values: BTreeMap<String, f64>,
    /// The model of the miner the market (the ledger) chose, at the full per-miner budget.
    pub market_value: f64,
    /// The model the market chose when each miner had 1/K of the budget; `None` when that
    /// run was not made.
    pub equal_compute_market_value: Option<f64>,
}

impl TaskOutcome {
    /// `strategy`'s value against `reference`'s.
    fn pair(&self, reference: &str, strategy: &str) -> Option<Pair> {
        Some(Pair {
            reference: *self.strategy_values.get(reference)?,
            market: *self.strategy_values.get(strategy)?,
            higher_is_better: self.higher_is_better,
        })
    }
}

/// The strategy whose models improve most on `baseline`'s on average over every task (the
/// best single strategy in hindsight: chosen knowing every result, so the comparison
/// favours it, not the market). Ties go to the first name in order. Relative improvements
/// rather than raw values, so a task with large losses does not decide alone; where no task
/// has one (every baseline reward 0), the mean gain decides.
pub fn best_single_strategy(tasks: &[TaskOutcome], baseline: &str) -> Option<String> {
    let names: Vec<&String> = tasks.first()?.strategy_values.keys().collect();
    let mut best: Option<((bool, f64), &String)> = None;
    for name in names {
        let pairs: Option<Vec<Pair>> = tasks.iter().map(|t| t.pair(baseline, name)).collect();
        let Some(c) = pairs.and_then(|p| compare(&p)) else { continue };
        // A defined mean improvement ranks above a gain only.
        let score = c.mean_improvement.map_or((false, c.mean_gain), |m| (true, m));
        if best.is_none_or(|(best_score, _)| score > best_score) {
            best = Some((score, name));
        }
    }
    best.map(|(_, name)| name.clone())
}

/// Every overall figure of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Against the fixed recipe at the same per-miner budget.
    pub vs_baseline: Option<Comparison>,
    pub best_single_strategy: Option<String>,
    /// Against the best single strategy in hindsight at the same per-miner budget.
    pub vs_best_single: Option<Comparison>,
    /// A market of K miners with 1/K of the budget each against the best single strategy
    /// with the whole budget.
    pub equal_compute: Option<Comparison>,
    /// Each strategy alone against the fixed recipe: mean improvement over the tasks that
    /// have one.
    pub strategy_mean_improvement: BTreeMap<String, f64>,
    /// Each strategy alone against the fixed recipe: mean [`gain`] over every task.
    pub strategy_mean_gain: BTreeMap<String, f64>,
}

/// The overall figures over `tasks`, with `baseline` naming the fixed recipe's strategy.
pub fn summarize(tasks: &[TaskOutcome], baseline: &str) -> Summary {
    let against = |reference: &dyn Fn(&TaskOutcome) -> Option<f64>, market: &dyn Fn(&TaskOutcome) -> Option<f64>| {
        let pairs: Vec<Pair> = tasks
            .iter()
            .filter_map(|t| {
                Some(Pair { reference: reference(t)?, market: market(t)?, higher_is_better: t.higher_is_better })
            })
            .collect();
        compare(&pairs)
    };
    let fixed = |t: &TaskOutcome| t.strategy_values.get(baseline).copied();
    let best = best_single_strategy(tasks, baseline);
    let best_value = |t: &TaskOutcome| best.as_ref().and_then(|b| t.strategy_values.get(b).copied());
    let names = tasks.first().map(|t| t.strategy_values.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let alone: Vec<(String, Comparison)> = names
        .into_iter()
        .filter_map(|name| {
            let pairs: Vec<Pair> = tasks.iter().filter_map(|t| t.pair(baseline, &name)).collect();
            Some((name, compare(&pairs)?))
        })
        .collect();
    let strategy_mean_improvement =
        alone.iter().filter_map(|(name, c)| Some((name.clone(), c.mean_improvement?))).collect();
    let strategy_mean_gain = alone.iter().map(|(name, c)| (name.clone(), c.mean_gain)).collect();
    Summary {
        vs_baseline: against(&fixed, &|t| Some(t.market_value)),
        vs_best_single: against(&best_value, &|t| Some(t.market_value)),
        equal_compute: against(&best_value, &|t| t.equal_compute_market_value),
        best_single_strategy: best,
        strategy_mean_improvement,
        strategy_mean_gain,
    }
}

/// The paired-bootstrap confidence that the model with per-row losses `winner` beats the
/// one with `other` on the population the rows were drawn from: the ledger's own function
/// (`gradients_scoring::paired_bootstrap_confidence`), so the bench and the ledger state
/// confidence alike. Per-row losses are the evaluator's (summed answer-token loss of a row,
/// or a DPO pair's loss). `None` when the rows do not pair up.
pub fn confidence(winner: &[f64], other: &[f64], resamples: u32, seed: u64) -> Option<f64> {
    gradients_scoring::paired_bootstrap_confidence(winner, other, resamples, seed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(base: f64, losses: &[(&str, f64)], market: f64, equal: Option<f64>) -> TaskOutcome {
        TaskOutcome {
            higher_is_better: false,
            base_value: base,
            strategy_values: losses.iter().map(|&(n, l)| (n.to_owned(), l)).collect(),
            market_value: market,
            equal_compute_market_value: equal,
        }
    }

    fn loss_pair(reference: f64, market: f64) -> Pair {
        Pair { reference, market, higher_is_better: false }
    }

    #[test]
    fn improvement_and_median_by_hand() {
        assert_eq!(improvement(2.0, 1.5, false), Some(0.25));
        assert_eq!(improvement(2.0, 3.0, false), Some(-0.5));
        // A reward improves upwards: 0.4 to 0.6 is +50%, 0.4 to 0.3 is -25%.
        assert!((improvement(0.4, 0.6, true).unwrap() - 0.5).abs() < 1e-12);
        assert!((improvement(0.4, 0.3, true).unwrap() + 0.25).abs() < 1e-12);
        assert_eq!(improvement(0.0, 0.5, true), None, "no relative improvement over a zero reward");
        assert_eq!(gain(0.0, 0.5, true), 0.5);
        assert_eq!(gain(2.0, 1.5, false), 0.5);
        assert!(higher_is_better(gradients_data::TaskType::Grpo));
        assert!(!higher_is_better(gradients_data::TaskType::Instruct));
        assert!(!higher_is_better(gradients_data::TaskType::Dpo));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn comparison_counts_strict_wins_only() {
        // Improvements 0.5, 0 (a tie is no win) and -0.25.
        let c = compare(&[loss_pair(2.0, 1.0), loss_pair(1.0, 1.0), loss_pair(4.0, 5.0)]).unwrap();
        assert_eq!(c.tasks, 3);
        assert_eq!(c.win_rate, 1.0 / 3.0);
        assert!((c.mean_improvement.unwrap() - 0.25 / 3.0).abs() < 1e-12);
        assert_eq!(c.median_improvement, Some(0.0));
        assert_eq!(c.mean_gain, 0.0);
        assert_eq!(compare(&[]), None);
    }

    /// Rewards the right way round: the market's higher reward is the win, and a zero
    /// reference reward counts in the win rate and the gain but not in the improvement.
    #[test]
    fn rewards_win_by_going_up() {
        let reward = |reference, market| Pair { reference, market, higher_is_better: true };
        // Improvements +50% (0.4 -> 0.6), -50% (0.2 -> 0.1), undefined (0 -> 0.3).
        let c = compare(&[reward(0.4, 0.6), reward(0.2, 0.1), reward(0.0, 0.3)]).unwrap();
        assert_eq!(c.win_rate, 2.0 / 3.0);
        assert!(c.mean_improvement.unwrap().abs() < 1e-12);
        assert!((c.mean_gain - 0.4 / 3.0).abs() < 1e-12);

        // Strategy g has the higher rewards; as losses it would be the worst.
        let tasks = [
            TaskOutcome {
                higher_is_better: true,
                base_value: 0.1,
                strategy_values: [("fixed", 0.2), ("g", 0.5), ("h", 0.1)].map(|(n, v)| (n.to_owned(), v)).into(),
                market_value: 0.5,
                equal_compute_market_value: Some(0.1),
            },
            TaskOutcome {
                higher_is_better: true,
                base_value: 0.0,
                strategy_values: [("fixed", 0.0), ("g", 0.2), ("h", 0.0)].map(|(n, v)| (n.to_owned(), v)).into(),
                market_value: 0.0,
                equal_compute_market_value: None,
            },
        ];
        let s = summarize(&tasks, "fixed");
        assert_eq!(s.best_single_strategy.as_deref(), Some("g"));
        assert!((s.strategy_mean_improvement["g"] - 1.5).abs() < 1e-12, "task 1 only: (0.5 - 0.2) / 0.2");
        assert!((s.strategy_mean_improvement["h"] + 0.5).abs() < 1e-12);
        assert!((s.strategy_mean_gain["g"] - 0.25).abs() < 1e-12, "(0.3 + 0.2) / 2");
        let v = s.vs_baseline.unwrap();
        assert_eq!(v.win_rate, 0.5);
        assert!((v.mean_improvement.unwrap() - 1.5).abs() < 1e-12);
        let e = s.equal_compute.unwrap();
        assert_eq!((e.tasks, e.win_rate), (1, 0.0));
        assert!((e.mean_improvement.unwrap() + 0.8).abs() < 1e-12, "0.5 -> 0.1");

        // Every baseline reward 0: no improvement anywhere, the gain picks the best.
        let zero = [TaskOutcome {
            strategy_values: [("fixed", 0.0), ("g", 0.1), ("h", 0.3)].map(|(n, v)| (n.to_owned(), v)).into(),
            ..tasks[1].clone()
        }];
        assert_eq!(best_single_strategy(&zero, "fixed").as_deref(), Some("h"));
    }

    /// Three tasks, strategies fixed / a / b, worked by hand:
    /// a improves on fixed by 0.5, 0.0, 0.1 (mean 0.2); b by 0.25, 0.25, 0.25 (mean 0.25):
    /// b is the best single strategy although a wins task 1.
    #[test]
    fn summary_by_hand() {
        let tasks = [
            task(4.0, &[("fixed", 2.0), ("a", 1.0), ("b", 1.5)], 1.0, Some(1.2)),
            task(4.0, &[("fixed", 4.0), ("a", 4.0), ("b", 3.0)], 4.0, Some(3.3)),
            task(2.0, &[("fixed", 1.0), ("a", 0.9), ("b", 0.75)], 0.75, Some(0.75)),
        ];
        let s = summarize(&tasks, "fixed");
        assert_eq!(s.best_single_strategy.as_deref(), Some("b"));
        assert_eq!(s.strategy_mean_improvement["fixed"], 0.0);
        assert!((s.strategy_mean_improvement["a"] - 0.2).abs() < 1e-12);
        assert!((s.strategy_mean_improvement["b"] - 0.25).abs() < 1e-12);

        // Market vs fixed: 0.5, 0.0, 0.25 -> wins 2/3, mean 0.25, median 0.25.
        let v = s.vs_baseline.unwrap();
        assert_eq!(v.win_rate, 2.0 / 3.0);
        assert!((v.mean_improvement.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(v.median_improvement, Some(0.25));

        // Market vs b: (1.5-1)/1.5 = 1/3, (3-4)/3 = -1/3, 0 -> wins 1/3, mean 0, median 0.
        let b = s.vs_best_single.unwrap();
        assert_eq!(b.win_rate, 1.0 / 3.0);
        assert!(b.mean_improvement.unwrap().abs() < 1e-12);
        assert_eq!(b.median_improvement, Some(0.0));

        // Equal compute vs b: (1.5-1.2)/1.5 = 0.2, (3-3.3)/3 = -0.1, 0 -> 1/3, mean 0.1/3.
        let e = s.equal_compute.unwrap();
        assert_eq!(e.win_rate, 1.0 / 3.0);
        assert!((e.mean_improvement.unwrap() - 0.1 / 3.0).abs() < 1e-12);
        assert_eq!(e.median_improvement, Some(0.0));
    }

    #[test]
    fn equal_compute_is_absent_when_not_run_and_ties_pick_the_first_name() {
        let tasks = [task(2.0, &[("fixed", 1.0), ("x", 0.5), ("y", 0.5)], 0.5, None)];
        let s = summarize(&tasks, "fixed");
        assert_eq!(s.best_single_strategy.as_deref(), Some("x"));
        assert_eq!(s.equal_compute, None);
        assert_eq!(summarize(&[], "fixed").vs_baseline, None);
    }

    #[test]
    fn confidence_by_hand() {
        // Lower on every row: every resample agrees; higher on every row: none does.
        assert_eq!(confidence(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0], 200, 1), Some(1.0));
        assert_eq!(confidence(&[2.0, 3.0], &[1.0, 2.0], 200, 1), Some(0.0));
        // The same model: a tie on every resample, one half.
        assert_eq!(confidence(&[1.0, 5.0], &[1.0, 5.0], 100, 3), Some(0.5));
        // Row 0 favours the winner by 1, row 1 the other by 1: a resample of two rows
        // favours the winner when it draws row 0 twice (1/4), ties on a mixed draw (1/2):
        // 1/4 + 1/2 * 1/2 = 0.5.
        let c = confidence(&[0.0, 2.0], &[1.0, 1.0], 20_000, 9).unwrap();
        assert!((c - 0.5).abs() < 0.02, "{c}");
        assert_eq!(confidence(&[1.0], &[1.0, 2.0], 100, 1), None, "rows that do not pair");
    }
}
