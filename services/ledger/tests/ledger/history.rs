//! Queries that must not grow with history: the deadline sweep and the weights, with more
//! finalized tasks in the store than either database accepts as bound parameters.

use gradients_proto::v1::{TaskType, Timestamp};
use gradients_store::entity::ledger::{task, task_result, FinalizedBecause, TaskType as StoredType};
use gradients_store::sea_orm::ActiveValue::Set;
use gradients_store::sea_orm::{EntityTrait, TransactionTrait};
use gradients_testkit::Backend;

use crate::common::Sandbox;

/// Finalized tasks seeded straight into the store, past SQLite's 32,766 and PostgreSQL's
/// 65,535 bound parameters: the sweep used to bind every overdue task id.
const HISTORY: u64 = 100_000;
/// Rows per seeding statement (6 or 7 parameters each, well inside both limits).
const CHUNK: u64 = 2_000;

/// With 100,000 finalized tasks in the store, the ledger's sweep still finalizes a new
/// overdue task, and the weights over a window holding all of them are still computed.
#[tokio::test]
async fn a_long_history_does_not_stop_the_sweep_or_the_weights() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend, 1, |_| {}).await;
        let now = Timestamp::now().unix_ms;
        for start in (0..HISTORY).step_by(CHUNK as usize) {
            let ids: Vec<String> = (start..(start + CHUNK).min(HISTORY)).map(|i| format!("old-{i:06}")).collect();
            let tasks = ids.iter().map(|id| task::ActiveModel {
                task_id: Set(id.clone()),
                task_type: Set(StoredType::Instruct),
                base_model: Set("tiny-1m".to_owned()),
                hours_to_complete: Set(1.0),
                deadline_ms: Set(now - 3_600_000),
                recorded_at_ms: Set(now - 7_200_000),
            });
            let results = ids.iter().map(|id| task_result::ActiveModel {
                task_id: Set(id.clone()),
                task_type: Set(StoredType::Instruct),
                winner_miner_id: Set(String::new()),
                finalized_because: Set(FinalizedBecause::Deadline),
                finalized_at_ms: Set(now - 1_800_000),
                winner_loss: Set(None),
                task_weight: Set(2.0),
            });
            // One transaction per chunk, so the running sweep never sees a seeded task unfinalized.
            let txn = sandbox.store.begin().await.unwrap();
            task::Entity::insert_many(tasks).exec(&txn).await.unwrap();
            task_result::Entity::insert_many(results).exec(&txn).await.unwrap();
            txn.commit().await.unwrap();
        }

        sandbox.assign("fresh", &["m1"]).await;
        sandbox.wait_for_rows(1, 0).await;
        sandbox.task_created("fresh", TaskType::Instruct, 1.0, now - 1).await;
        assert_eq!(sandbox.wait_for_results(HISTORY + 1).await, HISTORY + 1, "{backend}: the new task is finalized");
        let fresh = sandbox.client.task("fresh").await.unwrap().result.unwrap();
        assert_eq!(fresh.finalized_because, "deadline", "{backend}");
        assert_eq!(fresh.entries.len(), 1, "{backend}: the silent miner gets its entry");

        // Every seeded result lies inside the weights' longest window; nobody earned anything.
        let weights = sandbox.client.weights(0).await.unwrap();
        assert!(weights.weights.is_empty(), "{backend}: {weights:?}");
    }
}
