//! Dispatch end to end against a real nats-server and real PostgreSQL and SQLite, with
//! real miners built on the miner crate.

mod common;
mod security;

use std::sync::atomic::Ordering;
use std::time::Duration;

use gradients_bus::api::CallError;
use gradients_bus::subjects::{self, api, streams};
use gradients_dispatch::{DispatchError, OfferOutcome, TaskState};
use gradients_miner::identity::{domains, Identity};
use gradients_miner::{Decision, MinerClient, MinerError};
use gradients_proto::v1::{
    Assignment, ChallengeRequest, ChallengeResponse, ErrorCode, MinerCapabilities, RegisterMinerRequest,
    RegisterMinerResponse, TaskStatus, TaskStatusChanged, TaskType, Timestamp,
};
use gradients_testkit::{eventually, Backend};
use prost::Message;

use common::{accept, capable, Sandbox};

const HOUR_MS: i64 = 3_600_000;

fn refusal_code<T: std::fmt::Debug>(result: Result<T, MinerError>) -> ErrorCode {
    match result {
        Err(MinerError::Call(error)) => error.code().unwrap_or(ErrorCode::Internal),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

async fn call<R: Message + Default>(sandbox: &Sandbox, endpoint: &str, request: &impl Message) -> Result<R, CallError> {
    gradients_bus::api::call(&sandbox.bus.client, api::miners(endpoint), request, Duration::from_secs(5)).await
}

/// Registration with a wrong signature, a replayed challenge or a key that is not
/// admitted is refused; a heartbeat from an unregistered miner is refused too.
#[tokio::test]
async fn registration_refuses_wrong_signature_replay_and_unknown_key() {
    let admitted = Identity::generate();
    let admitted_hex = hex::encode(admitted.public_key());
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |s| s.dispatch.allowed_miner_keys = vec![admitted_hex]).await;

    // The admitted key registers, by the book.
    let challenge: ChallengeResponse = call(&sandbox, api::MINERS_CHALLENGE, &ChallengeRequest {}).await.unwrap();
    let mut request = RegisterMinerRequest {
        public_key: admitted.public_key().to_vec(),
        capabilities: Some(capable()),
        nonce: challenge.nonce.clone(),
        signature: Vec::new(),
    };
    request.signature = admitted.sign_message(domains::REGISTER, &request, |r| r.signature.clear());
    let registered: RegisterMinerResponse = call(&sandbox, api::MINERS_REGISTER, &request).await.unwrap();
    assert_eq!(registered.miner.unwrap().miner_id, admitted.id());

    // The same signed request again: the challenge was used up.
    let replay = call::<RegisterMinerResponse>(&sandbox, api::MINERS_REGISTER, &request).await.unwrap_err();
    assert_eq!(replay.code(), Some(ErrorCode::ChallengeInvalid));

    // A fresh challenge signed by another key than the one presented.
    let challenge: ChallengeResponse = call(&sandbox, api::MINERS_CHALLENGE, &ChallengeRequest {}).await.unwrap();
    let mut forged = RegisterMinerRequest { nonce: challenge.nonce, signature: Vec::new(), ..request.clone() };
    forged.signature = Identity::generate().sign_message(domains::REGISTER, &forged, |r| r.signature.clear());
    let wrong = call::<RegisterMinerResponse>(&sandbox, api::MINERS_REGISTER, &forged).await.unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::InvalidSignature));

    // A key the market does not admit.
    let stranger = MinerClient::new(sandbox.bus.clone(), Identity::generate(), Duration::from_secs(5));
    assert_eq!(refusal_code(stranger.register(capable()).await), ErrorCode::UnknownMiner);
    assert_eq!(refusal_code(stranger.heartbeat(0).await), ErrorCode::UnknownMiner);

    // Only the admitted miner is listed.
    let listed: gradients_proto::v1::ListMinersResponse =
        call(&sandbox, api::MINERS_LIST, &gradients_proto::v1::ListMinersRequest {}).await.unwrap();
    assert_eq!(listed.miners.len(), 1);
}

