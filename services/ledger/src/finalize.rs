//! Finalizing a task: once every assigned miner has been evaluated, or the deadline and its
//! grace have passed, the task's evaluations are scored (the pure function of
//! `gradients-scoring`) and written as one transaction: the task's result row, an entry per
//! miner and their events in the outbox (weights are published on their own clock, see
//! `weights::publish_periodically`). The result row's key makes this happen exactly
//! once, whichever replica or redelivery gets there first; entry ids are derived from
//! (task, miner, kind), so a recomputation yields the very same rows.

use std::collections::{BTreeMap, BTreeSet};

use gradients_bus::subjects;
use gradients_config::LedgerSettings;
use gradients_proto::v1::{EvaluationKind, EvaluationResult, EvaluationStatus, LedgerEntryKind, TaskStatus};
use gradients_scoring::{MinerResult, MinerScore, Outcome, ScoreReason};
use gradients_store::entity::ledger::{assignment, entry, evaluation, task, task_result, EntryKind, FinalizedBecause};
use gradients_store::outbox::{status_event, PendingEvent, Relay};
use gradients_store::sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, TransactionTrait,
    TryInsertResult,
};
use gradients_telemetry::Metrics;
use prost::Message;

use crate::record::kind_label;
use crate::standings::{self, EvidenceReader};
use crate::{convert, readiness};

/// The alarm (rejection code and log field) for stored evidence that no longer decodes.
pub const UNDECODABLE_EVIDENCE: &str = "UNDECODABLE_EVIDENCE";

/// Why a task was finalized: every assigned miner was evaluated.
pub const BECAUSE_ALL_EVALUATED: FinalizedBecause = FinalizedBecause::AllEvaluated;
/// Why a task was finalized: its deadline and grace passed first.
pub const BECAUSE_DEADLINE: FinalizedBecause = FinalizedBecause::Deadline;

/// A stored evaluation's event, or `None` after raising the alarm (logged and counted) that
/// it no longer decodes: stored evidence is never skipped without a word.
pub fn decode_evidence(row: &evaluation::Model, metrics: &Metrics) -> Option<EvaluationResult> {
    match EvaluationResult::decode(row.payload.as_slice()) {
        Ok(result) => Some(result),
        Err(e) => {
            metrics.rejected(UNDECODABLE_EVIDENCE);
            tracing::error!(
                alarm = UNDECODABLE_EVIDENCE, evaluation_id = %row.evaluation_id, task_id = %row.task_id,
                error = %e, "a stored evaluation does not decode"
            );
            None
        }
    }
}

/// What [`Finalizer::try_finalize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalized {
    /// Not everything is in yet, or the task is unknown so far.
    NotYet,
    /// Finalized earlier (by us, a redelivery or another replica).
    Already,
    /// Finalized now, with this many entries.
    Now(usize),
}

/// Turns a task's evaluations into ledger entries, once.
pub struct Finalizer {
    /// The ledger's database.
    pub db: DatabaseConnection,
    /// Scoring constants and grace.
    pub settings: LedgerSettings,
    /// Parameters of each base model, for the task's work weight.
    pub models: BTreeMap<String, u64>,
    /// Publishes the entries' events after commit.
    pub outbox: Relay,
    /// Where finalizations are counted.
    pub metrics: Metrics,
    /// Reads the evaluator's per-row evidence, for `scoring.min_winner_confidence` above 0
    /// (G.O.D.'s tournament rule); without it every ranked miner counts as not beaten.
    pub evidence: Option<EvidenceReader>,
}

impl Finalizer {
    /// Finalizes `task_id` if it is complete or past its deadline (plus grace) at `now_ms`.
    pub async fn try_finalize(&self, task_id: &str, now_ms: i64) -> Result<Finalized, DbErr> {
        let states = readiness::task_states(&self.db, &[task_id.to_owned()]).await?;
        let Some(state) = states.first() else { return Ok(Finalized::NotYet) };
        if state.finalized {
            return Ok(Finalized::Already);
        }
        let Some(because) = self.because(state, now_ms) else { return Ok(Finalized::NotYet) };
        let done = self.finalize_many(&[(state.task_id.clone(), because)], now_ms).await?;
        Ok(done.first().map_or(Finalized::Already, |(_, entries)| Finalized::Now(*entries)))
    }

