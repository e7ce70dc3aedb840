//! `gradients audit reconcile`: every reward recomputed from the captured evidence and
//! compared with what the ledger said (its `ledger.entries` events and published weights,
//! as captured) and says now (its query API, read from its database). It runs
//! `gradients_scoring` on the captured evaluations exactly as the ledger does on its copies,
//! so any difference is a wrong reward, a changed ledger row or a changed rule.

use std::collections::{BTreeMap, BTreeSet};

use gradients_ledger::miner_result;
use gradients_proto::v1::{
    Assignment, EvaluationKind, EvaluationResult, LedgerEntry, TaskCreated, TaskType, WeightsPublished,
};
use gradients_scoring::{MinerResult, Outcome, ScoredTask, ScoringConfig};
use prost::Message;

use crate::document::RecordKind;
use crate::protocol::StoredRecord;

/// Scores and weights equal to this much are equal (they are computed, not stored exactly).
const TOLERANCE: f64 = 1e-9;

/// One disagreement between the recomputation and the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where the ledger's value came from: `ledger.entries` (captured events),
    /// `ledger API` (its database now) or `ledger.weights` (captured publication).
    pub source: String,
    /// The task (empty for weights).
    pub task_id: String,
    /// The miner.
    pub miner_id: String,
    /// What differs: `score`, `rank`, `task_weight`, `entry`, `weight`.
    pub field: String,
    /// The ledger's value.
    pub ledger: String,
    /// The recomputed value.
    pub recomputed: String,
    /// The events behind the recomputed value (evaluation ids, with their leaf indexes).
    pub evidence: Vec<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} task {} miner {}: {} is {} in the ledger, {} recomputed (evidence: {})",
            self.source,
            if self.task_id.is_empty() { "-" } else { &self.task_id },
            self.miner_id,
            self.field,
            self.ledger,
            self.recomputed,
            if self.evidence.is_empty() { "none".to_owned() } else { self.evidence.join(", ") }
        )
    }
}

/// What one miner's reward recomputes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    /// The quality score.
    pub score: f64,
    /// Its rank, when ranked.
    pub rank: Option<u32>,
    /// The task's work weight.
    pub task_weight: f64,
}

/// The captured evidence, by task.
#[derive(Debug, Default)]
pub struct Evidence {
    tasks: BTreeMap<String, TaskCreated>,
    assigned: BTreeMap<String, BTreeSet<String>>,
    evaluations: BTreeMap<String, Vec<(u64, EvaluationResult)>>,
    entries: BTreeMap<String, Vec<LedgerEntry>>,
    weights: Vec<WeightsPublished>,
}

impl Evidence {
    /// Takes one captured record (any stream; others are ignored).
    pub fn add(&mut self, stored: &StoredRecord) {
        let record = &stored.record;
        if record.kind != RecordKind::Message {
            return;
        }
        let Ok(payload) = hex::decode(&record.payload_hex) else { return };
        let subject = record.subject.as_str();
        if subject == gradients_bus::subjects::TASK_CREATED {
            if let Ok(created) = TaskCreated::decode(payload.as_slice()) {
                if let Some(task) = &created.task {
                    self.tasks.insert(task.id.clone(), created.clone());
                }
            }
        } else if subject.starts_with("gradients.assignments.") {
            if let Ok(a) = Assignment::decode(payload.as_slice()) {
                self.assigned.entry(a.task_id).or_default().insert(a.miner_id);
            }
        } else if subject.starts_with("gradients.evaluations.") {
            if let Ok(e) = EvaluationResult::decode(payload.as_slice()) {
                self.evaluations.entry(e.task_id.clone()).or_default().push((record.leaf_index, e));
            }
        } else if subject == gradients_bus::subjects::LEDGER_ENTRIES {
            if let Ok(e) = LedgerEntry::decode(payload.as_slice()) {
                self.entries.entry(e.task_id.clone()).or_default().push(e);
            }
        } else if subject == gradients_bus::subjects::LEDGER_WEIGHTS {
            if let Ok(w) = WeightsPublished::decode(payload.as_slice()) {
                self.weights.push(w);
            }
        }
    }

