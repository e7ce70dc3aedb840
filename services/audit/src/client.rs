//! A client of the audit API, for the CLI, auditors' tools and tests.

use std::time::Duration;

use async_nats::service::{NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use gradients_bus::subjects::api;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::document::{ConsistencyProof, InclusionProof, SignedCheckpoint};
use crate::protocol::*;

/// Why a call to the audit API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service refused the request (status is HTTP-like: 400, 404, 503).
    #[error("the audit service answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// Nobody answered: the audit service is not running or not reachable with these rights.
    #[error("no audit service answers on {0}: is it running, and may this identity call it?")]
    NoResponders(String),
    /// The request failed in transport or timed out.
    #[error("request on {subject}: {reason}")]
    Transport { subject: String, reason: String },
    /// The answer is not what the endpoint returns.
    #[error("undecodable answer on {subject}: {reason}")]
    Decode { subject: String, reason: String },
}

/// Calls `gradients.api.audit.*` on one connection.
#[derive(Clone, Debug)]
pub struct AuditClient {
    client: async_nats::Client,
    timeout: Duration,
}

impl AuditClient {
    /// A client on `client`, waiting up to `timeout` per call.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// The latest checkpoint, the one of a size, or a fresh one.
    pub async fn checkpoint(&self, request: &CheckpointRequest) -> Result<SignedCheckpoint, ClientError> {
        self.call(api::AUDIT_CHECKPOINT, request).await
    }

    /// A record and its inclusion proof.
    pub async fn proof(&self, request: &ProofRequest) -> Result<InclusionProof, ClientError> {
        self.call(api::AUDIT_PROOF, request).await
    }

    /// The proof that one checkpoint extends another.
    pub async fn consistency(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, ClientError> {
        self.call(api::AUDIT_CONSISTENCY, &ConsistencyRequest { old_size, new_size }).await
    }

    /// A page of records.
    pub async fn records(&self, request: &RecordsRequest) -> Result<RecordsPage, ClientError> {
        self.call(api::AUDIT_RECORDS, request).await
    }

    /// A page of checkpoints.
    pub async fn checkpoints(&self, request: &CheckpointsRequest) -> Result<CheckpointsPage, ClientError> {
        self.call(api::AUDIT_CHECKPOINTS, request).await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        use async_nats::RequestErrorKind;
        let subject = api::audit(endpoint);
        let body = serde_json::to_vec(request).expect("requests serialise");
        let sent = async_nats::Request::new().payload(body.into()).timeout(Some(self.timeout));
        let reply = self.client.send_request(subject.clone(), sent).await.map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => ClientError::NoResponders(subject.clone()),
            _ => ClientError::Transport { subject: subject.clone(), reason: e.to_string() },
        })?;
        if let Some(headers) = &reply.headers {
            if let Some(message) = headers.get(NATS_SERVICE_ERROR) {
                let status = headers.get(NATS_SERVICE_ERROR_CODE).and_then(|c| c.as_str().parse().ok()).unwrap_or(500);
                return Err(ClientError::Refused { status, message: message.to_string() });
            }
        }
        serde_json::from_slice(&reply.payload).map_err(|e| ClientError::Decode { subject, reason: e.to_string() })
    }
}
