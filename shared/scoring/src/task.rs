//! Scoring one task: rank the miners' evaluated submissions and give each a
//! quality score (rayonlabs/G.O.D, `validator/evaluation/scoring.py`,
//! `calculate_miner_ranking_and_scores`, `calculate_weighted_loss`,
//! `_is_synth_loss_valid_for_group`, and the duplicate handling around them).
//!
//! The function is pure and its output does not depend on the order of its
//! input: the ledger pays from it and the audit re-runs it on the stored results,
//! so both must reach the same bits.

use std::cmp::Ordering;

use crate::config::ScoringConfig;
use crate::model::{MinerResult, MinerScore, Outcome, ScoreReason, TaskType};

/// A valid result with its losses made comparable.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    result: &'a MinerResult,
    test: f64,
    /// Only a finite synth loss is kept: anything else carries no information.
    synth: Option<f64>,
}

/// Results split into the pool that gets ranked and those that are not ranked.
struct Triage<'a> {
    /// Valid, non-duplicate results, in submission order.
    pool: Vec<Candidate<'a>>,
    /// Everything else, with the reason it was not ranked.
    rejected: Vec<(&'a MinerResult, ScoreReason)>,
}

/// Turns `-0.0` into `0.0` so that values equal under `==` also compare equal under `total_cmp`.
fn canonical(x: f64) -> f64 {
    x + 0.0
}

/// Sorts valid results by when they were submitted, breaking ties on every other field
/// so that the order (and thus which copy wins) never depends on the input order.
fn submission_order(a: &Candidate<'_>, b: &Candidate<'_>) -> Ordering {
    let synth = |c: &Candidate<'_>| c.synth.map(canonical);
    a.result
        .submitted_at_ms
        .cmp(&b.result.submitted_at_ms)
        .then_with(|| a.result.miner_id.cmp(&b.result.miner_id))
        .then_with(|| a.result.artifact_sha256.cmp(&b.result.artifact_sha256))
        .then_with(|| a.test.total_cmp(&b.test))
        .then_with(|| match (synth(a), synth(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
}

/// Same submitted weights: equal digests, ignoring case and surrounding blanks.
/// An empty digest is unknown, not a match, so missing hashes do not make everyone a copy.
fn same_artifact(a: &MinerResult, b: &MinerResult) -> bool {
    let (x, y) = (a.artifact_sha256.trim(), b.artifact_sha256.trim());
    !x.is_empty() && x.eq_ignore_ascii_case(y)
}

/// Exactly equal losses: two independent fine-tunes never land on the same floats
/// (G.O.D. `group_by_losses`), so this is a copy published under another name.
fn same_losses(a: &Candidate<'_>, b: &Candidate<'_>) -> bool {
    a.test == b.test && a.synth == b.synth
}

/// Splits results into the rankable pool and the rest.
fn triage<'a>(task_type: TaskType, results: &'a [MinerResult], config: &ScoringConfig) -> Triage<'a> {
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    for result in results {
        match &result.outcome {
            Outcome::Valid { test_loss, synth_loss } if test_loss.is_finite() => {
                let synth = synth_loss.filter(|s| s.is_finite()).map(canonical);
                valid.push(Candidate { result, test: canonical(*test_loss), synth });
            }
            // Our rule, not G.O.D.'s: G.O.D. fails only a NaN test loss ("Invalid test loss") and
            // would rank a -inf loss first; an infinite loss means the evaluation broke.
            Outcome::Valid { .. } | Outcome::Failed { .. } => rejected.push((result, ScoreReason::Failed)),
            Outcome::Invalid { .. } => rejected.push((result, ScoreReason::Invalid)),
            Outcome::Late => rejected.push((result, ScoreReason::Late)),
            Outcome::NotAFinetune => rejected.push((result, ScoreReason::NotAFinetune)),
        }
    }

    valid.sort_by(submission_order);
    // Equal losses betray a copy; equal rewards do not (ours): a reward is a mean over few
    // greedy completions, which distinct models often share, so for GRPO only the artifact
    // digest says "copy".
    let equal_values_are_copies = !task_type.higher_is_better();
    let mut pool = Vec::with_capacity(valid.len());
    for (i, c) in valid.iter().enumerate() {
        // Compared with every earlier result, duplicates included: a copy of a copy is still a copy.
        let copied = valid[..i]
            .iter()
            .any(|e| same_artifact(e.result, c.result) || (equal_values_are_copies && same_losses(e, c)));
        if copied {
            rejected.push((c.result, ScoreReason::Duplicate));
        } else {
            pool.push(*c);
        }
    }
    let pool = keep_top_by_test(task_type, pool, config, &mut rejected);
    Triage { pool, rejected }
}

/// G.O.D.'s top-4 rule (`_evaluate_submissions`): only the `synth_top_n` best test losses are
/// evaluated on the synthetic split and ranked; the others are set aside as
/// [`ScoreReason::OutsideTopSynth`]. Copies were removed before, so a copy never takes a place
/// (our deviation: G.O.D. finds copies only after choosing its top four). Equal test losses go
/// to the earlier submission.
fn keep_top_by_test<'a>(
    task_type: TaskType,
    mut pool: Vec<Candidate<'a>>,
    config: &ScoringConfig,
    rejected: &mut Vec<(&'a MinerResult, ScoreReason)>,
) -> Vec<Candidate<'a>> {
    let n = config.synth_top_n as usize;
    if n == 0 || pool.len() <= n {
        return pool;
    }
    pool.sort_by(|a, b| {
        let by_test = if task_type.higher_is_better() { b.test.total_cmp(&a.test) } else { a.test.total_cmp(&b.test) };
        by_test.then_with(|| submission_order(a, b))
    });
    rejected.extend(pool.drain(n..).map(|c| (c.result, ScoreReason::OutsideTopSynth)));
    pool
}