/// A task is offered to exactly the eligible live miners: not to one of the wrong type,
/// not to one too small for the model, not to one that stopped heartbeating.
#[tokio::test]
async fn a_task_reaches_exactly_the_eligible_live_miners() {
    for backend in Backend::ALL {
        // Heartbeats every 200 ms against a 2 s TTL: slack for a loaded machine.
        let sandbox = Sandbox::start(backend, 1, |s| s.dispatch.heartbeat_ttl_ms = 2_000).await;
        let first = sandbox.miner(capable(), accept()).await;
        let second = sandbox.miner(capable(), accept()).await;
        let wrong_type =
            sandbox.miner(MinerCapabilities { task_types: vec![TaskType::Grpo as i32], ..capable() }, accept()).await;
        let too_small = sandbox.miner(MinerCapabilities { max_model_params: 1_000, ..capable() }, accept()).await;
        let silent = sandbox.miner(capable(), accept()).await;
        silent.stop.cancel(); // stops heartbeating and answering
                              // Once its heartbeat lapses dispatch lists only the other four as live.
        eventually(Duration::from_secs(10), "the silent miner no longer live", || async {
            let listed: Result<gradients_proto::v1::ListMinersResponse, _> = gradients_bus::api::call(
                &sandbox.bus.client,
                api::miners(api::MINERS_LIST),
                &gradients_proto::v1::ListMinersRequest {},
                Duration::from_secs(2),
            )
            .await;
            let live: Vec<String> = listed.map_err(|e| e.to_string())?.miners.into_iter().map(|m| m.miner_id).collect();
            if live.len() == 4 && !live.contains(&silent.id()) {
                Ok(())
            } else {
                Err(format!("live: {live:?}"))
            }
        })
        .await;

        sandbox.task("t-eligible", TaskType::Instruct, gradients_proto::v1::Timestamp::now().unix_ms + HOUR_MS).await;
        sandbox.wait_for_state("t-eligible", TaskState::Training).await;
        let mut offered: Vec<String> = sandbox.offers("t-eligible").await.into_iter().map(|o| o.miner_id).collect();
        offered.sort();
        let mut expected = vec![first.id(), second.id()];
        expected.sort();
        assert_eq!(offered, expected, "{backend}: only the eligible live miners get offers");
        for miner in [&wrong_type, &too_small, &silent] {
            assert!(!offered.contains(&miner.id()));
        }

        // Each eligible miner receives its signed assignment, with the cohort size.
        for miner in [&first, &second] {
            let assignment = miner
                .client
                .next_assignment(&sandbox.dispatch_key, Duration::from_secs(5))
                .await
                .unwrap()
                .expect("assigned");
            assert_eq!(assignment.task_id, "t-eligible");
            assert_eq!(assignment.miner_id, miner.id());
            assert_eq!(assignment.cohort_size, 2);
        }
        let events = sandbox.messages_on(streams::TASKS, &subjects::task_status("t-eligible")).await;
        let moves: Vec<(i32, i32)> = events
            .iter()
            .map(|m| TaskStatusChanged::decode(m.payload.as_ref()).unwrap())
            .map(|e| (e.from, e.to))
            .collect();
        assert_eq!(
            moves,
            [
                (TaskStatus::Accepted as i32, TaskStatus::Dispatching as i32),
                (TaskStatus::Dispatching as i32, TaskStatus::Training as i32)
            ]
        );
    }
}

