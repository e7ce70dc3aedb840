//! Intake killed between storing a task and publishing its event recovers on restart and
//! publishes the event exactly once (the outbox).

use std::time::Duration;

use gradients_bus::subjects::{self, streams};
use gradients_intake::IntakeError;
use gradients_proto::v1::TaskStatus;
use gradients_testkit::Backend;

use crate::common::{instruct_rows, Sandbox};

/// The fault point stops intake after the commit and before any publish: the task is
/// stored, nothing is announced. A restarted intake announces it once, and a client's
/// retry then gets the stored task, not a second one.
#[tokio::test]
async fn killed_between_store_and_publish_announces_once_after_restart() {
    for backend in Backend::ALL {
        let mut sandbox = Sandbox::start_with(backend, |s| {
            s.intake.faults.crash_after_store = true;
            // Only a wake-up or a restart publishes: the timer must not race the "kill".
            s.intake.outbox_poll_ms = 600_000;
        })
        .await;
        let request = sandbox.upload_request("crashy", &instruct_rows(40)).await;
        // A short timeout: the killed intake will never answer this one.
        let client = gradients_intake::client::IntakeClient::new(
            sandbox.bus.clone(),
            sandbox.customer.clone(),
            Duration::from_secs(2),
        );
        let pending = tokio::spawn({
            let request = request.clone();
            async move { client.submit(&request).await }
        });

        let ended = sandbox.wait_for_intake_exit().await;
        assert!(matches!(ended, Err(IntakeError::FaultInjected("crash_after_store"))), "{backend}: {ended:?}");
        assert!(pending.await.unwrap().is_err(), "a killed intake does not answer");
        assert_eq!(sandbox.task_stream_messages().await, 0, "{backend}: nothing published before the crash");

        sandbox.settings.intake.faults.crash_after_store = false;
        sandbox.start_intake().await;
        let created = sandbox.wait_for_messages(streams::TASKS, subjects::TASK_CREATED, 1).await;
        assert_eq!(created.len(), 1, "{backend}: announced after restart");

        // The client retries its request: same task, still one event.
        let retry = sandbox.client.submit(&sandbox.upload_request("crashy", &instruct_rows(40)).await).await.unwrap();
        assert!(!retry.created);
        let task = retry.task.unwrap();
        assert_eq!(task.status, TaskStatus::Accepted as i32);
        sandbox.wait_until_settled().await;
        assert_eq!(
            sandbox.messages_on(streams::TASKS, subjects::TASK_CREATED).await.len(),
            1,
            "{backend}: exactly once"
        );
        assert_eq!(sandbox.messages_on(streams::TASKS, &subjects::task_status(&task.id)).await.len(), 1);

        // A graceful stop and start publishes nothing again.
        sandbox.stop_intake().await.unwrap();
        sandbox.start_intake().await;
        sandbox.wait_until_settled().await;
        assert_eq!(sandbox.task_stream_messages().await, 2, "{backend}: created + accepted, nothing more");
    }
}