/// G.O.D. `_is_synth_loss_valid_for_group`: are the pool's synth losses believable enough to rank on?
///
/// Among results with a real synth loss (finite, below `synth_loss_ceiling`), count those
/// with a positive test loss and `synth / test <= synth_valid_max_ratio`; the group is sane
/// when that count is at least `synth_valid_threshold` of them. As in G.O.D., a result
/// with a non-positive test loss stays in the denominator but can never count as sane.
fn synth_is_sane(pool: &[Candidate<'_>], config: &ScoringConfig) -> bool {
    let real: Vec<(f64, f64)> =
        pool.iter().filter_map(|c| c.synth.filter(|s| *s < config.synth_loss_ceiling).map(|s| (c.test, s))).collect();
    if real.is_empty() {
        return false;
    }
    let sane = real.iter().filter(|(test, synth)| *test > 0.0 && synth / test <= config.synth_valid_max_ratio).count();
    sane as f64 / real.len() as f64 >= config.synth_valid_threshold
}

/// Whether GRPO or image ranking mixes in the synth loss for this pool (never for the
/// other types, which use `max(test, synth)` instead).
fn weighted_mode(task_type: TaskType, pool: &[Candidate<'_>], config: &ScoringConfig) -> bool {
    matches!(task_type, TaskType::Grpo | TaskType::Image) && synth_is_sane(pool, config)
}

/// [`weighted_mode`] for raw results, for the property tests.
#[cfg(test)]
pub(crate) fn uses_weighted_loss(task_type: TaskType, results: &[MinerResult], config: &ScoringConfig) -> bool {
    weighted_mode(task_type, &triage(task_type, results, config).pool, config)
}

/// The value a result is ranked on (G.O.D. `calculate_weighted_loss`).
///
/// Instruct, chat and DPO take `max(test, synth)`: a model that only does well on
/// the test split it may have seen is judged by its worse side. GRPO (a reward,
/// higher is better) and image (a loss, lower is better) take
/// `grpo_test_weight * test + (1 - grpo_test_weight) * synth` when the group's synth
/// losses are sane, else the test loss alone. A result without a synth loss is
/// always ranked on its test loss. Synth values at or above `synth_loss_ceiling`
/// only stay out of the sanity vote; "not evaluated on synth" must be sent as `None`.
fn ranking_value(task_type: TaskType, c: &Candidate<'_>, weighted: bool, config: &ScoringConfig) -> f64 {
    let value = match (task_type, c.synth) {
        (TaskType::Instruct | TaskType::Chat | TaskType::Dpo, Some(s)) => c.test.max(s),
        (TaskType::Grpo | TaskType::Image, Some(s)) if weighted => {
            let w = config.grpo_test_weight;
            w * c.test + (1.0 - w) * s
        }
        _ => c.test,
    };
    canonical(value)
}

/// How many of `n` ranked results, from the bottom, get the penalty.
fn penalty_count(n: usize, config: &ScoringConfig) -> usize {
    if n <= config.min_ideal_miners_in_pool as usize {
        return 0;
    }
    // `as usize` saturates (and maps NaN to 0), so a bad fraction cannot panic here.
    let share = (n as f64 * config.bottom_penalty_fraction).floor() as usize;
    // At least one, as G.O.D.; never the winner, whatever the configured fraction.
    share.max(1).min(n.saturating_sub(1))
}

/// Scores every result of one task; see the crate docs for the rules.
///
/// Ranked results come first, by rank; the others follow by miner id. When no
/// result is valid, everyone gets 0.0 with [`ScoreReason::NoValidResults`]: with
/// nobody to compare against, a failure says more about the task than the miner.
pub fn score_task(task_type: TaskType, results: &[MinerResult], config: &ScoringConfig) -> Vec<MinerScore> {
    let Triage { pool, rejected } = triage(task_type, results, config);

    if pool.is_empty() {
        let mut out: Vec<MinerScore> = rejected
            .iter()
            .map(|(r, _)| MinerScore {
                miner_id: r.miner_id.clone(),
                rank: None,
                ranking_loss: None,
                score: 0.0,
                reason: ScoreReason::NoValidResults,
            })
            .collect();
        out.sort_by(|a, b| a.miner_id.cmp(&b.miner_id));
        return out;
    }

    let weighted = weighted_mode(task_type, &pool, config);
    let mut ranked: Vec<(Candidate<'_>, f64)> =
        pool.into_iter().map(|c| (c, ranking_value(task_type, &c, weighted, config))).collect();
    ranked.sort_by(|(a, va), (b, vb)| {
        let by_value = if task_type.higher_is_better() { vb.total_cmp(va) } else { va.total_cmp(vb) };
        // Equal values: the earlier submission ranks higher, as it got there first.
        by_value.then_with(|| submission_order(a, b))
    });

    let n = ranked.len();
    let penalised_from = n - penalty_count(n, config);
    let mut out = Vec::with_capacity(results.len());
    for (i, (c, value)) in ranked.iter().enumerate() {
        let (score, reason) = if i == 0 {
            (config.first_place_score, ScoreReason::First)
        } else if i >= penalised_from {
            (config.score_penalty, ScoreReason::BottomQuarter)
        } else {
            (0.0, ScoreReason::Ranked)
        };
        out.push(MinerScore {
            miner_id: c.result.miner_id.clone(),
            rank: Some(u32::try_from(i + 1).unwrap_or(u32::MAX)),
            ranking_loss: Some(*value),
            score,
            reason,
        });
    }

    // G.O.D. applies SCORE_PENALTY to failed submissions only when valid ones exist, as here;
    // a valid result outside the top by test loss is not a failure and gets 0.
    let mut others: Vec<MinerScore> = rejected
        .iter()
        .map(|(r, reason)| MinerScore {
            miner_id: r.miner_id.clone(),
            rank: None,
            ranking_loss: None,
            score: if *reason == ScoreReason::OutsideTopSynth { 0.0 } else { config.score_penalty },
            reason: *reason,
        })
        .collect();
    // The reason breaks ties between two entries of one miner; equal keys mean equal entries.
    others.sort_by(|a, b| a.miner_id.cmp(&b.miner_id).then_with(|| a.reason.cmp(&b.reason)));
    out.extend(others);
    out
}
