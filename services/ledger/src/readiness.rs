//! Which tasks can be finalized, for any number of tasks in one statement: for each task,
//! whether it already has a result, its deadline, its cohort size, how many miners were
//! assigned and how many of those have a miner evaluation. The per-event path asks it for
//! one task, the batch path for every task a batch touched.

use gradients_proto::v1::EvaluationKind;
use gradients_store::sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};

use crate::record::kind_label;

/// What the ledger knows of one task it has recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The task.
    pub task_id: String,
    /// Whether its result row exists (it was finalized, by anyone).
    pub finalized: bool,
    /// Its deadline, Unix milliseconds.
    pub deadline_ms: i64,
    /// The cohort size its assignments state (0 before any assignment).
    pub cohort: i64,
    /// Miners assigned so far.
    pub assigned: i64,
    /// Assigned miners with a miner evaluation recorded.
    pub evaluated: i64,
}

impl TaskState {
    /// Every miner of a known, fully assigned cohort has been evaluated.
    pub fn complete(&self) -> bool {
        self.cohort > 0 && self.assigned >= self.cohort && self.evaluated >= self.assigned
    }

    /// The deadline and the grace after it have passed at `now_ms`.
    pub fn expired(&self, now_ms: i64, grace_ms: u64) -> bool {
        now_ms >= self.deadline_ms.saturating_add(grace_ms as i64)
    }
}

/// The state of each recorded task among `task_ids` (unknown ids are left out), in one
/// statement whatever the number of ids.
pub async fn task_states(db: &impl ConnectionTrait, task_ids: &[String]) -> Result<Vec<TaskState>, DbErr> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let mut values: Vec<Value> = vec![kind_label(EvaluationKind::MinerSubmission).into()];
    values.extend(task_ids.iter().map(|id| Value::from(id.clone())));
    let ids = (2..=values.len()).map(|n| placeholder(backend, n)).collect::<Vec<_>>().join(", ");
    let kind = placeholder(backend, 1);
    let sql = format!(
        "SELECT t.task_id, t.deadline_ms, \
           EXISTS (SELECT 1 FROM ledger_task_results r WHERE r.task_id = t.task_id) AS finalized, \
           COALESCE((SELECT MAX(a.cohort_size) FROM ledger_assignments a WHERE a.task_id = t.task_id), 0) AS cohort, \
           (SELECT COUNT(*) FROM ledger_assignments a WHERE a.task_id = t.task_id) AS assigned, \
           (SELECT COUNT(*) FROM ledger_assignments a WHERE a.task_id = t.task_id AND EXISTS ( \
              SELECT 1 FROM ledger_evaluations e \
              WHERE e.task_id = a.task_id AND e.miner_id = a.miner_id AND e.kind = {kind})) AS evaluated \
         FROM ledger_tasks t WHERE t.task_id IN ({ids})"
    );
    let rows = db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    rows.iter()
        .map(|row| {
            Ok(TaskState {
                task_id: row.try_get("", "task_id")?,
                // SQLite answers EXISTS with an integer, PostgreSQL with a boolean.
                finalized: row
                    .try_get::<bool>("", "finalized")
                    .or_else(|_| row.try_get::<i64>("", "finalized").map(|n| n != 0))?,
                deadline_ms: row.try_get("", "deadline_ms")?,
                cohort: row.try_get("", "cohort")?,
                assigned: row.try_get("", "assigned")?,
                evaluated: row.try_get("", "evaluated")?,
            })
        })
        .collect()
}

/// The `n`th (1-based) bind parameter in the backend's syntax.
fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState;

    fn state(cohort: i64, assigned: i64, evaluated: i64) -> TaskState {
        TaskState { task_id: "t".into(), finalized: false, deadline_ms: 1_000, cohort, assigned, evaluated }
    }

    /// Complete means a known cohort, all of it assigned, every assigned miner evaluated.
    #[test]
    fn completeness() {
        assert!(state(2, 2, 2).complete());
        assert!(!state(2, 2, 1).complete());
        assert!(!state(3, 2, 2).complete(), "a miner of the cohort is not assigned yet");
        assert!(!state(0, 0, 0).complete(), "no assignment yet");
        assert!(state(0, 0, 0).expired(1_500, 500));
        assert!(!state(0, 0, 0).expired(1_499, 500));
    }
}
