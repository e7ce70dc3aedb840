//! The market benchmark's statistics, as pure functions of measured losses: improvement,
//! win rates, the best single strategy in hindsight, the equal-compute comparison and the
//! paired-bootstrap confidence (the ledger's function) that one model beats another on the
//! same rows.
//!
//! Everything here is deterministic (the bootstrap is seeded) and does no I/O, so the
//! figures in the README can be recomputed from the JSON the benchmark writes.

use std::collections::BTreeMap;

use serde::Serialize;

/// `(reference − loss) / reference`: the share of the reference's loss the other model
/// removes. Positive is better; 0.25 reads "25% lower loss".
pub fn improvement(reference: f64, loss: f64) -> f64 {
    (reference - loss) / reference
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
    pub mean_improvement: f64,
    pub median_improvement: f64,
}

/// Compares pairs of `(reference loss, market loss)`, one per task; `None` without tasks.
pub fn compare(pairs: &[(f64, f64)]) -> Option<Comparison> {
    let improvements: Vec<f64> = pairs.iter().map(|&(reference, market)| improvement(reference, market)).collect();
    let wins = pairs.iter().filter(|&&(reference, market)| market < reference).count();
    Some(Comparison {
        tasks: pairs.len(),
        win_rate: wins as f64 / pairs.len().max(1) as f64,
        mean_improvement: mean(&improvements)?,
        median_improvement: median(&improvements)?,
    })
}

/// What the benchmark measured on one task, on the report rows (rows the market never saw).
/// A miner that delivered no valid model counts as the base model: that is what its
/// customer would be left with.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    pub base_loss: f64,
    /// Each strategy's model at the full per-miner budget.
    pub strategy_losses: BTreeMap<String, f64>,
    /// The model of the miner the market (the ledger) chose, at the full per-miner budget.
    pub market_loss: f64,
    /// The model the market chose when each miner had 1/K of the budget; `None` when that
    /// run was not made.
    pub equal_compute_market_loss: Option<f64>,
}

/// The strategy whose models improve most on `baseline`'s on average over every task (the
/// best single strategy in hindsight: chosen knowing every result, so the comparison
/// favours it, not the market). Ties go to the first name in order. Improvements rather
/// than raw losses, so a task with large losses does not decide alone.
pub fn best_single_strategy(tasks: &[TaskOutcome], baseline: &str) -> Option<String> {
    let names: Vec<&String> = tasks.first()?.strategy_losses.keys().collect();
    let mut best: Option<(f64, &String)> = None;
    for name in names {
        let improvements: Option<Vec<f64>> = tasks
            .iter()
            .map(|t| Some(improvement(*t.strategy_losses.get(baseline)?, *t.strategy_losses.get(name)?)))
            .collect();
        let Some(score) = improvements.and_then(|i| mean(&i)) else { continue };
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
    /// Each strategy alone against the fixed recipe: mean improvement over the tasks.
    pub strategy_mean_improvement: BTreeMap<String, f64>,
}

/// The overall figures over `tasks`, with `baseline` naming the fixed recipe's strategy.
pub fn summarize(tasks: &[TaskOutcome], baseline: &str) -> Summary {
    let against = |reference: &dyn Fn(&TaskOutcome) -> Option<f64>, market: &dyn Fn(&TaskOutcome) -> Option<f64>| {
        let pairs: Vec<(f64, f64)> = tasks.iter().filter_map(|t| Some((reference(t)?, market(t)?))).collect();
        compare(&pairs)
    };
    let fixed = |t: &TaskOutcome| t.strategy_losses.get(baseline).copied();
    let best = best_single_strategy(tasks, baseline);
    let best_loss = |t: &TaskOutcome| best.as_ref().and_then(|b| t.strategy_losses.get(b).copied());
    let strategy_mean_improvement = tasks
        .first()
        .map(|t| t.strategy_losses.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| {
            let values: Vec<f64> =
                tasks.iter().filter_map(|t| Some(improvement(fixed(t)?, *t.strategy_losses.get(&name)?))).collect();
            Some((name, mean(&values)?))
        })
        .collect();
    Summary {
        vs_baseline: against(&fixed, &|t| Some(t.market_loss)),
        vs_best_single: against(&best_loss, &|t| Some(t.market_loss)),
        equal_compute: against(&best_loss, &|t| t.equal_compute_market_loss),
        best_single_strategy: best,
        strategy_mean_improvement,
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
            base_loss: base,
            strategy_losses: losses.iter().map(|&(n, l)| (n.to_owned(), l)).collect(),
            market_loss: market,
            equal_compute_market_loss: equal,
        }
    }

    #[test]
    fn improvement_and_median_by_hand() {
        assert_eq!(improvement(2.0, 1.5), 0.25);
        assert_eq!(improvement(2.0, 3.0), -0.5);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn comparison_counts_strict_wins_only() {
        // Improvements 0.5, 0 (a tie is no win) and -0.25.
        let c = compare(&[(2.0, 1.0), (1.0, 1.0), (4.0, 5.0)]).unwrap();
        assert_eq!(c.tasks, 3);
        assert_eq!(c.win_rate, 1.0 / 3.0);
        assert!((c.mean_improvement - 0.25 / 3.0).abs() < 1e-12);
        assert_eq!(c.median_improvement, 0.0);
        assert_eq!(compare(&[]), None);
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
        assert!((v.mean_improvement - 0.25).abs() < 1e-12);
        assert_eq!(v.median_improvement, 0.25);

        // Market vs b: (1.5-1)/1.5 = 1/3, (3-4)/3 = -1/3, 0 -> wins 1/3, mean 0, median 0.
        let b = s.vs_best_single.unwrap();
        assert_eq!(b.win_rate, 1.0 / 3.0);
        assert!(b.mean_improvement.abs() < 1e-12);
        assert_eq!(b.median_improvement, 0.0);

        // Equal compute vs b: (1.5-1.2)/1.5 = 0.2, (3-3.3)/3 = -0.1, 0 -> 1/3, mean 0.1/3.
        let e = s.equal_compute.unwrap();
        assert_eq!(e.win_rate, 1.0 / 3.0);
        assert!((e.mean_improvement - 0.1 / 3.0).abs() < 1e-12);
        assert_eq!(e.median_improvement, 0.0);
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
