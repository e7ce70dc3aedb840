//! The client side of dispatch's protocol (see `proto/gradients/v1/dispatch.proto`).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::object_store::{InfoErrorKind, ObjectStore};
use bytes::Bytes;
use futures::StreamExt;
use gradients_bus::api::{call, CallError};
use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::subjects::{api, buckets, consumers, streams};
use gradients_bus::{objects, Bus, BusError};
use gradients_proto::v1::{
    Assignment, ChallengeRequest, ChallengeResponse, DeregisterMinerRequest, DeregisterMinerResponse, Heartbeat,
    HeartbeatResponse, MinerCapabilities, ObjectRef, Offer, OfferReply, RegisterMinerRequest, RegisterMinerResponse,
    Submission, Timestamp, TrainDataRequest, TrainDataResponse,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::identity::{domains, verify_message, Identity, IdentityError};
use crate::lease::{AssignmentLease, DEFAULT_ACK_WAIT, MAX_DELIVERIES};
use crate::submission::{MANIFEST_EXTENSION, MODEL_EXTENSION};

/// How often [`MinerClient::heartbeat_loop`] looks at the miner's load for a change.
pub const LOAD_POLL: Duration = Duration::from_millis(250);
/// Why a miner operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// Dispatch refused or could not be reached.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// An assignment did not carry dispatch's signature.
    #[error("assignment {0} is not signed by dispatch: {1}")]
    ForgedAssignment(String, #[source] IdentityError),
    /// An assignment that does not decode (terminated: it never will).
    #[error("not an assignment (terminated): {0}")]
    UndecodableAssignment(#[source] prost::DecodeError),
    /// Dispatch's assignment for another miner (terminated: never worked on here).
    #[error("assignment {assignment_id} names miner {named}, not this miner")]
    ForeignAssignment { assignment_id: String, named: String },
    /// Granted data that does not hash to the sha256 its grant names.
    #[error("the granted object {name} does not match its sha256")]
    GrantedDataMismatch { name: String },
    /// A NATS operation on the miner's own subjects, consumer or objects failed.
    #[error("{action}: {source}")]
    Transport {
        /// What the miner was doing.
        action: String,
        #[source]
        source: gradients_bus::Cause,
    },
}

impl MinerError {
    /// Turns a NATS error into [`MinerError::Transport`] naming `action`.
    pub(crate) fn transport<E: Into<gradients_bus::Cause>>(action: impl Into<String>) -> impl FnOnce(E) -> Self {
        let action = action.into();
        move |source| Self::Transport { action, source: source.into() }
    }
}

/// A miner's answer to an offer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Take the task; the miner's estimate of the seconds it needs.
    Accept { estimated_seconds: f64 },
    /// Leave it, saying why.
    Decline { reason: String },
}

/// Decides on offers; the miner's policy (capacity, deadline, preferences).
pub trait OfferHandler: Send + Sync + 'static {
    /// Accept or decline `offer`.
    fn decide(&self, offer: &Offer) -> impl Future<Output = Decision> + Send;
}

/// A miner's connection to the market.
#[derive(Clone)]
pub struct MinerClient {
    bus: Bus,
    identity: Identity,
    timeout: Duration,
    /// The nonce of the current registration; every signed request names it, so dispatch
    /// refuses anything signed under an earlier registration (replays).
    registration: Arc<RwLock<Vec<u8>>>,
    /// How long an assignment stays leased without a renewal before it is handed out again.
    assignment_ack_wait: Duration,
}

impl MinerClient {
    /// A client acting as `identity`, giving up on requests after `timeout`.
    pub fn new(bus: Bus, identity: Identity, timeout: Duration) -> Self {
        Self { bus, identity, timeout, registration: Arc::default(), assignment_ack_wait: DEFAULT_ACK_WAIT }
    }

