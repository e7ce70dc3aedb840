//! Miner weights as of a moment: the ledger's entries of the scoring's longest period,
//! grouped per task, fed to the pure `period_weights` function. Corrections replace the
//! score of the entry they correct.

use std::collections::{BTreeMap, HashMap};

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, Bus};
use gradients_config::LedgerSettings;
use gradients_proto::v1::{MinerWeight, Timestamp, WeightsPublished};
use gradients_scoring::ScoredTask;
use gradients_store::entity::ledger::{entry, task_result};
use gradients_store::sea_orm::sea_query::Query;
use gradients_store::sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use prost::Message;
use tokio_util::sync::CancellationToken;

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
    // The same window as a subquery, not a bound list of ids: a busy week must not run into
    // the database's limit on parameters (32,766 on SQLite, 65,535 on PostgreSQL).
    let in_window = Query::select()
        .column(task_result::Column::TaskId)
        .from(task_result::Entity)
        .and_where(task_result::Column::FinalizedAtMs.gt(since))
        .and_where(task_result::Column::FinalizedAtMs.lte(at_ms))
        .to_owned();
    let entries = entry::Entity::find()
        .filter(entry::Column::TaskId.in_subquery(in_window))
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

/// Publishes the weights on `gradients.ledger.weights` once per `ledger.weights_interval_ms`,
/// when they differ from what this process published last (a task finalized, or one aged
/// out of the period). Compared by value rather than by "a result finalized since the last
/// time": a finalization stamped before that time but committed after it (another replica,
/// a slow transaction) would otherwise never reach the weights. The event id is the
/// interval's start, so replicas publishing in the same interval store one event.
pub async fn publish_periodically(db: DatabaseConnection, bus: Bus, settings: LedgerSettings, stop: CancellationToken) {
    let interval = settings.weights_interval_ms.max(1) as i64;
    let mut last_published: Option<Vec<MinerWeight>> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(interval as u64)) => {}
        }
        let now = Timestamp::now().unix_ms;
        match publish_if_changed(&db, &bus, &settings, last_published.as_deref(), now, interval).await {
            Ok(Some(weights)) => last_published = Some(weights),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "publishing weights failed; will retry"),
        }
    }
}

/// Publishes the weights at `now` unless they equal `last` (or there are none yet);
/// returns what it published.
async fn publish_if_changed(
    db: &DatabaseConnection,
    bus: &Bus,
    settings: &LedgerSettings,
    last: Option<&[MinerWeight]>,
    now: i64,
    interval: i64,
) -> anyhow::Result<Option<Vec<MinerWeight>>> {
    let weights = weights_at(db, settings, now).await?;
    let unchanged = match last {
        Some(last) => last == weights.as_slice(),
        None => weights.is_empty(),
    };
    if unchanged {
        return Ok(None);
    }
    let bucket = now - now.rem_euclid(interval);
    let event_id = format!("weights-{bucket}");
    let published = WeightsPublished {
        event_id: event_id.clone(),
        period: "rolling".to_owned(),
        weights: weights.clone(),
        at: Some(Timestamp { unix_ms: now }),
    };
    let event = OutgoingEvent {
        subject: subjects::LEDGER_WEIGHTS.to_owned(),
        id: event_id,
        payload: published.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&bus.jetstream, event).await?;
    Ok(Some(weights))
}
