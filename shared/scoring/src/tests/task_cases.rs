//! Scripted `score_task` cases with exact expected output.

use super::{hashed, other, valid};
use crate::{score_task, MinerResult, Outcome, ScoreReason, ScoringConfig, TaskType};

use ScoreReason::*;

/// One expected output row: miner, rank, ranking loss, score, reason.
type Row = (&'static str, Option<u32>, Option<f64>, f64, ScoreReason);

/// A named case: task type, input, and the whole expected output in order.
struct Case {
    name: &'static str,
    task_type: TaskType,
    results: Vec<MinerResult>,
    expected: Vec<Row>,
}

/// The GRPO/image weighted value, written as the rule states it.
fn weighted(test: f64, synth: f64) -> f64 {
    0.7 * test + (1.0 - 0.7) * synth
}

/// `n` valid instruct results m00.. with test losses 0.1, 0.2, ... and no synth.
fn ladder(n: usize) -> Vec<MinerResult> {
    (0..n).map(|i| valid(&format!("m{i:02}"), (i + 1) as f64 / 10.0, None, 0)).collect()
}

/// Expected rows for `ladder(n)` with the bottom `penalised` results penalised.
fn ladder_expected(n: usize, penalised: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let id: &'static str = Box::leak(format!("m{i:02}").into_boxed_str());
            let loss = Some((i + 1) as f64 / 10.0);
            let rank = Some(i as u32 + 1);
            if i == 0 {
                (id, rank, loss, 3.0, First)
            } else if i >= n - penalised {
                (id, rank, loss, -1.0, BottomQuarter)
            } else {
                (id, rank, loss, 0.0, Ranked)
            }
        })
        .collect()
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "instruct: b has the best test loss but its synth loss ranks it last",
            task_type: TaskType::Instruct,
            results: vec![valid("a", 1.0, Some(1.1), 1), valid("b", 0.9, Some(1.5), 2), valid("c", 1.2, None, 3)],
            expected: vec![
                ("a", Some(1), Some(1.1), 3.0, First),
                ("c", Some(2), Some(1.2), 0.0, Ranked),
                ("b", Some(3), Some(1.5), 0.0, Ranked),
            ],
        },
        Case {
            name: "top-4 rule: the best max(test, synth) outside the four best test losses is not ranked",
            task_type: TaskType::Instruct,
            // By test: a b c d | e f. Ranked on every result, e (0.58) would win; only a..d count.
            results: vec![
                valid("a", 0.50, Some(0.90), 0),
                valid("b", 0.52, Some(0.80), 0),
                valid("c", 0.54, Some(0.85), 0),
                valid("d", 0.56, Some(0.75), 0),
                valid("e", 0.58, Some(0.58), 0),
                valid("f", 0.60, Some(0.61), 0),
            ],
            expected: vec![
                ("d", Some(1), Some(0.75), 3.0, First),
                ("b", Some(2), Some(0.80), 0.0, Ranked),
                ("c", Some(3), Some(0.85), 0.0, Ranked),
                ("a", Some(4), Some(0.90), 0.0, Ranked),
                ("e", None, None, 0.0, OutsideTopSynth),
                ("f", None, None, 0.0, OutsideTopSynth),
            ],
        },
        Case {
            name: "top-4 rule: ten valid, four ranked, six outside, nobody penalised",
            task_type: TaskType::Instruct,
            results: ladder(10),
            expected: {
                let mut rows = ladder_expected(4, 0);
                for i in 4..10 {
                    let id: &'static str = Box::leak(format!("m{i:02}").into_boxed_str());
                    rows.push((id, None, None, 0.0, OutsideTopSynth));
                }
                rows
            },
        },
        Case {
            name: "top-4 rule for grpo: the four highest test rewards",
            task_type: TaskType::Grpo,
            results: vec![
                valid("a", 0.1, None, 0),
                valid("b", 0.2, None, 0),
                valid("c", 0.3, None, 0),
                valid("d", 0.4, None, 0),
                valid("e", 0.5, None, 0),
            ],
            expected: vec![
                ("e", Some(1), Some(0.5), 3.0, First),
                ("d", Some(2), Some(0.4), 0.0, Ranked),
                ("c", Some(3), Some(0.3), 0.0, Ranked),
                ("b", Some(4), Some(0.2), 0.0, Ranked),
                ("a", None, None, 0.0, OutsideTopSynth),
            ],
        },
        Case {
            name: "top-4 rule: a copy takes no place among the four (our deviation)",
            task_type: TaskType::Instruct,
            results: vec![
                valid("a", 0.5, None, 1),
                hashed(valid("b", 0.5, None, 2), "sha-a"),
                valid("c", 0.6, None, 3),
                valid("d", 0.7, None, 4),
                valid("e", 0.8, None, 5),
            ],
            expected: vec![
                ("a", Some(1), Some(0.5), 3.0, First),
                ("c", Some(2), Some(0.6), 0.0, Ranked),
                ("d", Some(3), Some(0.7), 0.0, Ranked),
                ("e", Some(4), Some(0.8), 0.0, Ranked),
                ("b", None, None, -1.0, Duplicate),
            ],
        },
        Case {
            name: "losses of exactly (0, 0) are a result, not a not-a-fine-tune placeholder (our deviation)",
            task_type: TaskType::Instruct,
            results: vec![valid("a", 0.0, Some(0.0), 0), other("b", Outcome::NotAFinetune)],
            expected: vec![("a", Some(1), Some(0.0), 3.0, First), ("b", None, None, -1.0, NotAFinetune)],
        },
        Case {
            name: "a -inf test loss is a failed evaluation, not the winner (our deviation)",
            task_type: TaskType::Instruct,
            results: vec![valid("a", f64::NEG_INFINITY, Some(0.1), 0), valid("b", 0.5, Some(0.6), 0)],
            expected: vec![("b", Some(1), Some(0.6), 3.0, First), ("a", None, None, -1.0, Failed)],
        },
        Case {
            name: "duplicate by digest: the earliest submission wins even with a worse loss",
            task_type: TaskType::Instruct,
            results: vec![
                hashed(valid("a", 0.5, None, 200), "ABCDEF"),
                hashed(valid("b", 0.7, None, 100), "abcdef"),
                valid("c", 0.6, None, 300),
            ],
            expected: vec![
                ("c", Some(1), Some(0.6), 3.0, First),
                ("b", Some(2), Some(0.7), 0.0, Ranked),
                ("a", None, None, -1.0, Duplicate),
            ],
        },
        Case {
            name: "duplicate by equal losses: the earliest wins, a copy of a copy is a copy",
            task_type: TaskType::Dpo,
            results: vec![
                valid("a", 0.5, Some(0.6), 10),
                valid("b", 0.5, Some(0.6), 5),
                hashed(valid("c", 0.9, None, 20), "sha-a"),
                valid("d", 0.8, None, 30),
            ],
            expected: vec![
                ("b", Some(1), Some(0.6), 3.0, First),
                ("d", Some(2), Some(0.8), 0.0, Ranked),
                ("a", None, None, -1.0, Duplicate),
                ("c", None, None, -1.0, Duplicate),
            ],
        },
        Case {
            name: "equal rewards are not copies (our deviation): distinct GRPO models often share greedy completions",
            task_type: TaskType::Grpo,
            results: vec![hashed(valid("a", 0.5, None, 1), "sha-a"), hashed(valid("b", 0.5, None, 2), "sha-b")],
            expected: vec![("a", Some(1), Some(0.5), 3.0, First), ("b", Some(2), Some(0.5), 0.0, Ranked)],
        },
        Case {
            name: "duplicate at the same instant: the smaller miner id wins",
            task_type: TaskType::Instruct,
            results: vec![valid("z", 0.4, None, 7), valid("y", 0.4, None, 7)],
            expected: vec![("y", Some(1), Some(0.4), 3.0, First), ("z", None, None, -1.0, Duplicate)],
        },
        Case {
            name: "empty digests are unknown, not copies",
            task_type: TaskType::Instruct,
            results: vec![hashed(valid("a", 0.4, None, 1), ""), hashed(valid("b", 0.3, None, 2), " ")],
            expected: vec![("b", Some(1), Some(0.3), 3.0, First), ("a", Some(2), Some(0.4), 0.0, Ranked)],
        },
        Case {
            name: "nothing valid: everyone gets zero",
            task_type: TaskType::Instruct,
            results: vec![
                other("e", Outcome::Valid { test_loss: f64::NAN, synth_loss: Some(0.1) }),
                other("d", Outcome::NotAFinetune),
                other("c", Outcome::Late),
                other("b", Outcome::Failed { reason: "oom".into() }),
                other("a", Outcome::Invalid { reason: "no repo".into() }),
            ],
            expected: vec![
                ("a", None, None, 0.0, NoValidResults),
                ("b", None, None, 0.0, NoValidResults),
                ("c", None, None, 0.0, NoValidResults),
                ("d", None, None, 0.0, NoValidResults),
                ("e", None, None, 0.0, NoValidResults),
            ],
        },
        Case {
            name: "bad submissions are penalised when a valid one exists",
            task_type: TaskType::Chat,
            results: vec![
                other("e", Outcome::Valid { test_loss: f64::NAN, synth_loss: None }),
                other("f", Outcome::Valid { test_loss: f64::INFINITY, synth_loss: None }),
                other("d", Outcome::NotAFinetune),
                other("c", Outcome::Late),
                other("b", Outcome::Failed { reason: "oom".into() }),
                other("a", Outcome::Invalid { reason: "no repo".into() }),
                valid("z", 2.0, Some(2.5), 0),
            ],
            expected: vec![
                ("z", Some(1), Some(2.5), 3.0, First),
                ("a", None, None, -1.0, Invalid),
                ("b", None, None, -1.0, Failed),
                ("c", None, None, -1.0, Late),
                ("d", None, None, -1.0, NotAFinetune),
                ("e", None, None, -1.0, Failed),
                ("f", None, None, -1.0, Failed),
            ],
        },
        Case {
            name: "non-finite synth counts as absent",
            task_type: TaskType::Instruct,
            results: vec![valid("a", 0.5, Some(f64::NAN), 0), valid("b", 0.6, Some(f64::NEG_INFINITY), 0)],
            expected: vec![("a", Some(1), Some(0.5), 3.0, First), ("b", Some(2), Some(0.6), 0.0, Ranked)],
        },
        Case {
            name: "grpo with sane synth: the weighted reward decides, higher is better",
            task_type: TaskType::Grpo,
            // Ratios 1.2 and 0.77, both <= 1.5. On test alone b would win.
            results: vec![valid("a", 0.5, Some(0.6), 0), valid("b", 0.52, Some(0.4), 0)],
            expected: vec![
                ("a", Some(1), Some(weighted(0.5, 0.6)), 3.0, First),
                ("b", Some(2), Some(weighted(0.52, 0.4)), 0.0, Ranked),
            ],
        },
        Case {
            name: "grpo with insane synth: test reward only",
            task_type: TaskType::Grpo,
            // Ratios 2.0 and 1.54: 0 of 2 sane < 0.4. Weighted, a would win.
            results: vec![valid("a", 0.5, Some(1.0), 0), valid("b", 0.52, Some(0.8), 0)],
            expected: vec![("b", Some(1), Some(0.52), 3.0, First), ("a", Some(2), Some(0.5), 0.0, Ranked)],
        },
        Case {
            name: "grpo sanity vote: a non-positive test keeps its place in the denominator",
            task_type: TaskType::Grpo,
            // Real synth: a, b, c; sane: only b, so 1/3 < 0.4 and test alone ranks.
            // (Weighted, c would beat b: 0.55 against 0.53.) d's 999 stays out of the vote.
            results: vec![
                valid("a", -0.1, Some(0.05), 0),
                valid("b", 0.5, Some(0.6), 0),
                valid("c", 0.4, Some(0.9), 0),
                valid("d", 0.1, Some(999.0), 0),
            ],
            expected: vec![
                ("b", Some(1), Some(0.5), 3.0, First),
                ("c", Some(2), Some(0.4), 0.0, Ranked),
                ("d", Some(3), Some(0.1), 0.0, Ranked),
                ("a", Some(4), Some(-0.1), 0.0, Ranked),
            ],
        },
        Case {
            name: "image with sane synth: weighted loss, lower is better",
            task_type: TaskType::Image,
            results: vec![valid("a", 1.0, Some(1.2), 0), valid("b", 0.95, Some(1.4), 0), valid("c", 0.9, None, 0)],
            expected: vec![
                ("c", Some(1), Some(0.9), 3.0, First),
                ("a", Some(2), Some(weighted(1.0, 1.2)), 0.0, Ranked),
                ("b", Some(3), Some(weighted(0.95, 1.4)), 0.0, Ranked),
            ],
        },
        Case {
            name: "image with insane synth: test loss only",
            task_type: TaskType::Image,
            results: vec![valid("a", 1.0, Some(1.6), 0), valid("b", 0.95, Some(1.8), 0)],
            expected: vec![("b", Some(1), Some(0.95), 3.0, First), ("a", Some(2), Some(1.0), 0.0, Ranked)],
        },
        Case {
            name: "equal ranking values: the earlier submission ranks first",
            task_type: TaskType::Instruct,
            results: vec![valid("a", 0.5, None, 20), valid("b", 0.5, Some(0.4), 10)],
            expected: vec![("b", Some(1), Some(0.5), 3.0, First), ("a", Some(2), Some(0.5), 0.0, Ranked)],
        },
        Case { name: "no results, no scores", task_type: TaskType::Grpo, results: vec![], expected: vec![] },
    ]
}

