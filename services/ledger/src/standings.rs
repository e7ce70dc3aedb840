//! A task's ranking as its customer reads it, and the confidence behind it.
//!
//! Each assigned miner's standing joins what the evaluator measured (status, reason, test
//! and synthetic loss, the submitted model's references) with what the ledger paid (score,
//! place, reward share). The confidences come from the evaluator's per-row evidence (the
//! `gradients-evidence` objects each evaluation pins by sha256): a paired bootstrap on the
//! test rows (`gradients_scoring::paired_bootstrap_confidence`, seeded by the task id and
//! `ledger.scoring.bootstrap_resamples`), so every reader that holds the same evidence gets
//! the same numbers. The finalizer uses the same function when
//! `ledger.scoring.min_winner_confidence` asks for a shared first place, and the query API
//! reports it; the result is a pure function of pinned inputs, recomputed identically.
//!
//! The baseline is the miner the operator runs with the fixed recipe (AutoTrain's defaults):
//! its id is listed in `ledger.baseline_miners`. The ledger does not take a miner's word for
//! it (a miner claiming to be the baseline could flatter the market's improvement).

use std::collections::BTreeMap;

use async_nats::jetstream::object_store::ObjectStore;
use gradients_bus::objects::{self, ObjectError};
use gradients_bus::subjects::buckets;
use gradients_bus::Bus;
use gradients_proto::v1::{EvaluationResult, EvaluationStatus, MinerStanding, TaskResult};
use gradients_scoring::{paired_bootstrap_confidence, task_seed, ScoringConfig};
use serde::Deserialize;

/// The largest evidence object the ledger reads (per-row losses of at most a few thousand rows).
const MAX_EVIDENCE_BYTES: u64 = 64 * 1024 * 1024;

/// Why an evaluation's per-row evidence could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The evaluation pins no evidence (nothing was run).
    #[error("evaluation {0} has no evidence")]
    Missing(String),
    /// The evidence is not in the evidence bucket.
    #[error("evaluation {evaluation} names evidence in {bucket}, not {expected}", expected = buckets::EVIDENCE)]
    WrongBucket {
        /// The evaluation.
        evaluation: String,
        /// The bucket it named.
        bucket: String,
    },
    /// Reading it failed (missing, truncated, checksum).
    #[error("reading the evidence of {evaluation}: {source}")]
    Read {
        /// The evaluation.
        evaluation: String,
        /// What went wrong.
        #[source]
        source: ObjectError,
    },
    /// It is not the evaluator's evidence layout.
    #[error("the evidence of {evaluation} does not parse: {source}")]
    Parse {
        /// The evaluation.
        evaluation: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// It has no test split.
    #[error("the evidence of {0} has no test rows")]
    NoTestRows(String),
}

/// The part of the evaluator's evidence object the ledger reads.
#[derive(Deserialize)]
struct Evidence {
    splits: BTreeMap<String, SplitEvidence>,
}

#[derive(Deserialize)]
struct SplitEvidence {
    rows: Vec<RowEvidence>,
}

#[derive(Deserialize)]
struct RowEvidence {
    loss: f64,
}

/// Reads evaluations' per-row losses from the evidence bucket, checked against their sha256.
#[derive(Clone)]
pub struct EvidenceReader {
    bus: Bus,
}

impl EvidenceReader {
    /// A reader over `bus`.
    pub fn new(bus: Bus) -> Self {
        Self { bus }
    }

    async fn store(&self) -> Result<ObjectStore, ObjectError> {
        Ok(objects::bucket(&self.bus, buckets::EVIDENCE).await?)
    }