/// Accept, decline and timeout are each recorded; with too few acceptances the task is
/// offered again in later rounds and then fails with a reason; nothing is assigned.
#[tokio::test]
async fn too_few_acceptances_retry_then_fail_with_a_reason() {
    let sandbox = Sandbox::start(Backend::Postgres, 1, |s| {
        s.dispatch.min_miners_per_task = 2;
        s.dispatch.offer_rounds = 3;
    })
    .await;
    let accepting = sandbox.miner(capable(), accept()).await;
    let declining = sandbox.miner(capable(), Some(Decision::Decline { reason: "busy with a 70B job".into() })).await;
    let unanswering = sandbox.miner(capable(), None).await;

    sandbox.task("t-thin", TaskType::Instruct, Timestamp::now().unix_ms + HOUR_MS).await;
    let failed = sandbox.wait_for_state("t-thin", TaskState::Failed).await;
    assert_eq!(failed.reason, "only 1 of the 2 miners needed accepted after 3 rounds of offers");
    let outcomes: std::collections::BTreeMap<String, (OfferOutcome, String)> =
        sandbox.offers("t-thin").await.into_iter().map(|o| (o.miner_id, (o.outcome, o.reason))).collect();
    assert_eq!(outcomes[&accepting.id()].0, OfferOutcome::Accepted);
    assert_eq!(outcomes[&declining.id()], (OfferOutcome::Declined, "busy with a 70B job".to_owned()));
    assert_eq!(outcomes[&unanswering.id()].0, OfferOutcome::Timeout);
    assert_eq!(outcomes.len(), 3, "each miner was offered once, whatever the rounds");

    assert!(sandbox.assignments().await.is_empty());
    let events = sandbox.messages_on(streams::TASKS, &subjects::task_status("t-thin")).await;
    let last = TaskStatusChanged::decode(events.last().unwrap().payload.as_ref()).unwrap();
    assert_eq!(last.to, TaskStatus::Failed as i32);
    assert_eq!(last.reason, failed.reason);
}

/// Two dispatch replicas over one stream of tasks: every (task, miner) is assigned
/// exactly once, in the database and on the stream.
#[tokio::test]
async fn two_replicas_assign_every_task_miner_pair_once() {
    for backend in Backend::ALL {
        // Every miner accepts; what is counted is that each acceptance becomes one
        // assignment. The sandbox's short offer timeout let a reply delayed by a loaded
        // machine count as a timeout (23 of 24 assignments once), which is not this test's
        // subject.
        let sandbox = Sandbox::start(backend, 2, |s| s.dispatch.offer_timeout_ms = 15_000).await;
        let miners = [
            sandbox.miner(capable(), accept()).await,
            sandbox.miner(capable(), accept()).await,
            sandbox.miner(capable(), accept()).await,
        ];
        let tasks = 8;
        for t in 0..tasks {
            sandbox.task(&format!("t-{t}"), TaskType::Instruct, Timestamp::now().unix_ms + HOUR_MS).await;
        }
        for t in 0..tasks {
            sandbox.wait_for_state(&format!("t-{t}"), TaskState::Training).await;
        }
        sandbox.wait_until_settled().await;
        let rows = sandbox.assignments().await;
        assert_eq!(rows.len(), tasks * miners.len(), "{backend}");
        let mut published = 0;
        for miner in &miners {
            let messages = sandbox.messages_on(streams::ASSIGNMENTS, &subjects::assignments(&miner.id())).await;
            let mut ids: Vec<String> =
                messages.iter().map(|m| Assignment::decode(m.payload.as_ref()).unwrap().task_id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), messages.len(), "{backend}: no task assigned twice to one miner");
            published += messages.len();
        }
        assert_eq!(published, tasks * miners.len(), "{backend}");
    }
}

/// Dispatch killed after the offers were answered and before assigning: restarted, it
/// assigns the task to the miners that accepted, once, and nothing is stuck.
#[tokio::test]
async fn killed_mid_offer_and_restarted_assigns_once() {
    let mut sandbox = Sandbox::start(Backend::Postgres, 1, |s| s.dispatch.faults.crash_after_offers = true).await;
    let miners = [sandbox.miner(capable(), accept()).await, sandbox.miner(capable(), accept()).await];
    sandbox.task("t-crash", TaskType::Instruct, Timestamp::now().unix_ms + HOUR_MS).await;
    let ended = sandbox.wait_for_exit(0).await;
    assert!(matches!(ended, Err(DispatchError::FaultInjected("crash_after_offers"))), "{ended:?}");
    assert!(sandbox.assignments().await.is_empty(), "killed before assigning");

    sandbox.settings.dispatch.faults.crash_after_offers = false;
    sandbox.start_replica().await;
    sandbox.wait_for_state("t-crash", TaskState::Training).await;
    sandbox.wait_until_settled().await;
    assert_eq!(sandbox.assignments().await.len(), 2);
    for miner in &miners {
        assert_eq!(sandbox.messages_on(streams::ASSIGNMENTS, &subjects::assignments(&miner.id())).await.len(), 1);
        assert_eq!(sandbox.offers("t-crash").await.iter().filter(|o| o.miner_id == miner.id()).count(), 1);
    }
}