#[test]
fn scripted_cases() {
    let config = ScoringConfig::default();
    for case in cases() {
        let got: Vec<Row> = score_task(case.task_type, &case.results, &config)
            .into_iter()
            .map(|s| {
                let id: &'static str = Box::leak(s.miner_id.into_boxed_str());
                (id, s.rank, s.ranking_loss, s.score, s.reason)
            })
            .collect();
        assert_eq!(got, case.expected, "case: {}", case.name);
    }
}

/// The bottom-quarter penalty, which the top-4 rule keeps from firing by default: with
/// `synth_top_n = 0` every valid result is ranked, and more than eight of them penalise the
/// bottom `max(1, floor(n / 4))`.
#[test]
fn bottom_quarter_when_every_result_is_ranked() {
    let config = ScoringConfig { synth_top_n: 0, ..ScoringConfig::default() };
    for (n, penalised) in [(10, 2), (9, 2), (8, 0)] {
        let got: Vec<Row> = score_task(TaskType::Instruct, &ladder(n), &config)
            .into_iter()
            .map(|s| {
                let id: &'static str = Box::leak(s.miner_id.into_boxed_str());
                (id, s.rank, s.ranking_loss, s.score, s.reason)
            })
            .collect();
        assert_eq!(got, ladder_expected(n, penalised), "{n} valid");
    }
}