    /// The per-row test losses behind `evaluation`, in the evaluator's row order.
    pub async fn test_rows(&self, evaluation: &EvaluationResult) -> Result<Vec<f64>, EvidenceError> {
        let id = || evaluation.evaluation_id.clone();
        let reference = evaluation.evidence.as_ref().ok_or_else(|| EvidenceError::Missing(id()))?;
        if reference.bucket != buckets::EVIDENCE {
            return Err(EvidenceError::WrongBucket { evaluation: id(), bucket: reference.bucket.clone() });
        }
        let store = self.store().await.map_err(|source| EvidenceError::Read { evaluation: id(), source })?;
        let bytes = objects::read_verified(&store, reference, MAX_EVIDENCE_BYTES)
            .await
            .map_err(|source| EvidenceError::Read { evaluation: id(), source })?;
        let evidence: Evidence =
            serde_json::from_slice(&bytes).map_err(|source| EvidenceError::Parse { evaluation: id(), source })?;
        let test = evidence.splits.get("test").ok_or_else(|| EvidenceError::NoTestRows(id()))?;
        Ok(test.rows.iter().map(|r| r.loss).collect())
    }

    /// The per-row test losses of every valid evaluation among `evaluations`, by miner; an
    /// evaluation whose evidence cannot be read is left out (its confidence stays unknown)
    /// and logged.
    pub async fn valid_test_rows(&self, evaluations: &[&EvaluationResult]) -> BTreeMap<String, Vec<f64>> {
        let mut rows = BTreeMap::new();
        for evaluation in evaluations.iter().filter(|e| e.status == EvaluationStatus::Valid as i32) {
            match self.test_rows(evaluation).await {
                Ok(losses) => {
                    rows.insert(evaluation.miner_id.clone(), losses);
                }
                Err(e) => tracing::warn!(
                    task_id = %evaluation.task_id, miner_id = %evaluation.miner_id, error = %e,
                    "per-row evidence unavailable; no confidence for this miner"
                ),
            }
        }
        rows
    }
}

/// The paired-bootstrap confidence that `winner` beats each other miner with rows in
/// `rows` (miner -> per-row test losses), seeded by the task.
pub fn confidences_over(
    task_id: &str,
    winner: &str,
    rows: &BTreeMap<String, Vec<f64>>,
    config: &ScoringConfig,
) -> BTreeMap<String, f64> {
    let Some(winner_rows) = rows.get(winner) else { return BTreeMap::new() };
    rows.iter()
        .filter(|(miner, _)| miner.as_str() != winner)
        .filter_map(|(miner, other)| {
            match paired_bootstrap_confidence(winner_rows, other, config.bootstrap_resamples, task_seed(task_id)) {
                Ok(confidence) => Some((miner.clone(), confidence)),
                Err(e) => {
                    tracing::warn!(task_id, miner_id = %miner, error = %e, "no confidence over this miner");
                    None
                }
            }
        })
        .collect()
}