    /// Finalizes every task among `task_ids` that is ready at `now_ms`, in one transaction;
    /// returns how many this call finalized (another replica may have taken some).
    pub async fn finalize_ready(&self, task_ids: &[String], now_ms: i64) -> Result<usize, DbErr> {
        let states = readiness::task_states(&self.db, task_ids).await?;
        let ready: Vec<(String, FinalizedBecause)> = states
            .iter()
            .filter(|s| !s.finalized)
            .filter_map(|s| self.because(s, now_ms).map(|because| (s.task_id.clone(), because)))
            .collect();
        Ok(self.finalize_many(&ready, now_ms).await?.len())
    }

    /// Why `state` can be finalized now, if it can.
    fn because(&self, state: &readiness::TaskState, now_ms: i64) -> Option<FinalizedBecause> {
        if state.complete() {
            Some(BECAUSE_ALL_EVALUATED)
        } else if state.expired(now_ms, self.settings.evaluation_grace_ms) {
            Some(BECAUSE_DEADLINE)
        } else {
            None
        }
    }

    /// Scores and writes `ready` tasks in one transaction; returns (task, entries) for each
    /// task this call finalized.
    async fn finalize_many(
        &self,
        ready: &[(String, FinalizedBecause)],
        now_ms: i64,
    ) -> Result<Vec<(String, usize)>, DbErr> {
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ready.iter().map(|(id, _)| id.clone()).collect();
        let tasks = task::Entity::find().filter(task::Column::TaskId.is_in(ids.clone())).all(&self.db).await?;
        let assigned =
            assignment::Entity::find().filter(assignment::Column::TaskId.is_in(ids.clone())).all(&self.db).await?;
        let evaluations = evaluation::Entity::find()
            .filter(evaluation::Column::TaskId.is_in(ids))
            .order_by_asc(evaluation::Column::EvaluationId)
            .all(&self.db)
            .await?;
        let mut plans: Vec<Plan> = Vec::with_capacity(ready.len());
        for (id, because) in ready {
            let Some(task) = tasks.iter().find(|t| &t.task_id == id) else { continue };
            let assigned: Vec<assignment::Model> = assigned.iter().filter(|a| &a.task_id == id).cloned().collect();
            let evaluations: Vec<evaluation::Model> =
                evaluations.iter().filter(|e| &e.task_id == id).cloned().collect();
            let rows = self.per_row_losses(&evaluations).await;
            plans.push(self.plan(task, &assigned, &evaluations, &rows, because, now_ms));
        }
        let done = self.commit_many(plans, now_ms).await?;
        if !done.is_empty() {
            self.outbox.wake();
        }
        for (task_id, entries) in &done {
            self.metrics.published("ledger_finalized");
            tracing::info!(task_id, entries, "task finalized");
        }
        Ok(done)
    }

    /// The miners' per-row test losses, read only when the confidence rule needs them.
    async fn per_row_losses(&self, evaluations: &[evaluation::Model]) -> BTreeMap<String, Vec<f64>> {
        let Some(reader) = self.evidence.as_ref().filter(|_| self.settings.scoring.min_winner_confidence > 0.0) else {
            return BTreeMap::new();
        };
        let miner_kind = kind_label(EvaluationKind::MinerSubmission);
        // One that does not decode is left out here; `plan` raises its alarm and fails it.
        let decoded: Vec<EvaluationResult> = evaluations
            .iter()
            .filter(|e| e.kind == miner_kind)
            .filter_map(|e| EvaluationResult::decode(e.payload.as_slice()).ok())
            .collect();
        reader.valid_test_rows(&decoded.iter().collect::<Vec<_>>()).await
    }

