//! A typed client of the intake API, for the CLI, tests and Rust integrators. Anyone else
//! speaks the same protocol: protobuf bodies on `gradients.api.tasks.*` (see README).

use std::time::Duration;

use gradients_bus::api::{call, CallError};
use gradients_bus::subjects::{api, buckets};
use gradients_bus::{objects, Bus, BusError};
use gradients_proto::v1::{
    CancelTaskRequest, CancelTaskResponse, GetTaskRequest, GetTaskResponse, ListTasksRequest, ListTasksResponse,
    ObjectRef, SubmitTaskRequest, SubmitTaskResponse,
};

/// Talks to intake over a [`Bus`].
#[derive(Clone)]
pub struct IntakeClient {
    bus: Bus,
    timeout: Duration,
}

impl IntakeClient {
    /// A client whose requests give up after `timeout`.
    pub fn new(bus: Bus, timeout: Duration) -> Self {
        Self { bus, timeout }
    }

    /// Uploads a data set (chunked by the object store) and returns the reference to put
    /// in [`SubmitTaskRequest::dataset`].
    pub async fn upload_dataset(&self, data: &[u8]) -> Result<ObjectRef, BusError> {
        let store = objects::bucket(&self.bus, buckets::UPLOADS).await?;
        let name = format!("upload-{}", uuid::Uuid::new_v4());
        objects::put_bytes(&store, buckets::UPLOADS, &name, data).await
    }

    /// Submits a task.
    pub async fn submit(&self, request: &SubmitTaskRequest) -> Result<SubmitTaskResponse, CallError> {
        call(&self.bus.client, api::tasks(api::TASKS_SUBMIT), request, self.timeout).await
    }

    /// Reads one task.
    pub async fn get(&self, task_id: &str) -> Result<GetTaskResponse, CallError> {
        let request = GetTaskRequest { task_id: task_id.to_owned() };
        call(&self.bus.client, api::tasks(api::TASKS_GET), &request, self.timeout).await
    }

    /// Reads a page of tasks.
    pub async fn list(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, CallError> {
        call(&self.bus.client, api::tasks(api::TASKS_LIST), request, self.timeout).await
    }

    /// Cancels a task.
    pub async fn cancel(&self, task_id: &str, reason: &str) -> Result<CancelTaskResponse, CallError> {
        let request = CancelTaskRequest { task_id: task_id.to_owned(), reason: reason.to_owned() };
        call(&self.bus.client, api::tasks(api::TASKS_CANCEL), &request, self.timeout).await
    }
}