    /// Tasks the ledger paid (it published entries for them), oldest entry first.
    pub fn paid_tasks(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Recomputes a task's rewards from the captured evaluations with `gradients_scoring`.
    pub fn recompute(
        &self,
        task_id: &str,
        scoring: &ScoringConfig,
        models: &BTreeMap<String, u64>,
    ) -> Option<BTreeMap<String, Expected>> {
        let task = self.tasks.get(task_id)?.task.as_ref()?;
        let mut by_miner: BTreeMap<String, MinerResult> = BTreeMap::new();
        for (_, result) in self.evaluations_of(task_id) {
            if EvaluationKind::try_from(result.kind).unwrap_or_default() == EvaluationKind::MinerSubmission {
                by_miner.insert(result.miner_id.clone(), miner_result(result));
            }
        }
        for miner in self.assigned.get(task_id).into_iter().flatten() {
            by_miner.entry(miner.clone()).or_insert_with(|| MinerResult {
                miner_id: miner.clone(),
                outcome: Outcome::Failed { reason: "no evaluated submission by the deadline".into() },
                artifact_sha256: String::new(),
                submitted_at_ms: i64::MAX,
            });
        }
        let results: Vec<MinerResult> = by_miner.into_values().collect();
        let scores = gradients_scoring::score_task(scoring_type(task.r#type), &results, scoring);
        let params = models.get(&task.base_model).copied().unwrap_or(0);
        let work = gradients_scoring::task_work(task.hours_to_complete, params, &task.base_model, scoring);
        Some(
            scores
                .into_iter()
                .map(|s| (s.miner_id.clone(), Expected { score: s.score, rank: s.rank, task_weight: work }))
                .collect(),
        )
    }

    /// Compares `entries` (what `source` says the ledger paid for `task_id`) with the
    /// recomputation; corrections are compared by the entry they correct.
    pub fn compare_entries(
        &self,
        source: &str,
        task_id: &str,
        entries: &[LedgerEntry],
        expected: &BTreeMap<String, Expected>,
    ) -> Vec<Difference> {
        let evidence: Vec<String> =
            self.evaluations_of(task_id).map(|(leaf, e)| format!("{} (record {leaf})", e.evaluation_id)).collect();
        let diff = |miner: &str, field: &str, ledger: String, recomputed: String| Difference {
            source: source.to_owned(),
            task_id: task_id.to_owned(),
            miner_id: miner.to_owned(),
            field: field.to_owned(),
            ledger,
            recomputed,
            evidence: evidence.clone(),
        };
        let mut differences = Vec::new();
        let paid: BTreeMap<&str, &LedgerEntry> =
            entries.iter().filter(|e| e.corrects_entry_id.is_empty()).map(|e| (e.miner_id.as_str(), e)).collect();
        for (miner, want) in expected {
            let Some(entry) = paid.get(miner.as_str()) else {
                differences.push(diff(miner, "entry", "missing".into(), format!("score {}", want.score)));
                continue;
            };
            let score = entries
                .iter()
                .filter(|c| c.corrects_entry_id == entry.entry_id)
                .max_by_key(|c| c.recorded_at.map(|t| t.unix_ms).unwrap_or_default())
                .map(|c| c.score)
                .unwrap_or(entry.score);
            if (score - want.score).abs() > TOLERANCE {
                differences.push(diff(miner, "score", score.to_string(), want.score.to_string()));
            }
            let rank = (entry.rank > 0).then_some(entry.rank);
            if rank != want.rank {
                differences.push(diff(miner, "rank", format!("{rank:?}"), format!("{:?}", want.rank)));
            }
            if (entry.task_weight - want.task_weight).abs() > TOLERANCE {
                differences.push(diff(
                    miner,
                    "task_weight",
                    entry.task_weight.to_string(),
                    want.task_weight.to_string(),
                ));
            }
        }
        for miner in paid.keys().filter(|m| !expected.contains_key(**m)) {
            differences.push(diff(miner, "entry", "present".into(), "no evaluation or assignment".into()));
        }
        differences
    }

    /// Recomputes every captured weights publication from the recomputed rewards of the
    /// captured tasks and compares.
    pub fn compare_weights(&self, scoring: &ScoringConfig, models: &BTreeMap<String, u64>) -> (usize, Vec<Difference>) {
        let mut history = Vec::new();
        for (task_id, entries) in &self.entries {
            let (Some(expected), Some(created)) = (self.recompute(task_id, scoring, models), self.tasks.get(task_id))
            else {
                continue;
            };
            let Some(task) = &created.task else { continue };
            let finished_at_ms = entries.iter().filter_map(|e| e.recorded_at.map(|t| t.unix_ms)).min().unwrap_or(0);
            history.push(ScoredTask {
                task_id: task_id.clone(),
                task_type: scoring_type(task.r#type),
                finished_at_ms,
                work: expected.values().next().map(|e| e.task_weight).unwrap_or(0.0),
                scores: expected.iter().map(|(m, e)| (m.clone(), e.score)).collect(),
            });
        }
        let mut differences = Vec::new();
        for published in &self.weights {
            let at_ms = published.at.map(|t| t.unix_ms).unwrap_or_default();
            let want: BTreeMap<String, f64> = gradients_scoring::period_weights(&history, at_ms, scoring)
                .into_iter()
                .map(|w| (w.miner_id, w.weight))
                .collect();
            let got: BTreeMap<String, f64> = published.weights.iter().map(|w| (w.miner_id.clone(), w.weight)).collect();
            for miner in want.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
                let (g, w) = (got.get(miner).copied().unwrap_or(0.0), want.get(miner).copied().unwrap_or(0.0));
                if (g - w).abs() > TOLERANCE {
                    differences.push(Difference {
                        source: format!("ledger.weights {}", published.event_id),
                        task_id: String::new(),
                        miner_id: miner.clone(),
                        field: "weight".into(),
                        ledger: g.to_string(),
                        recomputed: w.to_string(),
                        evidence: history.iter().map(|t| format!("task {}", t.task_id)).collect(),
                    });
                }
            }
        }
        (self.weights.len(), differences)
    }

    /// The entries the ledger published for a task, as captured.
    pub fn captured_entries(&self, task_id: &str) -> &[LedgerEntry] {
        self.entries.get(task_id).map(Vec::as_slice).unwrap_or(&[])
    }

    fn evaluations_of(&self, task_id: &str) -> impl Iterator<Item = &(u64, EvaluationResult)> {
        self.evaluations.get(task_id).into_iter().flatten()
    }
}

/// The scoring crate's task type for a wire task type, as the ledger maps it.
fn scoring_type(raw: i32) -> gradients_scoring::TaskType {
    match TaskType::try_from(raw).unwrap_or_default() {
        TaskType::Chat => gradients_scoring::TaskType::Chat,
        TaskType::Dpo => gradients_scoring::TaskType::Dpo,
        TaskType::Grpo => gradients_scoring::TaskType::Grpo,
        _ => gradients_scoring::TaskType::Instruct,
    }
}

/// What a reconcile run checked and found.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Tasks whose rewards were recomputed.
    pub tasks: usize,
    /// Ledger entries compared (captured events and the ledger API's answers).
    pub entries: usize,
    /// Weights publications recomputed.
    pub weights: usize,
    /// Every disagreement.
    pub differences: Vec<Difference>,
}

/// Which tasks to reconcile.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this task.
    pub task_id: Option<String>,
    /// Only tasks paid at or after this moment (Unix ms).
    pub since_ms: i64,
}

/// Why reconcile could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The audit API failed.
    #[error(transparent)]
    Audit(#[from] crate::client::ClientError),
    /// The ledger API failed.
    #[error("ledger API: {0}")]
    Ledger(#[from] gradients_bus::api::CallError),
}

/// Reads the whole captured log, recomputes every paid task in `scope` and compares it
/// with the captured ledger events, the ledger's API (when `ledger` is given: a
/// connection allowed to call `gradients.api.ledger.*`) and the captured weights.
pub async fn reconcile(
    audit: &crate::client::AuditClient,
    ledger: Option<(&async_nats::Client, std::time::Duration)>,
    scope: &Scope,
    scoring: &ScoringConfig,
    models: &BTreeMap<String, u64>,
) -> Result<ReconcileReport, ReconcileError> {
    use gradients_bus::subjects::api;
    use gradients_proto::v1::{LedgerTaskRequest, LedgerTaskResponse};

    let mut evidence = Evidence::default();
    let mut from_leaf = 0;
    loop {
        let page = audit.records(&crate::protocol::RecordsRequest { from_leaf, since_ms: 0, limit: 0 }).await?;
        page.records.iter().for_each(|r| evidence.add(r));
        match page.next_leaf {
            Some(next) => from_leaf = next,
            None => break,
        }
    }
    let mut report = ReconcileReport::default();
    for task_id in evidence.paid_tasks() {
        if scope.task_id.as_ref().is_some_and(|only| *only != task_id) {
            continue;
        }
        let captured = evidence.captured_entries(&task_id);
        let paid_at = captured.iter().filter_map(|e| e.recorded_at.map(|t| t.unix_ms)).min().unwrap_or(0);
        if paid_at < scope.since_ms {
            continue;
        }
        let Some(expected) = evidence.recompute(&task_id, scoring, models) else {
            report.differences.push(Difference {
                source: "ledger.entries".into(),
                task_id: task_id.clone(),
                miner_id: String::new(),
                field: "task".into(),
                ledger: format!("{} entries", captured.len()),
                recomputed: "no captured tasks.created for this task".into(),
                evidence: Vec::new(),
            });
            continue;
        };
        report.tasks += 1;
        report.entries += captured.len();
        report.differences.extend(evidence.compare_entries("ledger.entries", &task_id, captured, &expected));
        if let Some((client, timeout)) = ledger {
            let request = LedgerTaskRequest { task_id: task_id.clone() };
            let answer: LedgerTaskResponse =
                gradients_bus::api::call(client, api::ledger(api::LEDGER_TASK), &request, timeout).await?;
            let entries = answer.result.map(|r| r.entries).unwrap_or_default();
            report.entries += entries.len();
            report.differences.extend(evidence.compare_entries("ledger API", &task_id, &entries, &expected));
        }
    }
    if scope.task_id.is_none() {
        let (weights, differences) = evidence.compare_weights(scoring, models);
        report.weights = weights;
        report.differences.extend(differences);
    }
    Ok(report)
}