    /// Scores the task and lays out every row to write. Pure but for the clock passed in
    /// (and the per-row losses read before, for the confidence rule).
    fn plan(
        &self,
        task: &task::Model,
        assigned: &[assignment::Model],
        evaluations: &[evaluation::Model],
        rows: &BTreeMap<String, Vec<f64>>,
        because: &FinalizedBecause,
        now_ms: i64,
    ) -> Plan {
        let miner_kind = kind_label(EvaluationKind::MinerSubmission);
        let mut decoded: Vec<(&evaluation::Model, EvaluationResult)> = Vec::with_capacity(evaluations.len());
        let mut by_miner: BTreeMap<String, MinerResult> = BTreeMap::new();
        for row in evaluations {
            match EvaluationResult::decode(row.payload.as_slice()) {
                Ok(result) => decoded.push((row, result)),
                // Stored evidence that no longer decodes is an alarm, never silently skipped:
                // the miner's result says so, and the operator sees it.
                Err(e) => {
                    self.metrics.rejected(UNDECODABLE_EVIDENCE);
                    tracing::error!(
                        alarm = UNDECODABLE_EVIDENCE, evaluation_id = %row.evaluation_id, task_id = %row.task_id,
                        error = %e, "a stored evaluation does not decode"
                    );
                    if row.kind == miner_kind {
                        by_miner.insert(
                            row.miner_id.clone(),
                            MinerResult {
                                miner_id: row.miner_id.clone(),
                                outcome: Outcome::Failed {
                                    reason: format!("stored evaluation {} does not decode: {e}", row.evaluation_id),
                                },
                                artifact_sha256: String::new(),
                                submitted_at_ms: i64::MAX,
                            },
                        );
                    }
                }
            }
        }
        for (row, result) in decoded.iter().filter(|(row, _)| row.kind == miner_kind) {
            by_miner.insert(row.miner_id.clone(), miner_result(result));
        }
        for assigned in assigned {
            by_miner.entry(assigned.miner_id.clone()).or_insert_with(|| MinerResult {
                miner_id: assigned.miner_id.clone(),
                outcome: Outcome::Failed { reason: "no evaluated submission by the deadline".into() },
                artifact_sha256: String::new(),
                submitted_at_ms: i64::MAX,
            });
        }
        let results: Vec<MinerResult> = by_miner.into_values().collect();
        let task_type = convert::scoring_task_type(&task.task_type);
        let scores = gradients_scoring::score_task(task_type, &results, &self.settings.scoring);
        // G.O.D.'s tournament rule (off by default): first place is shared among the miners
        // the winner does not beat with `min_winner_confidence` on the same test rows.
        let scores = match scores.iter().find(|s| s.reason == ScoreReason::First) {
            Some(winner) if self.settings.scoring.min_winner_confidence > 0.0 => {
                let confidences =
                    standings::confidences_over(&task.task_id, &winner.miner_id, rows, &self.settings.scoring);
                gradients_scoring::share_first_place(&scores, &confidences, &self.settings.scoring)
            }
            _ => scores,
        };
        // An unknown model (0 parameters) is sized from its name, as G.O.D. does.
        let params = self.models.get(&task.base_model).copied().unwrap_or(0);
        let work =
            gradients_scoring::task_work(task.hours_to_complete, params, &task.base_model, &self.settings.scoring);

        // The rewards derive from the miners' evaluations (reference measurements change none).
        let sources: Vec<&evaluation::Model> = evaluations.iter().filter(|e| e.kind == miner_kind).collect();
        let source_ids: Vec<&str> = sources.iter().map(|e| e.evaluation_id.as_str()).collect();
        let source_sha: Vec<&str> = sources.iter().map(|e| e.payload_sha256.as_str()).collect();
        let source_ids = serde_json::to_string(&source_ids).unwrap_or_default();
        let source_sha = serde_json::to_string(&source_sha).unwrap_or_default();
        let entries: Vec<entry::Model> = scores
            .iter()
            .map(|score| {
                let kind = entry_kind(score);
                entry::Model {
                    entry_id: entry_id(&task.task_id, &score.miner_id, kind.into(), ""),
                    task_id: task.task_id.clone(),
                    miner_id: score.miner_id.clone(),
                    kind,
                    score: score.score,
                    task_weight: work,
                    rank: score.rank.map(|r| r as i32),
                    ranking_loss: score.ranking_loss,
                    reason: score.reason.as_str().to_owned(),
                    source_event_ids: source_ids.clone(),
                    source_sha256: source_sha.clone(),
                    corrects_entry_id: String::new(),
                    recorded_at_ms: now_ms,
                }
            })
            .collect();

        let winner = scores.iter().find(|s| s.reason == ScoreReason::First);
        let winner_loss = winner.and_then(|w| {
            decoded
                .iter()
                .find(|(row, _)| row.kind == miner_kind && row.miner_id == w.miner_id)
                .and_then(|(_, result)| result.test_loss)
        });
        let result = task_result::Model {
            task_id: task.task_id.clone(),
            task_type: task.task_type,
            winner_miner_id: winner.map(|w| w.miner_id.clone()).unwrap_or_default(),
            finalized_because: *because,
            finalized_at_ms: now_ms,
            winner_loss,
            task_weight: work,
        };
        Plan { result, entries }
    }