#[test]
fn the_winner_is_never_penalised() {
    let config = ScoringConfig { min_ideal_miners_in_pool: 0, synth_top_n: 0, ..ScoringConfig::default() };
    let out = score_task(TaskType::Instruct, &[valid("a", 1.0, None, 0)], &config);
    assert_eq!((out[0].score, out[0].reason), (3.0, First));

    let out = score_task(TaskType::Instruct, &[valid("a", 1.0, None, 0), valid("b", 2.0, None, 0)], &config);
    let got: Vec<_> = out.iter().map(|s| (s.score, s.reason)).collect();
    assert_eq!(got, vec![(3.0, First), (-1.0, BottomQuarter)]);
}

#[test]
fn configured_scores_are_used() {
    let config = ScoringConfig { first_place_score: 7.0, score_penalty: -0.5, ..ScoringConfig::default() };
    let out = score_task(TaskType::Dpo, &[valid("a", 1.0, None, 0), other("b", Outcome::Late)], &config);
    let got: Vec<_> = out.iter().map(|s| s.score).collect();
    assert_eq!(got, vec![7.0, -0.5]);
}

#[test]
fn reason_names_are_snake_case() {
    let all = [
        (First, "first"),
        (Ranked, "ranked"),
        (BottomQuarter, "bottom_quarter"),
        (Invalid, "invalid"),
        (Failed, "failed"),
        (Late, "late"),
        (NotAFinetune, "not_a_finetune"),
        (Duplicate, "duplicate"),
        (NoValidResults, "no_valid_results"),
        (OutsideTopSynth, "outside_top_synth"),
    ];
    for (reason, name) in all {
        assert_eq!(reason.as_str(), name);
    }
    for t in TaskType::ALL {
        assert!(!t.as_str().is_empty());
    }
}
