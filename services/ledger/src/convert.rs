//! Between stored rows, wire messages and the scoring crate's types.

use gradients_proto::v1::{LedgerEntry, LedgerEntryKind, TaskResult, TaskType, Timestamp};
use gradients_store::entity::ledger::{entry, task_result};

/// The scoring crate's task type for a stored type label.
pub fn scoring_task_type(label: &str) -> gradients_scoring::TaskType {
    match TaskType::from_label(label) {
        Some(TaskType::Chat) => gradients_scoring::TaskType::Chat,
        Some(TaskType::Dpo) => gradients_scoring::TaskType::Dpo,
        Some(TaskType::Grpo) => gradients_scoring::TaskType::Grpo,
        _ => gradients_scoring::TaskType::Instruct,
    }
}

/// The stored name of an entry kind (`task_score`).
pub fn entry_kind_label(kind: LedgerEntryKind) -> String {
    kind.as_str_name().to_ascii_lowercase()
}

/// A stored entry as its wire message.
pub fn entry_to_proto(row: &entry::Model) -> LedgerEntry {
    LedgerEntry {
        entry_id: row.entry_id.clone(),
        task_id: row.task_id.clone(),
        miner_id: row.miner_id.clone(),
        kind: LedgerEntryKind::from_str_name(&row.kind.to_ascii_uppercase()).unwrap_or_default() as i32,
        score: row.score,
        task_weight: row.task_weight,
        rank: row.rank.unwrap_or(0).max(0) as u32,
        source_event_ids: serde_json::from_str(&row.source_event_ids).unwrap_or_default(),
        source_sha256: serde_json::from_str(&row.source_sha256).unwrap_or_default(),
        corrects_entry_id: row.corrects_entry_id.clone(),
        recorded_at: Some(Timestamp { unix_ms: row.recorded_at_ms }),
        reason: row.reason.clone(),
        ranking_loss: row.ranking_loss,
    }
}

/// A stored result and its entries as the wire message.
pub fn result_to_proto(row: &task_result::Model, entries: &[entry::Model]) -> TaskResult {
    TaskResult {
        task_id: row.task_id.clone(),
        winner_miner_id: row.winner_miner_id.clone(),
        finalized_because: row.finalized_because.clone(),
        finalized_at: Some(Timestamp { unix_ms: row.finalized_at_ms }),
        winner_loss: row.winner_loss,
        base_model_loss: row.base_model_loss,
        baseline_loss: row.baseline_loss,
        improvement_over_base: row.improvement_over_base,
        improvement_over_baseline: row.improvement_over_baseline,
        task_weight: row.task_weight,
        entries: entries.iter().map(entry_to_proto).collect(),
    }
}