    /// Writes the plans in one transaction. Each result row goes in with `ON CONFLICT DO
    /// NOTHING RETURNING`: only the tasks whose result this call inserted get their entries
    /// and events, so a task finalized at the same moment by another replica is written once.
    async fn commit_many(&self, plans: Vec<Plan>, now_ms: i64) -> Result<Vec<(String, usize)>, DbErr> {
        let txn = self.db.begin().await?;
        let mut inserted = BTreeSet::new();
        for chunk in plans.chunks(ROWS_PER_INSERT) {
            let results = chunk.iter().map(|p| p.result.clone().into_active_model());
            if let TryInsertResult::Inserted(keys) = task_result::Entity::insert_many(results)
                .on_conflict_do_nothing()
                .exec_with_returning_keys(&txn)
                .await?
            {
                inserted.extend(keys);
            }
        }
        let mine: Vec<&Plan> = plans.iter().filter(|p| inserted.contains(&p.result.task_id)).collect();
        let entries: Vec<&entry::Model> = mine.iter().flat_map(|p| &p.entries).collect();
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let rows = chunk.iter().map(|row| (*row).clone().into_active_model());
            entry::Entity::insert_many(rows).exec_without_returning(&txn).await?;
        }
        let mut events: Vec<PendingEvent> = entries
            .iter()
            .map(|row| {
                Ok(PendingEvent {
                    id: row.entry_id.clone(),
                    subject: subjects::LEDGER_ENTRIES.to_owned(),
                    payload: convert::entry_to_proto(row)?.encode_to_vec(),
                })
            })
            .collect::<Result<_, DbErr>>()?;
        // The task's last move, decided here: scored with a winner, or failed without one.
        events.extend(mine.iter().map(|p| final_status(&p.result, now_ms)));
        for chunk in chunked(events, ROWS_PER_INSERT) {
            PendingEvent::store_all(chunk, &txn, now_ms).await?;
        }
        txn.commit().await?;
        Ok(mine.iter().map(|p| (p.result.task_id.clone(), p.entries.len())).collect())
    }
}

/// The status event that ends a finalized task: `evaluating -> scored` when someone won,
/// `evaluating -> failed` when no submission was valid.
fn final_status(result: &task_result::Model, now_ms: i64) -> PendingEvent {
    let (to, reason) = if result.winner_miner_id.is_empty() {
        (TaskStatus::Failed, format!("no valid submission ({})", result.finalized_because))
    } else {
        (TaskStatus::Scored, format!("scored; winner {} ({})", result.winner_miner_id, result.finalized_because))
    };
    status_event(&result.task_id, TaskStatus::Evaluating, to, &reason, now_ms, crate::SERVICE_NAME)
}

/// Rows per multi-row INSERT: far inside both databases' limits on bound parameters.
const ROWS_PER_INSERT: usize = 500;

/// `items` in owned chunks of at most `size`.
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(size).collect());
    }
    chunks
}

/// The rows one finalization writes.
struct Plan {
    result: task_result::Model,
    entries: Vec<entry::Model>,
}

/// A scored penalty is recorded as a penalty entry, anything else as a task score.
fn entry_kind(score: &MinerScore) -> EntryKind {
    if score.score < 0.0 {
        EntryKind::Penalty
    } else {
        EntryKind::TaskScore
    }
}