    /// The same client with another ack wait for its assignments (see [`AssignmentLease`]).
    pub fn with_assignment_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.assignment_ack_wait = ack_wait;
        self
    }

    /// How long a leased assignment lasts without a renewal.
    pub fn assignment_ack_wait(&self) -> Duration {
        self.assignment_ack_wait
    }

    /// The nonce of the current registration (empty before [`MinerClient::register`]:
    /// dispatch then refuses the miner's signed requests).
    pub fn registration(&self) -> Vec<u8> {
        self.registration.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The key this client signs with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This miner's id.
    pub fn miner_id(&self) -> String {
        self.identity.id()
    }

    /// Registers: asks for a challenge and signs it with the miner's key.
    pub async fn register(&self, capabilities: MinerCapabilities) -> Result<RegisterMinerResponse, MinerError> {
        let challenge: ChallengeResponse =
            call(&self.bus.client, api::miners(api::MINERS_CHALLENGE), &ChallengeRequest {}, self.timeout).await?;
        let mut request = RegisterMinerRequest {
            public_key: self.identity.public_key().to_vec(),
            capabilities: Some(capabilities),
            nonce: challenge.nonce,
            signature: Vec::new(),
        };
        request.signature = self.identity.sign_message(domains::REGISTER, &request, |r| r.signature.clear());
        let registered: RegisterMinerResponse =
            call(&self.bus.client, api::miners(api::MINERS_REGISTER), &request, self.timeout).await?;
        if let Ok(mut current) = self.registration.write() {
            *current = request.nonce;
        }
        Ok(registered)
    }

    /// Says the miner is alive and how many tasks it is working on.
    pub async fn heartbeat(&self, active_tasks: u32) -> Result<HeartbeatResponse, MinerError> {
        let mut beat = Heartbeat {
            miner_id: self.miner_id(),
            active_tasks,
            at: Some(Timestamp::now()),
            signature: Vec::new(),
            registration: self.registration(),
        };
        beat.signature = self.identity.sign_message(domains::HEARTBEAT, &beat, |b| b.signature.clear());
        Ok(call(&self.bus.client, api::miners(api::MINERS_HEARTBEAT), &beat, self.timeout).await?)
    }

    /// Heartbeats every `interval` until `stop`, and at once whenever `active_tasks` (read
    /// every [`LOAD_POLL`] at most) changes.
    pub async fn heartbeat_loop(
        &self,
        interval: Duration,
        active_tasks: impl Fn() -> u32 + Send,
        stop: CancellationToken,
    ) {
        // The load is looked at often and reported as soon as it changes, not only every
        // `interval`: dispatch offers by it, and a miner that has just finished a task must
        // not look busy for a whole interval (a task offered meanwhile would pass it by).
        let look_every = interval.min(LOAD_POLL);
        let mut reported: Option<u32> = None;
        let mut last_beat: Option<tokio::time::Instant> = None;
        loop {
            let load = active_tasks();
            if reported != Some(load) || last_beat.is_none_or(|at| at.elapsed() >= interval) {
                // A failed beat is tried again after `interval`, not at every look.
                if let Err(e) = self.heartbeat(load).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                reported = Some(load);
                last_beat = Some(tokio::time::Instant::now());
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(look_every) => {}
            }
        }
    }

    /// Leaves the market: dispatch forgets the miner at once.
    pub async fn deregister(&self) -> Result<(), MinerError> {
        let mut request = DeregisterMinerRequest {
            miner_id: self.miner_id(),
            at: Some(Timestamp::now()),
            signature: Vec::new(),
            registration: self.registration(),
        };
        request.signature = self.identity.sign_message(domains::DEREGISTER, &request, |r| r.signature.clear());
        let _: DeregisterMinerResponse =
            call(&self.bus.client, api::miners(api::MINERS_DEREGISTER), &request, self.timeout).await?;
        Ok(())
    }

    /// Answers offers on the miner's own subject with `handler`'s signed decisions until `stop`.
    pub async fn serve_offers<H: OfferHandler>(&self, handler: H, stop: CancellationToken) -> Result<(), MinerError> {
        let subject = gradients_bus::subjects::miner_offers(&self.miner_id());
        let mut offers = self
            .bus
            .client
            .subscribe(subject.clone())
            .await
            .map_err(MinerError::transport(format!("subscribing to {subject}")))?;
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                next = offers.next() => match next {
                    Some(message) => message,
                    None => return Ok(()),
                },
            };
            let (Some(reply), Ok(offer)) = (message.reply.clone(), Offer::decode(message.payload.as_ref())) else {
                tracing::warn!("ignoring a malformed offer");
                continue;
            };
            let mut answer =
                OfferReply { offer_id: offer.offer_id.clone(), miner_id: self.miner_id(), ..Default::default() };
            match handler.decide(&offer).await {
                Decision::Accept { estimated_seconds } => {
                    answer.accepted = true;
                    answer.estimated_seconds = estimated_seconds;
                }
                Decision::Decline { reason } => answer.decline_reason = reason,
            }
            answer.at = Some(Timestamp::now());
            answer.signature = self.identity.sign_message(domains::OFFER_REPLY, &answer, |a| a.signature.clear());
            if let Err(e) = self.bus.client.publish(reply, answer.encode_to_vec().into()).await {
                tracing::warn!(error = %e, "could not answer an offer");
            }
        }
    }

    /// Waits up to `wait` for the next assignment on the miner's durable consumer and checks
    /// dispatch's signature (`dispatch_key`). The assignment is *leased*, not acknowledged:
    /// settle it with [`AssignmentLease::finish`] once the submission is out (or
    /// [`AssignmentLease::give_up`]); until then JetStream hands it out again after the ack
    /// wait, so a crash loses nothing. Miners must treat a repeated `assignment_id` as the
    /// same assignment. One that is not an assignment, not dispatch's, or another miner's
    /// is terminated (never redelivered) and reported as an error.
    pub async fn next_assignment(
        &self,
        dispatch_key: &[u8],
        wait: Duration,
    ) -> Result<Option<AssignmentLease>, MinerError> {
        let miner_id = self.miner_id();
        let durable = consumers::miner_assignments(&miner_id);
        // Created (or found: the same config again is accepted) without reading the stream's
        // info, which would list every miner's assignment subjects: the miner's user may not.
        let consumer: consumer::Consumer<pull::Config> = self
            .bus
            .jetstream
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: gradients_bus::subjects::assignments(&miner_id),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.assignment_ack_wait,
                    max_deliver: MAX_DELIVERIES,
                    ..Default::default()
                },
                streams::ASSIGNMENTS,
            )
            .await
            .map_err(MinerError::transport(format!("opening the assignment consumer {durable}")))?;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(MinerError::transport(format!("pulling from {durable}")))?;
        let Some(message) = batch.next().await else { return Ok(None) };
        let message = message.map_err(MinerError::transport(format!("pulling from {durable}")))?;
        let assignment = match Assignment::decode(message.payload.as_ref()) {
            Ok(assignment) => assignment,
            Err(e) => {
                let _ = message.ack_with(async_nats::jetstream::AckKind::Term).await;
                return Err(MinerError::UndecodableAssignment(e));
            }
        };
        if let Err(e) = verify_message(dispatch_key, domains::ASSIGNMENT, &assignment, &assignment.signature, |a| {
            a.signature.clear()
        }) {
            let _ = message.ack_with(async_nats::jetstream::AckKind::Term).await;
            return Err(MinerError::ForgedAssignment(assignment.assignment_id, e));
        }
        if assignment.miner_id != miner_id {
            // Dispatch's, but another miner's: never work on it (nor count it as ours).
            let _ = message.ack_with(async_nats::jetstream::AckKind::Term).await;
            return Err(MinerError::ForeignAssignment {
                assignment_id: assignment.assignment_id,
                named: assignment.miner_id,
            });
        }
        Ok(Some(AssignmentLease::new(assignment, message)))
    }

    /// Reads the train split an assignment grants, chunk by chunk, checking its sha256.
    pub async fn fetch_train(&self, assignment: &Assignment) -> Result<Bytes, MinerError> {
        let train = assignment.grant.as_ref().and_then(|g| g.train.clone()).unwrap_or_default();
        self.fetch_object(assignment, &train).await
    }

    /// Asks dispatch for `object` under `assignment`'s grant (dispatch refuses anything the
    /// grant does not name).
    pub async fn fetch_object(
        &self,
        assignment: &Assignment,
        object: &gradients_proto::v1::ObjectRef,
    ) -> Result<Bytes, MinerError> {
        let mut data = Vec::new();
        let registration = self.registration();
        loop {
            let mut request = TrainDataRequest {
                assignment: Some(assignment.clone()),
                object: Some(object.clone()),
                offset: data.len() as u64,
                length: 0,
                at: Some(Timestamp::now()),
                signature: Vec::new(),
                registration: registration.clone(),
            };
            request.signature = self.identity.sign_message(domains::DATA_REQUEST, &request, |r| r.signature.clear());
            let chunk: TrainDataResponse =
                call(&self.bus.client, api::miners(api::MINERS_TRAIN), &request, self.timeout).await?;
            data.extend_from_slice(&chunk.data);
            if chunk.last || chunk.data.is_empty() {
                break;
            }
        }
        if !object.sha256.is_empty() && objects::sha256_hex(&data) != object.sha256 {
            return Err(MinerError::GrantedDataMismatch { name: object.name.clone() });
        }
        Ok(data.into())
    }

    /// Uploads the model and its manifest to the miner's own bucket (named by content, see
    /// [`buckets::artifact`]) and publishes the signed submission on the miner's own subject.
    pub async fn submit(&self, task_id: &str, artifact: &[u8], manifest: &[u8]) -> Result<Submission, MinerError> {
        let miner_id = self.miner_id();
        let store = objects::bucket(&self.bus, &buckets::artifacts(&miner_id)).await?;
        let artifact = self.put_once(&store, artifact, MODEL_EXTENSION).await?;
        let manifest = self.put_once(&store, manifest, MANIFEST_EXTENSION).await?;
        let submission_id = uuid::Uuid::new_v4().to_string();
        let mut submission = Submission {
            submission_id: submission_id.clone(),
            task_id: task_id.to_owned(),
            miner_id: miner_id.clone(),
            artifact: Some(artifact),
            manifest: Some(manifest),
            submitted_at: Some(Timestamp::now()),
            signature: Vec::new(),
        };
        submission.signature = self.identity.sign_message(domains::SUBMISSION, &submission, |s| s.signature.clear());
        let event = OutgoingEvent {
            subject: gradients_bus::subjects::submissions(task_id, &miner_id),
            id: submission_id,
            payload: submission.encode_to_vec().into(),
            traceparent: None,
        };
        publish_event(&self.bus.jetstream, event).await?;
        Ok(submission)
    }

    /// Uploads one file delivered beside a model (one its manifest lists: the HF folder it
    /// was exported from, the training report) to the miner's own bucket, content-named
    /// ([`buckets::artifact_file`]). Call it for every listed file before [`Self::submit`]:
    /// the customer downloads the winner's files by the manifest's sha256s.
    pub async fn store_file(&self, path: &str, data: &[u8]) -> Result<ObjectRef, MinerError> {
        let store = objects::bucket(&self.bus, &buckets::artifacts(&self.miner_id())).await?;
        self.put_once(&store, data, buckets::file_extension(path)).await
    }

    /// Stores `data` under its content name unless that name exists; never replaces an
    /// object. An existing object of that name was written by this miner (no other user may
    /// write the bucket) with these very bytes (the name is their sha256, and readers check
    /// it), so a retried or repeated upload reuses it.
    async fn put_once(&self, store: &ObjectStore, data: &[u8], extension: &str) -> Result<ObjectRef, MinerError> {
        let sha256 = objects::sha256_hex(data);
        let (bucket, name) = buckets::artifact(&self.miner_id(), &sha256, extension);
        let existing = match store.info(&name).await {
            Ok(info) => !info.deleted,
            Err(e) if e.kind() == InfoErrorKind::NotFound => false,
            Err(e) => return Err(MinerError::transport(format!("reading {bucket}/{name}"))(e)),
        };
        if existing {
            return Ok(ObjectRef { bucket, name, sha256, size: data.len() as u64 });
        }
        Ok(objects::put_bytes(store, &bucket, &name, data).await?)
    }
}
