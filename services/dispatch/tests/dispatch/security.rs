//! Attacks on dispatch, each reproduced as a hostile client would send it (written from the
//! wire contract), against a real nats-server and database: replayed and future-dated
//! signed messages (heartbeats, deregistrations, data requests, offer replies), malformed
//! miner ids, an anonymous flood of challenges, and a task cancelled while its offers are
//! out.

use std::time::Duration;

use gradients_bus::api::CallError;
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{self, api, kv, streams};
use gradients_dispatch::{OfferOutcome, TaskState};
use gradients_miner::identity::{domains, Identity};
use gradients_miner::{Decision, MinerClient};
use gradients_proto::v1::{
    ChallengeRequest, ChallengeResponse, DeregisterMinerRequest, DeregisterMinerResponse, ErrorCode, Heartbeat,
    HeartbeatResponse, ListMinersRequest, ListMinersResponse, Offer, OfferReply, RegisterMinerRequest,
    RegisterMinerResponse, TaskStatus, TaskStatusChanged, TaskType, Timestamp, TrainDataRequest, TrainDataResponse,
};
use gradients_testkit::{eventually, Backend};
use prost::Message;

use crate::common::{accept, capable, Policy, Sandbox};

async fn call<R: Message + Default>(sandbox: &Sandbox, endpoint: &str, request: &impl Message) -> Result<R, CallError> {
    gradients_bus::api::call(&sandbox.bus.client, api::miners(endpoint), request, Duration::from_secs(5)).await
}

