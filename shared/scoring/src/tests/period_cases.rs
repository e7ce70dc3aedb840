//! `task_work` examples and `period_weights` values worked out by hand.

use crate::{period_weights, task_work, MinerWeight, Period, ScoredTask, ScoringConfig, TaskType};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const NOW: i64 = 1_700_000_000_000;

fn task(id: &str, task_type: TaskType, age_ms: i64, work: f64, scores: &[(&str, f64)]) -> ScoredTask {
    ScoredTask {
        task_id: id.to_owned(),
        task_type,
        finished_at_ms: NOW - age_ms,
        work,
        scores: scores.iter().map(|(m, q)| ((*m).to_owned(), *q)).collect(),
    }
}

fn weights(out: &[MinerWeight]) -> Vec<(&str, f64)> {
    out.iter().map(|w| (w.miner_id.as_str(), w.weight)).collect()
}

fn assert_close(got: &[MinerWeight], expected: &[(&str, f64)]) {
    let got = weights(got);
    assert_eq!(got.len(), expected.len(), "got {got:?}");
    for ((gm, gw), (em, ew)) in got.iter().zip(expected) {
        assert_eq!(gm, em);
        assert!((gw - ew).abs() < 1e-12, "{gm}: got {gw}, expected {ew}");
    }
}

#[test]
fn task_work_examples() {
    let c = ScoringConfig::default();
    let m = "some-model";
    assert_eq!(task_work(2.0, 8_000_000_000, m, &c), 8.0); // 2 * sqrt(2 * 8)
    assert_eq!(task_work(10.0, 100_000_000_000, m, &c), 40.0); // size capped at 40B: 2 * sqrt(400)
    assert_eq!(task_work(4.0, 500_000_000, m, &c), 4.0); // 0 whole billions, raised to 1: 2 * sqrt(4)
    assert_eq!(task_work(0.1, 1_000_000_000, m, &c), 1.0); // 2 * sqrt(0.1) = 0.63, floored at 1
                                                           // Whole billions, as G.O.D.'s `params // 1e9`: 1.9B counts as 1B, 7.99B as 7B.
    assert_eq!(task_work(4.0, 1_900_000_000, m, &c), 4.0); // 2 * sqrt(4 * 1)
    assert_eq!(task_work(7.0, 7_990_000_000, m, &c), 14.0); // 2 * sqrt(7 * 7)
                                                            // Unknown count: the size in the name, at most 8; none in the name counts as 1.
    assert_eq!(task_work(2.0, 0, "Qwen/Qwen2.5-7B-Instruct", &c), 2.0 * 14f64.sqrt());
    assert_eq!(task_work(2.0, 0, "meta-llama/Llama-3.1-70B", &c), 8.0); // 2 * sqrt(2 * 8)
    assert_eq!(task_work(4.0, 0, "tiny-10m", &c), 4.0); // 2 * sqrt(4 * 1)
    assert_eq!(task_work(4.0, 0, "broken-0b", &c), 1.0); // hours * 0 = 0: the failsafe 1
    for bad in [0.0, -3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(task_work(bad, 8_000_000_000, m, &c), 1.0, "hours {bad}");
    }
    assert!(task_work(f64::MAX, u64::MAX, m, &c).is_finite());
}

#[test]
fn one_window_one_group_two_miners() {
    let config = ScoringConfig { periods: vec![Period { days: 1.0, weight: 1.0 }], ..ScoringConfig::default() };
    let history = vec![
        task("t1", TaskType::Instruct, HOUR_MS, 2.0, &[("a", 3.0), ("b", 0.0)]),
        // Chat is paid from the instruct group.
        task("t2", TaskType::Chat, 2 * HOUR_MS, 1.0, &[("a", 0.0), ("b", 3.0)]),
        // Outside the one-day window, and in the future: both ignored.
        task("t3", TaskType::Instruct, 2 * DAY_MS, 1.0, &[("c", 3.0)]),
        task("t4", TaskType::Instruct, -HOUR_MS, 1.0, &[("c", 3.0)]),
    ];
    // Zeros do not count (G.O.D. keeps scores >= 1 or < 0).
    // a: Σ q·work = 3·2 = 6, mean q = 3, period score 18.
    // b: Σ q·work = 3·1 = 3, mean q = 3, period score 9. Best 18, so x_a = 1, x_b = 0.5.
    let shaped = |x: f64| 0.7 * (1.0 / (1.0 + (-9.0 * (x - 0.5)).exp())).powf(0.75) + 0.05 * x;
    let (sa, sb) = (shaped(1.0), shaped(0.5));
    let expected = [("a", sa / (sa + sb)), ("b", sb / (sa + sb))];
    let got = period_weights(&history, NOW, &config);
    assert_close(&got, &expected);
    // The same numbers, worked out independently to six places.
    assert!((got[0].weight - 0.627_801).abs() < 1e-6);
    assert!((got[1].weight - 0.372_199).abs() < 1e-6);
}

