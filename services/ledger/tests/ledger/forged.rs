//! Assignments the ledger must not trust: published straight onto the bus without
//! dispatch's signature, signed by another key, or dispatch's own replayed on another
//! miner's subject. Each is refused, nothing of it recorded, and each is kept as an alarm
//! on the dead-letter subject with its reason.

use std::time::Duration;

use gradients_bus::subjects::{self, consumers, streams};
use gradients_bus::worker::DEAD_LETTER_REASON;
use gradients_miner::identity::{domains, Identity};
use gradients_proto::v1::{Assignment, TaskType, Timestamp};
use gradients_store::entity::ledger::assignment;
use gradients_store::sea_orm::EntityTrait;
use gradients_testkit::{eventually, Backend};
use prost::Message;

use crate::common::Sandbox;

/// Forged assignments are refused with an alarm; the genuine one is recorded.
#[tokio::test]
async fn assignments_not_signed_by_dispatch_are_refused_as_alarms() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend, 1, |_| {}).await;
        sandbox.task_created("t-forged", TaskType::Instruct, 1.0, Timestamp::now().unix_ms + 3_600_000).await;
        let forged = |miner: &str| Assignment {
            assignment_id: format!("t-forged/{miner}"),
            task_id: "t-forged".into(),
            miner_id: miner.into(),
            cohort_size: 1,
            ..Default::default()
        };
        // Unsigned.
        let unsigned = forged("mallory");
        sandbox.publish(subjects::assignments("mallory"), "f1", unsigned.encode_to_vec()).await;
        // Signed by a key that is not dispatch's.
        let mut other_key = forged("mallet");
        other_key.signature =
            Identity::generate().sign_message(domains::ASSIGNMENT, &other_key, |a| a.signature.clear());
        sandbox.publish(subjects::assignments("mallet"), "f2", other_key.encode_to_vec()).await;
        // Dispatch's genuine assignment of alice, replayed on mallory's subject.
        let mut genuine = forged("alice");
        genuine.signature = sandbox.dispatch.sign_message(domains::ASSIGNMENT, &genuine, |a| a.signature.clear());
        sandbox.publish(subjects::assignments("mallory"), "f3", genuine.encode_to_vec()).await;
        // And the genuine one where it belongs.
        sandbox.publish(subjects::assignments("alice"), "g1", genuine.encode_to_vec()).await;

        let dead_letters = subjects::dead_letter(consumers::LEDGER_ASSIGNMENTS);
        let alarms = eventually(Duration::from_secs(10), "three dead letters", || async {
            let alarms = sandbox.messages_on(streams::DEAD_LETTERS, &dead_letters).await;
            if alarms.len() >= 3 {
                Ok(alarms)
            } else {
                Err(format!("{} dead letters", alarms.len()))
            }
        })
        .await;
        let reasons: Vec<String> = alarms
            .iter()
            .map(|m| {
                m.headers.as_ref().and_then(|h| h.get(DEAD_LETTER_REASON)).map(|v| v.to_string()).unwrap_or_default()
            })
            .collect();
        assert_eq!(reasons.len(), 3, "{backend}: {reasons:?}");
        assert_eq!(reasons.iter().filter(|r| r.contains("not signed by dispatch")).count(), 2, "{reasons:?}");
        assert_eq!(reasons.iter().filter(|r| r.contains("came on")).count(), 1, "{reasons:?}");

        sandbox.wait_for_rows(1, 0).await;
        sandbox.wait_until_settled().await;
        let rows = assignment::Entity::find().all(&sandbox.store).await.unwrap();
        let miners: Vec<&str> = rows.iter().map(|r| r.miner_id.as_str()).collect();
        assert_eq!(miners, ["alice"], "{backend}: only dispatch's assignment is recorded");
    }
}