/// The code of a refused call, which must be a typed refusal (not a timeout).
fn code<T: std::fmt::Debug>(result: Result<T, CallError>) -> ErrorCode {
    match result {
        Err(error @ CallError::Service(_)) => error.code().unwrap_or(ErrorCode::Internal),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

fn heartbeat(identity: &Identity, registration: &[u8], at_ms: i64) -> Heartbeat {
    let mut beat = Heartbeat {
        miner_id: identity.id(),
        active_tasks: 0,
        at: Some(Timestamp { unix_ms: at_ms }),
        signature: Vec::new(),
        registration: registration.to_vec(),
    };
    beat.signature = identity.sign_message(domains::HEARTBEAT, &beat, |b| b.signature.clear());
    beat
}

fn deregistration(identity: &Identity, registration: &[u8]) -> DeregisterMinerRequest {
    let mut request = DeregisterMinerRequest {
        miner_id: identity.id(),
        at: Some(Timestamp::now()),
        signature: Vec::new(),
        registration: registration.to_vec(),
    };
    request.signature = identity.sign_message(domains::DEREGISTER, &request, |r| r.signature.clear());
    request
}

async fn live(sandbox: &Sandbox) -> Vec<String> {
    let listed: ListMinersResponse = call(sandbox, api::MINERS_LIST, &ListMinersRequest {}).await.unwrap();
    listed.miners.into_iter().map(|m| m.miner_id).collect()
}

/// A captured heartbeat replayed, one dated 25 s ahead, and a captured deregistration
/// replayed after the miner registered again are all refused with a typed error; the
/// honest miner keeps working throughout.
#[tokio::test]
async fn replayed_and_future_dated_miner_messages_are_refused() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let identity = Identity::generate();
    let miner = MinerClient::new(sandbox.bus.clone(), identity.clone(), Duration::from_secs(5));
    miner.register(capable()).await.unwrap();
    let registration = miner.registration();

    // An honest heartbeat from a clock 5 s behind dispatch's, captured on its way; replayed,
    // it is refused.
    let captured = heartbeat(&identity, &registration, Timestamp::now().unix_ms - 5_000);
    let _: HeartbeatResponse = call(&sandbox, api::MINERS_HEARTBEAT, &captured).await.unwrap();
    assert_eq!(
        code(call::<HeartbeatResponse>(&sandbox, api::MINERS_HEARTBEAT, &captured).await),
        ErrorCode::StaleMessage
    );

    // Signed 25 s ahead (held back to be replayed later, or to lock the miner out): refused,
    // and the honest miner's next heartbeat still passes.
    let ahead = heartbeat(&identity, &registration, Timestamp::now().unix_ms + 25_000);
    assert_eq!(code(call::<HeartbeatResponse>(&sandbox, api::MINERS_HEARTBEAT, &ahead).await), ErrorCode::StaleMessage);
    miner.heartbeat(0).await.expect("the honest miner is not locked out");
    // Long past: refused.
    let old = heartbeat(&identity, &registration, Timestamp::now().unix_ms - 60_000);
    assert_eq!(code(call::<HeartbeatResponse>(&sandbox, api::MINERS_HEARTBEAT, &old).await), ErrorCode::StaleMessage);

    // The miner leaves (the request is captured), comes back, and the capture is replayed.
    let leaving = deregistration(&identity, &registration);
    let _: DeregisterMinerResponse = call(&sandbox, api::MINERS_DEREGISTER, &leaving).await.unwrap();
    assert!(!live(&sandbox).await.contains(&identity.id()));
    miner.register(capable()).await.unwrap();
    assert_ne!(miner.registration(), registration, "a new registration has a new nonce");
    let replayed = call::<DeregisterMinerResponse>(&sandbox, api::MINERS_DEREGISTER, &leaving).await;
    assert_eq!(code(replayed), ErrorCode::StaleMessage);
    assert!(live(&sandbox).await.contains(&identity.id()), "the replay did not evict the miner");
    // A heartbeat signed under the old registration: refused too.
    let previous = heartbeat(&identity, &registration, Timestamp::now().unix_ms);
    assert_eq!(
        code(call::<HeartbeatResponse>(&sandbox, api::MINERS_HEARTBEAT, &previous).await),
        ErrorCode::StaleMessage
    );
    miner.heartbeat(0).await.expect("the current registration works");
}

/// A train-data request dated `i64::MIN` (or far ahead, or under an earlier registration)
/// gets a typed 400 at once, never silence; the honest request still gets its data.
#[tokio::test]
async fn train_data_requests_out_of_time_get_a_typed_refusal() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let alice = sandbox.miner(capable(), accept()).await;
    sandbox.task("t-time", TaskType::Instruct, Timestamp::now().unix_ms + 3_600_000).await;
    let assignment =
        alice.client.next_assignment(&sandbox.dispatch_key, Duration::from_secs(10)).await.unwrap().expect("assigned");
    let identity = alice.client.identity().clone();
    let signed = |at: i64, registration: Vec<u8>| {
        let mut request = TrainDataRequest {
            assignment: Some(assignment.clone()),
            object: assignment.grant.as_ref().unwrap().train.clone(),
            offset: 0,
            length: 16,
            at: Some(Timestamp { unix_ms: at }),
            signature: Vec::new(),
            registration,
        };
        request.signature = identity.sign_message(domains::DATA_REQUEST, &request, |r| r.signature.clear());
        request
    };
    let registration = alice.client.registration();
    for at in [i64::MIN, i64::MAX, Timestamp::now().unix_ms - 600_000, Timestamp::now().unix_ms + 25_000] {
        let refused = call::<TrainDataResponse>(&sandbox, api::MINERS_TRAIN, &signed(at, registration.clone())).await;
        let error = refused.expect_err("refused");
        assert_eq!(error.code(), Some(ErrorCode::StaleMessage), "at = {at}: {error:?}");
    }
    let fresh = signed(Timestamp::now().unix_ms, registration.clone());
    let chunk: TrainDataResponse = call(&sandbox, api::MINERS_TRAIN, &fresh).await.unwrap();
    assert_eq!(chunk.data.len(), 16);
    // Alice registers again: a request signed under the first registration is refused.
    alice.client.register(capable()).await.unwrap();
    let old = signed(Timestamp::now().unix_ms, registration);
    assert_eq!(code(call::<TrainDataResponse>(&sandbox, api::MINERS_TRAIN, &old).await), ErrorCode::StaleMessage);
    assert_eq!(alice.client.fetch_train(&assignment).await.unwrap().len() as u32, chunk.total_size as u32);
}

