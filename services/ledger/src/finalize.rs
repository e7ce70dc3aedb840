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
use gradients_proto::v1::{EvaluationKind, EvaluationResult, EvaluationStatus, LedgerEntry, LedgerEntryKind};
use gradients_scoring::{MinerResult, MinerScore, Outcome, ScoreReason};
use gradients_store::entity::ledger::{assignment, entry, evaluation, task, task_result};
use gradients_store::outbox::{PendingEvent, Relay};
use gradients_store::sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use gradients_telemetry::Metrics;
use prost::Message;

use crate::convert;
use crate::record::kind_label;

/// Why a task was finalized.
pub const BECAUSE_ALL_EVALUATED: &str = "all_evaluated";
/// Why a task was finalized.
pub const BECAUSE_DEADLINE: &str = "deadline";

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
}

impl Finalizer {
    /// Finalizes `task_id` if it is complete or past its deadline (plus grace) at `now_ms`.
    pub async fn try_finalize(&self, task_id: &str, now_ms: i64) -> Result<Finalized, DbErr> {
        if task_result::Entity::find_by_id(task_id.to_owned()).one(&self.db).await?.is_some() {
            return Ok(Finalized::Already);
        }
        let Some(task) = task::Entity::find_by_id(task_id.to_owned()).one(&self.db).await? else {
            return Ok(Finalized::NotYet);
        };
        let assigned = assignment::Entity::find().filter(assignment::Column::TaskId.eq(task_id)).all(&self.db).await?;
        // Readiness needs only who was evaluated; the payloads are read once it is ready.
        let miner_kind = kind_label(EvaluationKind::MinerSubmission);
        let evaluated: BTreeSet<String> = evaluation::Entity::find()
            .select_only()
            .column(evaluation::Column::MinerId)
            .filter(evaluation::Column::TaskId.eq(task_id))
            .filter(evaluation::Column::Kind.eq(miner_kind.as_str()))
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let cohort = assigned.iter().map(|a| a.cohort_size).max().unwrap_or(0);
        let complete =
            cohort > 0 && assigned.len() as i64 >= cohort && assigned.iter().all(|a| evaluated.contains(&a.miner_id));
        let expired = now_ms >= task.deadline_ms.saturating_add(self.settings.evaluation_grace_ms as i64);
        if !complete && !expired {
            return Ok(Finalized::NotYet);
        }
        let evaluations = evaluation::Entity::find()
            .filter(evaluation::Column::TaskId.eq(task_id))
            .order_by_asc(evaluation::Column::EvaluationId)
            .all(&self.db)
            .await?;
        let because = if complete { BECAUSE_ALL_EVALUATED } else { BECAUSE_DEADLINE };
        let plan = self.plan(&task, &assigned, &evaluations, because, now_ms);
        let count = plan.entries.len();
        match self.commit(plan, now_ms).await {
            Ok(()) => {
                self.outbox.wake();
                self.metrics.published("ledger_finalized");
                tracing::info!(task_id, because, entries = count, "task finalized");
                Ok(Finalized::Now(count))
            }
            Err(e) if gradients_store::is_unique_violation(&e) => Ok(Finalized::Already),
            Err(e) => Err(e),
        }
    }

    /// Scores the task and lays out every row to write. Pure but for the clock passed in.
    fn plan(
        &self,
        task: &task::Model,
        assigned: &[assignment::Model],
        evaluations: &[evaluation::Model],
        because: &str,
        now_ms: i64,
    ) -> Plan {
        let decoded: Vec<(&evaluation::Model, EvaluationResult)> = evaluations
            .iter()
            .filter_map(|row| EvaluationResult::decode(row.payload.as_slice()).ok().map(|e| (row, e)))
            .collect();
        let miner_kind = kind_label(EvaluationKind::MinerSubmission);
        let mut by_miner: BTreeMap<String, MinerResult> = BTreeMap::new();
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
                    entry_id: entry_id(&task.task_id, &score.miner_id, kind, ""),
                    task_id: task.task_id.clone(),
                    miner_id: score.miner_id.clone(),
                    kind: convert::entry_kind_label(kind),
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
            task_type: task.task_type.clone(),
            winner_miner_id: winner.map(|w| w.miner_id.clone()).unwrap_or_default(),
            finalized_because: because.to_owned(),
            finalized_at_ms: now_ms,
            winner_loss,
            task_weight: work,
        };
        Plan { result, entries }
    }

    async fn commit(&self, plan: Plan, now_ms: i64) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        plan.result.clone().into_active_model().insert(&txn).await?;
        for row in &plan.entries {
            row.clone().into_active_model().insert(&txn).await?;
            let event: LedgerEntry = convert::entry_to_proto(row);
            PendingEvent {
                id: row.entry_id.clone(),
                subject: subjects::LEDGER_ENTRIES.to_owned(),
                payload: event.encode_to_vec(),
            }
            .store(&txn, now_ms)
            .await?;
        }
        txn.commit().await
    }
}

/// The rows one finalization writes.
struct Plan {
    result: task_result::Model,
    entries: Vec<entry::Model>,
}

/// A scored penalty is recorded as a penalty entry, anything else as a task score.
fn entry_kind(score: &MinerScore) -> LedgerEntryKind {
    if score.score < 0.0 {
        LedgerEntryKind::Penalty
    } else {
        LedgerEntryKind::TaskScore
    }
}

/// The id of an entry: the same inputs always name the same entry.
pub fn entry_id(task_id: &str, miner_id: &str, kind: LedgerEntryKind, corrects: &str) -> String {
    let key = format!("{task_id}\u{1f}{miner_id}\u{1f}{}\u{1f}{corrects}", kind.as_str_name());
    uuid::Uuid::new_v5(&ENTRY_NAMESPACE, key.as_bytes()).to_string()
}

/// Namespace of entry ids (a fixed random UUID).
const ENTRY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2f7c_91d0_5b3e_4a86_8e14_c0d9_73a1_6b52);

/// An evaluation event as the scoring function's input.
fn miner_result(result: &EvaluationResult) -> MinerResult {
    let reason = || result.error.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    let outcome = match EvaluationStatus::try_from(result.status).unwrap_or_default() {
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
        submitted_at_ms: result.submitted_at.or(result.evaluated_at).map(|t| t.unix_ms).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
