//! The ledger's batch path: one fetched batch holding a duplicate delivery, a poison message
//! and a task that another replica finalizes at the same moment.

use std::time::Duration;

use gradients_bus::subjects::{self, streams};
use gradients_proto::v1::{TaskType, Timestamp};
use gradients_testkit::{eventually, Backend};

use crate::common::{valid, Sandbox};

const HOUR_MS: i64 = 3_600_000;

/// Everything is published before the ledger starts, so it arrives as one batch per
/// consumer: the duplicate changes nothing, the poison message alone is dead-lettered (its
/// neighbours are recorded), and with a second finalizer racing the ledger on every task
/// each task is still written once.
#[tokio::test]
async fn a_batch_with_a_duplicate_a_poison_message_and_a_racing_replica() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend, 0, |_| {}).await;
        let now = Timestamp::now().unix_ms;
        let tasks: Vec<String> = (0..20).map(|i| format!("b{i:02}")).collect();
        for task_id in &tasks {
            sandbox.task_created(task_id, TaskType::Instruct, 1.0, now + HOUR_MS).await;
            sandbox.assign(task_id, &["a", "b"]).await;
            sandbox.evaluation(&format!("{task_id}-a"), &valid(task_id, "a", 1.0, 1.1, now)).await;
            sandbox.evaluation(&format!("{task_id}-b"), &valid(task_id, "b", 1.2, 1.3, now)).await;
        }
        // The same evaluation delivered again under another message id (JetStream keeps both).
        sandbox.evaluation("b00-a-again", &valid("b00", "a", 1.0, 1.1, now)).await;
        sandbox.publish(subjects::evaluations("b05"), "poison", b"\xff\xfe not protobuf".to_vec()).await;

        // Another replica's finalizer, finalizing whatever is ready as fast as it can.
        let racer = sandbox.finalizer();
        let stop = tokio_util::sync::CancellationToken::new();
        let race = tokio::spawn({
            let (stop, tasks) = (stop.clone(), tasks.clone());
            async move {
                let mut won = 0;
                while !stop.is_cancelled() {
                    won += racer.finalize_ready(&tasks, Timestamp::now().unix_ms).await.unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                won
            }
        });
        let mut sandbox = sandbox;
        sandbox.start_replica();
        assert_eq!(sandbox.wait_for_results(20).await, 20, "{backend}");
        // The racer keeps trying on tasks already finalized for a while: that window is the
        // thing under test (a late finalizer must not write twice), not a wait for a result.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        let racer_won = race.await.unwrap();

        assert_eq!(
            sandbox.entry_count().await,
            40,
            "{backend}: two entries per task, none doubled (racer won {racer_won})"
        );
        // The racer's entries are published by the ledger's relay on its next round.
        eventually(Duration::from_secs(10), "one event per entry", || async {
            let published = sandbox.messages_on(streams::LEDGER, subjects::LEDGER_ENTRIES).await.len();
            if published >= 40 {
                Ok(())
            } else {
                Err(format!("{published} events"))
            }
        })
        .await;
        sandbox.wait_until_settled().await;
        let entry_events = sandbox.messages_on(streams::LEDGER, subjects::LEDGER_ENTRIES).await;
        assert_eq!(entry_events.len(), 40, "{backend}: one event per entry, none repeated");
        let dead_subject = subjects::dead_letter(subjects::consumers::LEDGER_EVALUATIONS);
        eventually(Duration::from_secs(10), "the poison message in the dead letters", || async {
            let dead = sandbox.messages_on(streams::DEAD_LETTERS, &dead_subject).await.len();
            if dead >= 1 {
                Ok(())
            } else {
                Err(format!("{dead} dead letters"))
            }
        })
        .await;
        let dead = sandbox.messages_on(streams::DEAD_LETTERS, &dead_subject).await;
        assert_eq!(dead.len(), 1, "{backend}: only the poison message is dead-lettered");
        let b05 = sandbox.client.task("b05").await.unwrap().result.unwrap();
        assert_eq!(b05.winner_miner_id, "a", "{backend}: the poison's neighbours were recorded");
    }
}