/// A miner id that is not one (`.`, a wildcard, empty, too long) is a typed 400, never a
/// key-value error.
#[tokio::test]
async fn malformed_miner_ids_are_bad_requests() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    let identity = Identity::generate();
    for bad in [".", "..", "a.b", "*", ">", "", "m", "m0", &"m0".repeat(300)] {
        let mut beat = heartbeat(&identity, b"", Timestamp::now().unix_ms);
        beat.miner_id = bad.to_owned();
        let refused = call::<HeartbeatResponse>(&sandbox, api::MINERS_HEARTBEAT, &beat).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument), "heartbeat as {bad:?}: {refused:?}");
        let mut leave = deregistration(&identity, b"");
        leave.miner_id = bad.to_owned();
        let refused = call::<DeregisterMinerResponse>(&sandbox, api::MINERS_DEREGISTER, &leave).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::InvalidArgument), "deregister as {bad:?}: {refused:?}");
    }
}

/// 2,000 anonymous challenge requests leave no live state and are rate limited; a forged
/// challenge is refused; a challenge handed out before the flood still registers, once.
#[tokio::test]
async fn anonymous_challenges_leave_no_state_and_are_rate_limited() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |s| {
        s.dispatch.challenge_rate_per_s = 20;
        s.dispatch.challenge_burst = 100;
    })
    .await;
    let kept: ChallengeResponse = call(&sandbox, api::MINERS_CHALLENGE, &ChallengeRequest {}).await.unwrap();
    let flood = (0..2_000).map(|_| call::<ChallengeResponse>(&sandbox, api::MINERS_CHALLENGE, &ChallengeRequest {}));
    let answers = futures::future::join_all(flood).await;
    let granted = answers.iter().filter(|a| a.is_ok()).count();
    let limited =
        answers.into_iter().filter_map(Result::err).filter(|e| e.code() == Some(ErrorCode::RateLimited)).count();
    assert!(granted < 200, "{granted} challenges handed out: the burst and rate bound them");
    assert_eq!(granted + limited, 2_000, "every other request got a typed RATE_LIMITED");
    let used = sandbox.bus.jetstream.get_key_value(kv::CHALLENGES).await.unwrap();
    assert_eq!(stored_keys(&used).await, 0, "the flood stored nothing");

    let identity = Identity::generate();
    let sign = |nonce: Vec<u8>| {
        let mut request = RegisterMinerRequest {
            public_key: identity.public_key().to_vec(),
            capabilities: Some(capable()),
            nonce,
            signature: Vec::new(),
        };
        request.signature = identity.sign_message(domains::REGISTER, &request, |r| r.signature.clear());
        request
    };
    let forged = sign(rand::random::<[u8; 32]>().to_vec());
    let refused = call::<RegisterMinerResponse>(&sandbox, api::MINERS_REGISTER, &forged).await;
    assert_eq!(code(refused), ErrorCode::ChallengeInvalid);
    let honest = sign(kept.nonce);
    let _: RegisterMinerResponse = call(&sandbox, api::MINERS_REGISTER, &honest).await.unwrap();
    assert_eq!(stored_keys(&used).await, 1, "a used challenge is remembered until it expires");
    let replayed = call::<RegisterMinerResponse>(&sandbox, api::MINERS_REGISTER, &honest).await;
    assert_eq!(code(replayed), ErrorCode::ChallengeInvalid);
}

/// How many keys a key-value bucket holds now.
async fn stored_keys(store: &async_nats::jetstream::kv::Store) -> usize {
    use futures::StreamExt;
    store.keys().await.unwrap().count().await
}