/// The id of an entry: the same inputs always name the same entry.
pub fn entry_id(task_id: &str, miner_id: &str, kind: LedgerEntryKind, corrects: &str) -> String {
    let key = format!("{task_id}\u{1f}{miner_id}\u{1f}{}\u{1f}{corrects}", kind.as_str_name());
    uuid::Uuid::new_v5(&ENTRY_NAMESPACE, key.as_bytes()).to_string()
}

/// Namespace of entry ids (a fixed random UUID).
const ENTRY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2f7c_91d0_5b3e_4a86_8e14_c0d9_73a1_6b52);

/// An evaluation event as the scoring function's input: the one reading of an
/// `EvaluationResult` that the ledger pays with and the audit recomputes with.
pub fn miner_result(result: &EvaluationResult) -> MinerResult {
    let reason = || result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    let Ok(status) = EvaluationStatus::try_from(result.status) else {
        return MinerResult {
            miner_id: result.miner_id.clone(),
            outcome: Outcome::Failed { reason: format!("unknown evaluation status {}", result.status) },
            artifact_sha256: result.artifact_sha256.clone(),
            submitted_at_ms: i64::MAX,
        };
    };
    let outcome = match status {
        EvaluationStatus::Valid => match result.test_loss {
            Some(test_loss) => Outcome::Valid { test_loss, synth_loss: result.synth_loss },
            None => Outcome::Failed { reason: "valid evaluation without a test loss".into() },
        },
        EvaluationStatus::Invalid => Outcome::Invalid { reason: reason() },
        EvaluationStatus::Late => Outcome::Late,
        EvaluationStatus::Duplicate => Outcome::Invalid { reason: format!("duplicate: {}", reason()) },
        EvaluationStatus::EvaluationFailed | EvaluationStatus::Unspecified => Outcome::Failed { reason: reason() },
    };
    MinerResult {
        miner_id: result.miner_id.clone(),
        outcome,
        artifact_sha256: result.artifact_sha256.clone(),
        // Without a time a result cannot claim to be the earliest of a set of copies.
        submitted_at_ms: result.submitted_at.or(result.evaluated_at).map_or(i64::MAX, |t| t.unix_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored evidence that no longer decodes is an alarm, counted where operators look,
    /// while evidence that decodes reads back as published.
    #[test]
    fn undecodable_evidence_raises_the_alarm() {
        let metrics = Metrics::new("ledger-test");
        let result = EvaluationResult { evaluation_id: "e1".into(), task_id: "t".into(), ..Default::default() };
        let mut row = evaluation::Model {
            evaluation_id: "e1".into(),
            task_id: "t".into(),
            miner_id: "m".into(),
            kind: gradients_store::entity::ledger::EvaluationKind::MinerSubmission,
            payload: result.encode_to_vec(),
            payload_sha256: String::new(),
            received_at_ms: 0,
        };
        assert_eq!(decode_evidence(&row, &metrics), Some(result));
        assert!(!metrics.encode().contains(UNDECODABLE_EVIDENCE), "no alarm for good evidence");
        row.payload = vec![0xff, 0xff, 0xff];
        assert_eq!(decode_evidence(&row, &metrics), None);
        assert!(metrics.encode().contains(UNDECODABLE_EVIDENCE), "{}", metrics.encode());
    }

    /// Entry ids depend on every part of their key and nothing else.
    #[test]
    fn entry_ids_are_stable() {
        let a = entry_id("t", "m", LedgerEntryKind::TaskScore, "");
        assert_eq!(a, entry_id("t", "m", LedgerEntryKind::TaskScore, ""));
        assert_ne!(a, entry_id("t", "m", LedgerEntryKind::Penalty, ""));
        assert_ne!(a, entry_id("t", "m2", LedgerEntryKind::TaskScore, ""));
        assert_ne!(
            entry_id("t", "m", LedgerEntryKind::Correction, "x"),
            entry_id("t", "m", LedgerEntryKind::Correction, "y")
        );
    }
}
