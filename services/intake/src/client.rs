//! A typed client of the intake API, for the CLI, tests and Rust integrators. Anyone else
//! speaks the same protocol: protobuf bodies on `gradients.api.tasks.*`, each signed with
//! the customer's key in the `Gradients-Customer-*` / `Gradients-Request-*` headers (see
//! [`crate::customer`] and the README's threat model).

use std::time::Duration;

use gradients_bus::api::{call_with_headers, CallError};
use gradients_bus::subjects::api;
use gradients_bus::{objects, Bus};
use gradients_proto::v1::{
    CancelTaskRequest, CancelTaskResponse, GetTaskRequest, GetTaskResponse, ListTasksRequest, ListTasksResponse,
    ObjectRef, PrepareUploadRequest, PrepareUploadResponse, SubmitTaskRequest, SubmitTaskResponse, TaskResultRequest,
    TaskResultResponse,
};
use prost::Message;

use crate::customer::CustomerKey;

/// The longest a `result` request that copies the winning model may take.
pub const STAGING_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Intake refused to name the caller's bucket.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The object store refused the upload.
    #[error(transparent)]
    Bus(#[from] gradients_bus::BusError),
}

/// Talks to intake over a [`Bus`], as the holder of one customer key.
#[derive(Clone)]
pub struct IntakeClient {
    bus: Bus,
    key: CustomerKey,
    timeout: Duration,
}

impl IntakeClient {
    /// A client signing with `key` whose requests give up after `timeout`.
    pub fn new(bus: Bus, key: CustomerKey, timeout: Duration) -> Self {
        Self { bus, key, timeout }
    }

    /// The customer id requests are made as.
    pub fn customer_id(&self) -> String {
        self.key.id()
    }

    /// Asks intake for this customer's uploads bucket (created on first use).
    pub async fn prepare_upload(&self) -> Result<PrepareUploadResponse, CallError> {
        self.signed(api::TASKS_UPLOAD, &PrepareUploadRequest {}).await
    }

    /// Uploads a data set to this customer's own bucket (chunked by the object store) and
    /// returns the reference to put in [`SubmitTaskRequest::dataset`].
    pub async fn upload_dataset(&self, data: &[u8]) -> Result<ObjectRef, UploadError> {
        let bucket = self.prepare_upload().await?.bucket;
        let store = objects::bucket(&self.bus, &bucket).await?;
        let name = format!("upload-{}", uuid::Uuid::new_v4());
        Ok(objects::put_bytes(&store, &bucket, &name, data).await?)
    }

    /// Submits a task.
    pub async fn submit(&self, request: &SubmitTaskRequest) -> Result<SubmitTaskResponse, CallError> {
        self.signed(api::TASKS_SUBMIT, request).await
    }

    /// Reads one of this customer's tasks (an operator: any task).
    pub async fn get(&self, task_id: &str) -> Result<GetTaskResponse, CallError> {
        self.signed(api::TASKS_GET, &GetTaskRequest { task_id: task_id.to_owned() }).await
    }

    /// Reads a page of this customer's tasks (an operator: of every task).
    pub async fn list(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, CallError> {
        self.signed(api::TASKS_LIST, request).await
    }

    /// Cancels one of this customer's tasks (an operator: any task).
    pub async fn cancel(&self, task_id: &str, reason: &str) -> Result<CancelTaskResponse, CallError> {
        self.signed(api::TASKS_CANCEL, &CancelTaskRequest { task_id: task_id.to_owned(), reason: reason.to_owned() })
            .await
    }

    /// How one of this customer's tasks ended (the ledger's ranking; unset while it runs),
    /// and with `stage_download` the winning model's files copied into the customer's own
    /// bucket (read them with [`IntakeClient::read_download`]). Copying a model takes
    /// longer than a plain request: it may wait up to [`STAGING_TIMEOUT`].
    pub async fn result(&self, task_id: &str, stage_download: bool) -> Result<TaskResultResponse, CallError> {
        let request = TaskResultRequest { task_id: task_id.to_owned(), stage_download };
        let timeout = if stage_download { self.timeout.max(STAGING_TIMEOUT) } else { self.timeout };
        self.signed_within(api::TASKS_RESULT, &request, timeout).await
    }

    /// Reads a staged file from the customer's own bucket, checked against its size and sha256.
    pub async fn read_download(&self, object: &ObjectRef) -> Result<bytes::Bytes, objects::ObjectError> {
        let store = objects::bucket(&self.bus, &object.bucket).await?;
        objects::read_verified(&store, object, u64::MAX).await
    }

    /// Sends `request` to the endpoint, signed now with a fresh nonce.
    async fn signed<R: Message + Default>(&self, endpoint: &str, request: &impl Message) -> Result<R, CallError> {
        self.signed_within(endpoint, request, self.timeout).await
    }

    async fn signed_within<R: Message + Default>(
        &self,
        endpoint: &str,
        request: &impl Message,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let subject = api::tasks(endpoint);
        let body = request.encode_to_vec();
        let headers = self.key.sign_request(&subject, &body);
        call_with_headers(&self.bus.client, subject, body.into(), headers, timeout).await
    }
}