/// Cancels `task_id` as intake announces it.
async fn cancel(sandbox: &Sandbox, task_id: &str, from: TaskStatus) {
    let change = TaskStatusChanged {
        event_id: format!("{task_id}:cancelled"),
        task_id: task_id.to_owned(),
        from: from as i32,
        to: TaskStatus::Cancelled as i32,
        reason: "cancelled by the customer".into(),
        at: Some(Timestamp::now()),
        actor: "intake".into(),
    };
    let event = OutgoingEvent {
        subject: subjects::task_status(task_id),
        id: change.event_id.clone(),
        payload: change.encode_to_vec().into(),
        traceparent: None,
    };
    publish_event(&sandbox.bus.jetstream, event).await.unwrap();
}

/// A task cancelled while its offers are out gets no assignment, though its miners accept;
/// one cancelled before dispatch sees it is never offered.
#[tokio::test]
async fn a_task_cancelled_while_offers_are_out_gets_no_assignments() {
    for backend in Backend::ALL {
        let sandbox = Sandbox::start(backend, 1, |s| s.dispatch.offer_timeout_ms = 5_000).await;
        let slow = Policy(Decision::Accept { estimated_seconds: 60.0 }, Duration::from_millis(1_500));
        let miner = sandbox.miner_with(capable(), Some(slow)).await;
        sandbox.task("t-cancel", TaskType::Instruct, Timestamp::now().unix_ms + 3_600_000).await;
        let offers = eventually(Duration::from_secs(10), "the offer out", || async {
            let offers = sandbox.offers("t-cancel").await;
            (!offers.is_empty()).then_some(offers)
        })
        .await;
        assert_eq!(offers[0].outcome, OfferOutcome::Sent, "{backend}: the offer is out");
        cancel(&sandbox, "t-cancel", TaskStatus::Dispatching).await;
        let row = sandbox.wait_for_state("t-cancel", TaskState::Cancelled).await;
        assert!(row.reason.contains("cancelled by the customer"), "{}", row.reason);
        // The miner's acceptance arrives after the cancellation and is recorded...
        let answered = eventually(Duration::from_secs(10), "the miner's answer recorded", || async {
            let offer = sandbox.offers("t-cancel").await.remove(0);
            (offer.outcome != OfferOutcome::Sent).then_some(offer)
        })
        .await;
        assert_eq!(answered.outcome, OfferOutcome::Accepted, "{backend}");
        // ...and assigns nothing.
        sandbox.wait_until_settled().await;
        assert!(sandbox.assignments().await.is_empty(), "{backend}: no assignment rows");
        let published = sandbox.messages_on(streams::ASSIGNMENTS, &subjects::assignments(&miner.id())).await;
        assert!(published.is_empty(), "{backend}: no assignment published");

        // Cancelled before dispatch saw it: no offer at all.
        cancel(&sandbox, "t-early", TaskStatus::Accepted).await;
        sandbox.wait_for_state("t-early", TaskState::Cancelled).await;
        sandbox.task("t-early", TaskType::Instruct, Timestamp::now().unix_ms + 3_600_000).await;
        sandbox.wait_until_settled().await;
        assert!(sandbox.offers("t-early").await.is_empty(), "{backend}: never offered");
        assert_eq!(sandbox.wait_for_state("t-early", TaskState::Cancelled).await.state, TaskState::Cancelled);
    }
}