#[test]
fn absent_groups_and_windows_are_renormalised_away() {
    // Default windows (1d 0.3, 3d 0.3, 7d 0.4) and groups (instruct 0.35, grpo 0.30, ...).
    let history = vec![
        task("t1", TaskType::Instruct, 2 * HOUR_MS, 1.0, &[("a", 3.0)]),
        task("t2", TaskType::Grpo, 2 * DAY_MS, 1.0, &[("b", 3.0)]),
    ];
    // a alone in instruct in all three windows: 0.35 · (0.3 + 0.3 + 0.4) = 0.35.
    // b alone in grpo in the 3- and 7-day windows: 0.30 · (0.3 + 0.4) = 0.21.
    // No dpo or image tasks: the paid shares 0.56 are scaled up to 1.
    let got = period_weights(&history, NOW, &ScoringConfig::default());
    assert_close(&got, &[("a", 0.35 / 0.56), ("b", 0.21 / 0.56)]);
}

#[test]
fn a_single_miner_gets_everything() {
    let history = vec![task("t1", TaskType::Dpo, 5 * DAY_MS, 3.0, &[("a", 3.0), ("b", -1.0)])];
    let got = period_weights(&history, NOW, &ScoringConfig::default());
    assert_eq!(weights(&got), vec![("a", 1.0)]);
}

#[test]
fn negative_average_earns_nothing_and_nobody_positive_means_empty() {
    let history = vec![
        task("t1", TaskType::Image, HOUR_MS, 5.0, &[("a", 3.0), ("c", -1.0)]),
        task("t2", TaskType::Image, HOUR_MS, 5.0, &[("a", -1.0), ("c", -1.0), ("d", 0.0)]),
    ];
    // a: mean 1 >= 0, score (15 - 5) · 1 = 10 > 0. c: mean -1 < 0, score 0. d: 0.
    let got = period_weights(&history, NOW, &ScoringConfig::default());
    assert_eq!(weights(&got), vec![("a", 1.0)]);

    let losers = vec![task("t1", TaskType::Grpo, HOUR_MS, 5.0, &[("c", -1.0), ("d", 0.0)])];
    assert!(period_weights(&losers, NOW, &ScoringConfig::default()).is_empty());
    assert!(period_weights(&[], NOW, &ScoringConfig::default()).is_empty());
}

#[test]
fn window_edges() {
    let config = ScoringConfig { periods: vec![Period { days: 1.0, weight: 1.0 }], ..ScoringConfig::default() };
    // Finished exactly now: inside. Exactly one day ago: outside (age < days is required).
    let inside = vec![task("t1", TaskType::Instruct, 0, 1.0, &[("a", 3.0)])];
    assert_eq!(weights(&period_weights(&inside, NOW, &config)), vec![("a", 1.0)]);
    let edge = vec![task("t1", TaskType::Instruct, DAY_MS, 1.0, &[("a", 3.0)])];
    assert!(period_weights(&edge, NOW, &config).is_empty());
    // Extreme timestamps do not overflow.
    let far = vec![ScoredTask { finished_at_ms: i64::MIN, ..inside[0].clone() }];
    assert!(period_weights(&far, i64::MAX, &config).is_empty());
}

#[test]
fn corrupt_rows_are_ignored() {
    let history = vec![
        task("t1", TaskType::Instruct, HOUR_MS, f64::NAN, &[("b", 3.0)]),
        task("t2", TaskType::Instruct, HOUR_MS, 1.0, &[("a", 3.0), ("c", f64::NAN), ("d", f64::INFINITY)]),
    ];
    let got = period_weights(&history, NOW, &ScoringConfig::default());
    assert_eq!(weights(&got), vec![("a", 1.0)]);
}

/// G.O.D. leaves scores in [0, 1) out of a miner's aggregate: a task that paid 0 does not
/// lower the miner's mean. Counting them (`min_counted_positive_score = 0`) changes the shares.
#[test]
fn zero_scores_do_not_lower_the_mean() {
    let one_window = vec![Period { days: 1.0, weight: 1.0 }];
    let history = vec![
        task("t1", TaskType::Instruct, HOUR_MS, 1.0, &[("a", 3.0), ("b", 3.0)]),
        task("t2", TaskType::Instruct, HOUR_MS, 1.0, &[("a", 0.0)]),
        task("t3", TaskType::Instruct, HOUR_MS, 1.0, &[("a", 0.0)]),
    ];
    // Default: a and b both Σ 3, mean 3, score 9: equal shares.
    let config = ScoringConfig { periods: one_window.clone(), ..ScoringConfig::default() };
    assert_close(&period_weights(&history, NOW, &config), &[("a", 0.5), ("b", 0.5)]);

    // Every score counted: a has mean 1, score 3; b score 9. x_a = 1/3, x_b = 1.
    let counted = ScoringConfig { periods: one_window, min_counted_positive_score: 0.0, ..ScoringConfig::default() };
    let shaped = |x: f64| 0.7 * (1.0 / (1.0 + (-9.0 * (x - 0.5)).exp())).powf(0.75) + 0.05 * x;
    let (sa, sb) = (shaped(1.0 / 3.0), shaped(1.0));
    assert_close(&period_weights(&history, NOW, &counted), &[("a", sa / (sa + sb)), ("b", sb / (sa + sb))]);
}
