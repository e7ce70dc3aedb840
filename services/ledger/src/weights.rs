//! Miner weights as of a moment: the ledger's entries of the scoring's longest period,
//! grouped per task, fed to the pure `period_weights` function. Corrections replace the
//! score of the entry they correct.

use std::collections::{BTreeMap, HashMap};

use gradients_config::LedgerSettings;
use gradients_proto::v1::MinerWeight;
use gradients_scoring::ScoredTask;
use gradients_store::entity::ledger::{entry, task_result};
use gradients_store::sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::convert;

const DAY_MS: f64 = 86_400_000.0;

/// Weights at `at_ms`, summing to 1 (empty when nobody earned anything).
pub async fn weights_at(
    db: &impl ConnectionTrait,
    settings: &LedgerSettings,
    at_ms: i64,
) -> Result<Vec<MinerWeight>, DbErr> {
    let longest_days = settings.scoring.periods.iter().map(|p| p.days).fold(0.0, f64::max);
    let since = at_ms - (longest_days * DAY_MS) as i64;
    let results = task_result::Entity::find()
        .filter(task_result::Column::FinalizedAtMs.gt(since))
        .filter(task_result::Column::FinalizedAtMs.lte(at_ms))
        .all(db)
        .await?;
    if results.is_empty() {
        return Ok(Vec::new());
    }
    let entries = entry::Entity::find()
        .filter(entry::Column::TaskId.is_in(results.iter().map(|r| r.task_id.clone())))
        .filter(entry::Column::RecordedAtMs.lte(at_ms))
        .all(db)
        .await?;
    // The newest correction of an entry decides its score.
    let mut corrected: HashMap<&str, &entry::Model> = HashMap::new();
    for row in entries.iter().filter(|e| !e.corrects_entry_id.is_empty()) {
        let newer =
            corrected.get(row.corrects_entry_id.as_str()).is_none_or(|c| c.recorded_at_ms <= row.recorded_at_ms);
        if newer {
            corrected.insert(row.corrects_entry_id.as_str(), row);
        }
    }
    let mut scores: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
    for row in entries.iter().filter(|e| e.corrects_entry_id.is_empty()) {
        let score = corrected.get(row.entry_id.as_str()).map(|c| c.score).unwrap_or(row.score);
        scores.entry(row.task_id.as_str()).or_default().push((row.miner_id.clone(), score));
    }
    let history: Vec<ScoredTask> = results
        .iter()
        .map(|r| ScoredTask {
            task_id: r.task_id.clone(),
            task_type: convert::scoring_task_type(&r.task_type),
            finished_at_ms: r.finalized_at_ms,
            work: r.task_weight,
            scores: scores.remove(r.task_id.as_str()).unwrap_or_default(),
        })
        .collect();
    Ok(gradients_scoring::period_weights(&history, at_ms, &settings.scoring)
        .into_iter()
        .map(|w| MinerWeight { miner_id: w.miner_id, weight: w.weight })
        .collect())
}