/// A signed acceptance dated a minute ago (a replayed or held-back reply) is recorded as
/// invalid, not as an acceptance, and assigns nothing.
#[tokio::test]
async fn stale_offer_replies_are_not_acceptances() {
    use futures::StreamExt;
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |s| s.dispatch.offer_rounds = 1).await;
    let miner = sandbox.miner(capable(), None).await; // registered and live, answering by hand
    let identity = miner.client.identity().clone();
    let mut offers = sandbox.bus.client.subscribe(subjects::miner_offers(&miner.id())).await.unwrap();
    sandbox.bus.client.flush().await.unwrap();
    let bus = sandbox.bus.clone();
    tokio::spawn(async move {
        while let Some(message) = offers.next().await {
            let offer = Offer::decode(message.payload.as_ref()).unwrap();
            let mut reply = OfferReply {
                offer_id: offer.offer_id,
                miner_id: identity.id(),
                accepted: true,
                estimated_seconds: 1.0,
                at: Some(Timestamp { unix_ms: Timestamp::now().unix_ms - 60_000 }),
                ..Default::default()
            };
            reply.signature = identity.sign_message(domains::OFFER_REPLY, &reply, |r| r.signature.clear());
            bus.client.publish(message.reply.unwrap(), reply.encode_to_vec().into()).await.unwrap();
        }
    });
    sandbox.task("t-stale-reply", TaskType::Instruct, Timestamp::now().unix_ms + 3_600_000).await;
    sandbox.wait_for_state("t-stale-reply", TaskState::Failed).await;
    let answered = sandbox.offers("t-stale-reply").await;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].outcome, OfferOutcome::Invalid);
    assert!(answered[0].reason.contains("stale reply"), "{}", answered[0].reason);
    assert!(sandbox.assignments().await.is_empty());
}

/// A split served in many chunks is read from the bucket once, not once per chunk (which
/// let any assigned miner make dispatch read a large split hundreds of times): after the
/// first chunk, the stored object can go and the rest is still served, verified.
#[tokio::test]
async fn a_split_is_read_once_however_many_chunks_are_asked_for() {
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |s| s.dispatch.data_chunk_bytes = 256).await;
    let alice = sandbox.miner(capable(), accept()).await;
    let task = sandbox.task("t-chunks", TaskType::Instruct, Timestamp::now().unix_ms + 3_600_000).await;
    let assignment =
        alice.client.next_assignment(&sandbox.dispatch_key, Duration::from_secs(10)).await.unwrap().expect("assigned");
    let train = task.splits.unwrap().train.unwrap().object.unwrap();
    assert!(train.size > 256 * 10, "the split takes many chunks");
    let identity = alice.client.identity().clone();
    let mut first = TrainDataRequest {
        assignment: Some(assignment.clone()),
        object: Some(train.clone()),
        offset: 0,
        length: 0,
        at: Some(Timestamp::now()),
        signature: Vec::new(),
        registration: alice.client.registration(),
    };
    first.signature = identity.sign_message(domains::DATA_REQUEST, &first, |r| r.signature.clear());
    let chunk: TrainDataResponse = call(&sandbox, api::MINERS_TRAIN, &first).await.unwrap();
    assert_eq!((chunk.data.len(), chunk.total_size), (256, train.size));

    let store = gradients_bus::objects::bucket(&sandbox.bus, &train.bucket).await.unwrap();
    gradients_bus::objects::delete(&store, &train.bucket, &train.name).await.unwrap();
    let all = alice.client.fetch_train(&assignment).await.expect("served from the one verified read");
    assert_eq!(gradients_bus::objects::sha256_hex(&all), train.sha256);
}

/// A task announced without a deadline is refused (dead-lettered with its reason), never
/// stored with a deadline made up for it.
#[tokio::test]
async fn a_task_without_a_deadline_is_refused_not_defaulted() {
    use gradients_store::entity::dispatch::task;
    use gradients_store::sea_orm::EntityTrait;
    let sandbox = Sandbox::start(Backend::Sqlite, 1, |_| {}).await;
    sandbox.miner(capable(), accept()).await;
    sandbox.task("t-no-deadline", TaskType::Instruct, 0).await;
    let dead_letters = subjects::dead_letter(subjects::consumers::DISPATCH_TASKS);
    eventually(Duration::from_secs(10), "the task dead-lettered", || async {
        !sandbox.messages_on(streams::DEAD_LETTERS, &dead_letters).await.is_empty()
    })
    .await;
    let stored = task::Entity::find_by_id("t-no-deadline".to_owned()).one(&sandbox.store).await.unwrap();
    assert!(stored.is_none(), "nothing stored for it: {stored:?}");
}