/// Fills `result`'s standings, runner-up, baseline and confidences from the task's miner
/// evaluations (decoded), the assigned miners and the per-row evidence.
pub fn complete(
    result: &mut TaskResult,
    evaluations: &[EvaluationResult],
    assigned: &[String],
    rows: &BTreeMap<String, Vec<f64>>,
    baseline_miners: &[String],
    config: &ScoringConfig,
    higher_is_better: bool,
) {
    let confidences = confidences_over(&result.task_id, &result.winner_miner_id, rows, config);
    let positive: f64 = result.entries.iter().map(|e| e.score.max(0.0)).sum();
    let mut miners: Vec<String> = assigned.to_vec();
    miners.extend(evaluations.iter().map(|e| e.miner_id.clone()));
    miners.extend(result.entries.iter().map(|e| e.miner_id.clone()));
    miners.sort();
    miners.dedup();
    let mut standings: Vec<MinerStanding> = miners
        .iter()
        .map(|miner| {
            let evaluation = evaluations.iter().find(|e| &e.miner_id == miner);
            let entry = result.entries.iter().find(|e| &e.miner_id == miner);
            let score = entry.map_or(0.0, |e| e.score);
            let reason = match evaluation {
                Some(e) if e.status != EvaluationStatus::Valid as i32 => {
                    e.error.as_ref().map(|err| err.message.clone()).unwrap_or_default()
                }
                Some(_) => String::new(),
                None => "no evaluated submission by the deadline".to_owned(),
            };
            MinerStanding {
                miner_id: miner.clone(),
                status: evaluation.map_or(EvaluationStatus::Unspecified as i32, |e| e.status),
                reason,
                test_loss: evaluation.and_then(|e| e.test_loss),
                synth_loss: evaluation.and_then(|e| e.synth_loss),
                score,
                rank: entry.map_or(0, |e| e.rank),
                score_reason: entry.map(|e| e.reason.clone()).unwrap_or_default(),
                reward_share: if positive > 0.0 { score.max(0.0) / positive } else { 0.0 },
                artifact: evaluation.and_then(|e| e.artifact.clone()),
                manifest: evaluation.and_then(|e| e.manifest.clone()),
                baseline: baseline_miners.contains(miner),
                winner_confidence: confidences.get(miner).copied(),
                submission_id: evaluation.map(|e| e.submission_id.clone()).unwrap_or_default(),
            }
        })
        .collect();
    // Ranked first by place, then the unranked by test value (the better first: a lower
    // loss, a higher reward), then by id: best first.
    standings.sort_by(|a, b| {
        let place = |s: &MinerStanding| if s.rank == 0 { u32::MAX } else { s.rank };
        let worse_last = |s: &MinerStanding| match s.test_loss {
            Some(value) if higher_is_better => -value,
            Some(value) => value,
            None => f64::INFINITY,
        };
        place(a)
            .cmp(&place(b))
            .then_with(|| (a.miner_id != result.winner_miner_id).cmp(&(b.miner_id != result.winner_miner_id)))
            .then_with(|| worse_last(a).total_cmp(&worse_last(b)))
            .then_with(|| a.miner_id.cmp(&b.miner_id))
    });
    if let Some(runner_up) = standings.iter().find(|s| s.miner_id != result.winner_miner_id && s.rank > 0) {
        result.runner_up_miner_id = runner_up.miner_id.clone();
        result.confidence_over_runner_up = confidences.get(&runner_up.miner_id).copied();
    }
    if let Some(baseline) = standings.iter().find(|s| s.baseline) {
        result.baseline_miner_id = baseline.miner_id.clone();
        result.confidence_over_baseline = confidences.get(&baseline.miner_id).copied();
        // The fixed recipe's own measurement, when no FIXED_BASELINE reference was published.
        if result.baseline_loss.is_none() && baseline.status == EvaluationStatus::Valid as i32 {
            result.baseline_loss = baseline.test_loss;
            result.improvement_over_baseline =
                crate::convert::improvement(baseline.test_loss, result.winner_loss, higher_is_better);
        }
    }
    result.min_winner_confidence = config.min_winner_confidence;
    result.standings = standings;
}

#[cfg(test)]
mod tests {
    use gradients_proto::v1::{Error as ApiError, LedgerEntry};

    use super::*;

    fn evaluation(miner: &str, status: EvaluationStatus, test: Option<f64>) -> EvaluationResult {
        EvaluationResult {
            miner_id: miner.into(),
            status: status as i32,
            test_loss: test,
            error: (status != EvaluationStatus::Valid)
                .then(|| ApiError { message: "wrong output shape".into(), ..Default::default() }),
            ..Default::default()
        }
    }

    fn entry(miner: &str, rank: u32, score: f64, reason: &str) -> LedgerEntry {
        LedgerEntry { miner_id: miner.into(), rank, score, reason: reason.into(), ..Default::default() }
    }