/// A miner reads its granted train split and nothing else: not the test split, not
/// another task's data, not with another miner's assignment, not with a forged grant.
/// When the deadline passes the task is closed for submissions.
#[tokio::test]
async fn grants_are_checked_and_deadlines_close_tasks() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let alice = sandbox.miner(capable(), accept()).await;
    let task = sandbox.task("t-grant", TaskType::Instruct, Timestamp::now().unix_ms + 4_000).await;
    let assignment =
        alice.client.next_assignment(&sandbox.dispatch_key, Duration::from_secs(10)).await.unwrap().expect("assigned");
    let train = alice.client.fetch_train(&assignment).await.expect("the granted split");
    assert!(std::str::from_utf8(&train).unwrap().contains("train row of t-grant"));
    assert_eq!(train.len() as u64, task.splits.as_ref().unwrap().train.as_ref().unwrap().object.as_ref().unwrap().size);

    let test_split = task.splits.as_ref().unwrap().test.as_ref().unwrap().object.clone().unwrap();
    assert_eq!(refusal_code(alice.client.fetch_object(&assignment, &test_split).await), ErrorCode::AccessDenied);

    let bob = sandbox.miner(capable(), accept()).await;
    let other = sandbox.task("t-other", TaskType::Instruct, Timestamp::now().unix_ms + HOUR_MS).await;
    let others_train = other.splits.as_ref().unwrap().train.as_ref().unwrap().object.clone().unwrap();
    assert_eq!(refusal_code(alice.client.fetch_object(&assignment, &others_train).await), ErrorCode::AccessDenied);
    // Bob holds alice's assignment (intercepted): his requests are not signed by alice.
    assert_eq!(refusal_code(bob.client.fetch_train(&assignment).await), ErrorCode::InvalidSignature);
    // Alice edits her grant to name the test split: dispatch's signature no longer holds.
    let mut forged = assignment.clone();
    forged.grant.as_mut().unwrap().train = Some(test_split);
    assert_eq!(refusal_code(alice.client.fetch_train(&forged).await), ErrorCode::InvalidSignature);

    let closed = sandbox.wait_for_state("t-grant", TaskState::Closed).await;
    assert_eq!(closed.reason, "deadline passed: closed for submissions");
    let events = sandbox.messages_on(streams::TASKS, &subjects::task_status("t-grant")).await;
    let last = TaskStatusChanged::decode(events.last().unwrap().payload.as_ref()).unwrap();
    assert_eq!((last.from, last.to), (TaskStatus::Training as i32, TaskStatus::Evaluating as i32));
}

/// A miner's load reaches dispatch as soon as it changes, not a heartbeat interval later:
/// a miner that has just finished a task is offered the next one.
#[tokio::test]
async fn a_changed_load_is_reported_at_once() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let client = MinerClient::new(sandbox.bus.clone(), Identity::generate(), Duration::from_secs(5));
    client.register(capable()).await.expect("registered");
    let load = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    {
        let (client, load, stop) = (client.clone(), load.clone(), stop.clone());
        // An hour between regular beats: only a change of load can explain a second one.
        tokio::spawn(async move {
            client.heartbeat_loop(Duration::from_secs(3600), move || load.load(Ordering::SeqCst), stop).await
        });
    }
    let listed_load = || async {
        let listed: gradients_proto::v1::ListMinersResponse =
            call(&sandbox, api::MINERS_LIST, &gradients_proto::v1::ListMinersRequest {})
                .await
                .map_err(|e| e.to_string())?;
        listed
            .miners
            .iter()
            .find(|m| m.miner_id == client.miner_id())
            .map(|m| m.active_tasks)
            .ok_or("not listed".to_owned())
    };
    for expected in [0, 1, 0] {
        load.store(expected, Ordering::SeqCst);
        eventually(Duration::from_secs(5), "the new load listed", || async {
            match listed_load().await {
                Ok(listed) if listed == expected => Ok(()),
                other => Err(format!("{other:?}, expected {expected}")),
            }
        })
        .await;
    }
    stop.cancel();
}
