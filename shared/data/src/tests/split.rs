//! Split sizes, disjointness and determinism.

use std::collections::HashSet;

use super::parse_ok;
use crate::{canonical_bytes, split, split_sizes, Dataset, SplitPlan, SplitSizes, Splits, TaskType};

/// The Gradients validator's plan: 10% test up to 1000, 10% synth up to 500.
const PLAN: SplitPlan = SplitPlan { test_fraction: 0.1, test_max_rows: 1000, synth_fraction: 0.1, synth_max_rows: 500 };

/// `n` distinct GRPO lines, in the given order of indices.
fn grpo_text(indices: impl IntoIterator<Item = usize>) -> String {
    indices.into_iter().map(|i| format!("{{\"prompt\": \"question {i}\", \"answer\": {i}}}\n")).collect()
}

fn dataset(n: usize) -> Dataset {
    parse_ok(TaskType::Grpo, &grpo_text(0..n))
}

/// Checks the parts are disjoint, cover the data set and have the planned sizes.
fn check_partition(dataset: &Dataset, splits: &Splits, plan: &SplitPlan) {
    let sizes = split_sizes(dataset.len() as u64, plan);
    assert_eq!(splits.test.len() as u64, sizes.test);
    assert_eq!(splits.synth.len() as u64, sizes.synth);
    assert_eq!(splits.train.len() as u64, sizes.train);
    let all: HashSet<Vec<u8>> = dataset.rows().iter().map(canonical_bytes).collect();
    let mut seen = HashSet::new();
    for row in splits.test.iter().chain(&splits.synth).chain(&splits.train) {
        let bytes = canonical_bytes(row);
        assert!(all.contains(&bytes), "row not from the data set");
        assert!(seen.insert(bytes), "row in two parts");
    }
    assert_eq!(seen.len(), all.len(), "rows lost");
}

#[test]
fn sizes_follow_the_formula_for_known_n() {
    let expect = |train, synth, test| SplitSizes { train, synth, test };
    assert_eq!(split_sizes(20, &PLAN), expect(16, 2, 2));
    assert_eq!(split_sizes(100, &PLAN), expect(80, 10, 10));
    assert_eq!(split_sizes(25_000, &PLAN), expect(23_500, 500, 1000));
    // Small sets still get one test and one synth row.
    assert_eq!(split_sizes(3, &PLAN), expect(1, 1, 1));
    assert_eq!(split_sizes(9, &PLAN), expect(7, 1, 1));
}

#[test]
fn sizes_saturate_below_three_rows_and_with_odd_plans() {
    let expect = |train, synth, test| SplitSizes { train, synth, test };
    assert_eq!(split_sizes(0, &PLAN), expect(0, 0, 0));
    assert_eq!(split_sizes(1, &PLAN), expect(0, 0, 1));
    assert_eq!(split_sizes(2, &PLAN), expect(0, 1, 1));
    let greedy =
        SplitPlan { test_fraction: 0.7, test_max_rows: u64::MAX, synth_fraction: 0.7, synth_max_rows: u64::MAX };
    assert_eq!(split_sizes(10, &greedy), expect(0, 3, 7));
    let nan = SplitPlan { test_fraction: f64::NAN, synth_fraction: -1.0, ..PLAN };
    assert_eq!(split_sizes(10, &nan), expect(8, 1, 1));
}

#[test]
fn sizes_follow_the_formula_for_every_n_up_to_2000() {
    for n in 3..2000u64 {
        let sizes = split_sizes(n, &PLAN);
        let part = |f: f64, max: u64| ((n as f64 * f).floor() as u64).max(1).min(max);
        assert_eq!(sizes.test, part(0.1, 1000), "n = {n}");
        assert_eq!(sizes.synth, part(0.1, 500), "n = {n}");
        assert_eq!(sizes.train + sizes.synth + sizes.test, n, "n = {n}");
        assert!(sizes.train >= 1, "n = {n}");
    }
}

#[test]
fn splits_partition_the_rows() {
    for n in [3, 20, 100, 25_000] {
        let dataset = dataset(n);
        let splits = split(&dataset, b"task-1", &PLAN);
        check_partition(&dataset, &splits, &PLAN);
    }
    // A sample of sizes across the range, as a cheap property check.
    for n in (3..2000).step_by(97) {
        let dataset = dataset(n);
        check_partition(&dataset, &split(&dataset, b"task-2", &PLAN), &PLAN);
    }
}

#[test]
fn same_seed_same_split_whatever_the_line_order() {
    let n = 200;
    let forward = parse_ok(TaskType::Grpo, &grpo_text(0..n));
    // A fixed permutation: stepping by a number coprime with n visits every index.
    let shuffled = parse_ok(TaskType::Grpo, &grpo_text((0..n).map(|i| (i * 77 + 13) % n)));
    assert_ne!(forward.rows(), shuffled.rows());
    let a = split(&forward, b"task-a", &PLAN);
    assert_eq!(a, split(&shuffled, b"task-a", &PLAN));
    assert_eq!(a, split(&forward, b"task-a", &PLAN));
}

#[test]
fn different_seed_different_test_set() {
    let dataset = dataset(200);
    let a = split(&dataset, b"task-a", &PLAN);
    let b = split(&dataset, b"task-b", &PLAN);
    assert_eq!(a.test.len(), b.test.len());
    assert_ne!(a.test, b.test);
}
