//! Between stored rows, wire messages and the scoring crate's types.

use gradients_proto::v1::{LedgerEntry, LedgerEntryKind, TaskResult, Timestamp};
use gradients_store::entity::ledger::{entry, task_result, TaskType};
use gradients_store::sea_orm::DbErr;

/// The scoring crate's task type for a stored type (every stored type is a scored one).
pub fn scoring_task_type(stored: &TaskType) -> gradients_scoring::TaskType {
    match stored {
        TaskType::Instruct => gradients_scoring::TaskType::Instruct,
        TaskType::Chat => gradients_scoring::TaskType::Chat,
        TaskType::Dpo => gradients_scoring::TaskType::Dpo,
        TaskType::Grpo => gradients_scoring::TaskType::Grpo,
    }
}

/// A stored entry as its wire message; stored evidence lists that no longer parse are an
/// error, never an empty list.
pub fn entry_to_proto(row: &entry::Model) -> Result<LedgerEntry, DbErr> {
    let evidence = |column: &str, json: &str| {
        serde_json::from_str::<Vec<String>>(json).map_err(|e| {
            DbErr::Json(format!("ledger entry {}: stored {column} {json:?} is not a JSON list: {e}", row.entry_id))
        })
    };
    Ok(LedgerEntry {
        entry_id: row.entry_id.clone(),
        task_id: row.task_id.clone(),
        miner_id: row.miner_id.clone(),
        kind: LedgerEntryKind::from(row.kind) as i32,
        score: row.score,
        task_weight: row.task_weight,
        rank: row.rank.unwrap_or(0).max(0) as u32,
        source_event_ids: evidence("source_event_ids", &row.source_event_ids)?,
        source_sha256: evidence("source_sha256", &row.source_sha256)?,
        corrects_entry_id: row.corrects_entry_id.clone(),
        recorded_at: Some(Timestamp { unix_ms: row.recorded_at_ms }),
        reason: row.reason.clone(),
        ranking_loss: row.ranking_loss,
    })
}

/// The test values the base model and the fixed baseline scored on a task, when measured,
/// and which way those values point.
#[derive(Debug, Clone, Copy, Default)]
pub struct References {
    /// The untuned base model's test value.
    pub base_model: Option<f64>,
    /// The fixed-recipe baseline's test value.
    pub baseline: Option<f64>,
    /// Whether a higher value is better: a reward (GRPO), not a loss.
    pub higher_is_better: bool,
}

/// A stored result, its entries and the reference measurements as the wire message.
/// Improvements are computed here, at read time: reference measurements may arrive after
/// the task was finalized, and they change no reward.
pub fn result_to_proto(
    row: &task_result::Model,
    entries: &[entry::Model],
    references: References,
) -> Result<TaskResult, DbErr> {
    Ok(TaskResult {
        task_id: row.task_id.clone(),
        winner_miner_id: row.winner_miner_id.clone(),
        finalized_because: row.finalized_because.label().to_owned(),
        finalized_at: Some(Timestamp { unix_ms: row.finalized_at_ms }),
        winner_loss: row.winner_loss,
        base_model_loss: references.base_model,
        baseline_loss: references.baseline,
        improvement_over_base: improvement(references.base_model, row.winner_loss, references.higher_is_better),
        improvement_over_baseline: improvement(references.baseline, row.winner_loss, references.higher_is_better),
        task_weight: row.task_weight,
        entries: entries.iter().map(entry_to_proto).collect::<Result<_, _>>()?,
        // The standings and confidences are the query's to add (`standings::complete`).
        ..Default::default()
    })
}

/// Relative improvement of `value` over `reference`; positive is better. A loss improves
/// by going down, a reward (`higher_is_better`) by going up.
pub fn improvement(reference: Option<f64>, value: Option<f64>, higher_is_better: bool) -> Option<f64> {
    match (reference, value) {
        (Some(reference), Some(value)) if reference > 0.0 && reference.is_finite() && value.is_finite() => {
            let gain = if higher_is_better { value - reference } else { reference - value };
            Some(gain / reference)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Improvement is relative to the reference and undefined without one.
    #[test]
    fn improvement_is_relative() {
        assert_eq!(improvement(Some(2.0), Some(1.5), false), Some(0.25));
        assert_eq!(improvement(Some(2.0), Some(3.0), false), Some(-0.5));
        assert_eq!(improvement(None, Some(1.0), false), None);
        assert_eq!(improvement(Some(0.0), Some(1.0), false), None);
    }

    /// A reward (GRPO) improves upwards: 0.2 to 0.3 is +50%, 0.2 to 0.1 is -50%.
    #[test]
    fn a_reward_improves_upwards() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(improvement(Some(0.2), Some(0.3), true), 0.5));
        assert!(close(improvement(Some(0.2), Some(0.1), true), -0.5));
        assert_eq!(improvement(Some(0.0), Some(0.5), true), None, "no relative gain over a zero reward");
    }
}