    /// Three assigned miners (a wins, b is the baseline, c was refused) and one that never
    /// submitted: best first, the baseline and runner-up named with their confidences, the
    /// refusal's reason kept, reward shares over the positive scores.
    #[test]
    fn standings_of_a_task() {
        let mut result = TaskResult {
            task_id: "t".into(),
            winner_miner_id: "a".into(),
            winner_loss: Some(1.0),
            entries: vec![entry("a", 1, 3.0, "first"), entry("b", 2, 0.0, "ranked"), entry("c", 0, -1.0, "invalid")],
            ..Default::default()
        };
        let evaluations = vec![
            evaluation("b", EvaluationStatus::Valid, Some(1.5)),
            evaluation("a", EvaluationStatus::Valid, Some(1.0)),
            evaluation("c", EvaluationStatus::Invalid, None),
        ];
        let rows = BTreeMap::from([("a".to_owned(), vec![1.0, 1.0, 1.0]), ("b".to_owned(), vec![1.5, 1.4, 1.6])]);
        let assigned = ["a", "b", "c", "d"].map(String::from);
        complete(&mut result, &evaluations, &assigned, &rows, &["b".to_owned()], &ScoringConfig::default(), false);
        let order: Vec<&str> = result.standings.iter().map(|s| s.miner_id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(result.runner_up_miner_id, "b");
        assert_eq!(result.confidence_over_runner_up, Some(1.0), "a is better on every row");
        assert_eq!(result.baseline_miner_id, "b");
        assert_eq!(result.confidence_over_baseline, Some(1.0));
        assert_eq!(result.baseline_loss, Some(1.5), "the baseline's own measurement");
        assert_eq!(result.improvement_over_baseline, Some(1.0 / 3.0));
        let [a, b, c, d] = &result.standings[..] else { panic!("four standings") };
        assert_eq!((a.reward_share, b.reward_share, c.reward_share), (1.0, 0.0, 0.0));
        assert!(b.baseline && !a.baseline);
        assert_eq!(c.reason, "wrong output shape");
        assert_eq!(c.status, EvaluationStatus::Invalid as i32);
        assert_eq!(d.status, EvaluationStatus::Unspecified as i32);
        assert_eq!(d.reason, "no evaluated submission by the deadline");
        assert_eq!(a.winner_confidence, None, "no confidence over oneself");
    }

    /// A GRPO task's values are rewards: the winner's 0.6 over the baseline's 0.4 is +50%,
    /// and among the unranked the higher reward stands first.
    #[test]
    fn a_reward_task_ranks_and_improves_upwards() {
        let mut result = TaskResult {
            task_id: "t".into(),
            winner_miner_id: "a".into(),
            winner_loss: Some(0.6),
            entries: vec![entry("a", 1, 3.0, "first"), entry("b", 0, 0.0, "unranked"), entry("c", 0, 0.0, "unranked")],
            ..Default::default()
        };
        let evaluations = vec![
            evaluation("c", EvaluationStatus::Valid, Some(0.1)),
            evaluation("b", EvaluationStatus::Valid, Some(0.4)),
            evaluation("a", EvaluationStatus::Valid, Some(0.6)),
        ];
        let assigned = ["a", "b", "c"].map(String::from);
        let config = ScoringConfig::default();
        complete(&mut result, &evaluations, &assigned, &BTreeMap::new(), &["b".to_owned()], &config, true);
        let order: Vec<&str> = result.standings.iter().map(|s| s.miner_id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        let gain = result.improvement_over_baseline.expect("measured");
        assert!((gain - 0.5).abs() < 1e-12, "{gain}");
    }

    /// Rows that cannot be paired give no confidence rather than a wrong one.
    #[test]
    fn unpaired_rows_give_no_confidence() {
        let rows = BTreeMap::from([("a".to_owned(), vec![1.0, 2.0]), ("b".to_owned(), vec![1.0])]);
        assert!(confidences_over("t", "a", &rows, &ScoringConfig::default()).is_empty());
        assert!(confidences_over("t", "z", &rows, &ScoringConfig::default()).is_empty());
    }
}
