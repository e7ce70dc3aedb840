//! The intake API as a NATS micro service: `gradients.api.tasks.{submit,get,list,cancel}`,
//! discoverable with `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. Replicas share requests
//! through the micro service's queue group.

use std::sync::Arc;
use std::time::Instant;

use async_nats::service::Request;
use gradients_bus::api::{answer, ServiceSpec};
use gradients_bus::event::ReceivedHeaders;
use gradients_bus::subjects::api;
use gradients_bus::BusError;
use gradients_proto::v1::{
    ErrorCode, GetTaskRequest, GetTaskResponse, ListTasksRequest, ListTasksResponse, TaskStatus,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::RequestError;
use crate::tasks::{self, PageTokenError};
use crate::{cancel, submit, Context};

/// Version reported by `$SRV.INFO`: the crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Default and largest page of `list`.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// Registers the micro service and answers requests until `stop`.
pub async fn serve(ctx: Arc<Context>, stop: CancellationToken) -> Result<(), BusError> {
    let spec = ServiceSpec {
        name: api::INTAKE_SERVICE,
        version: VERSION,
        description: "Gradients task intake: submit, get, list and cancel fine-tuning tasks",
        group: api::TASKS_GROUP,
        endpoints: &[api::TASKS_SUBMIT, api::TASKS_GET, api::TASKS_LIST, api::TASKS_CANCEL],
        max_concurrent: ctx.settings.intake.max_concurrent_requests,
    };
    let client = ctx.bus.client.clone();
    gradients_bus::api::serve(&client, spec, stop, move |endpoint, request| {
        let ctx = ctx.clone();
        async move { handle(&ctx, endpoint, request).await }
    })
    .await
}

/// Decodes, dispatches, answers and records one request.
async fn handle(ctx: &Context, endpoint: &'static str, request: Request) {
    let span = tracing::info_span!("api", endpoint, task_id = tracing::field::Empty);
    gradients_telemetry::set_parent_from(&span, &ReceivedHeaders(request.message.headers.as_ref()));
    let started = Instant::now();
    let to_api = |e: RequestError| record(ctx, e);
    let code = async {
        match endpoint {
            api::TASKS_SUBMIT => answer(&request, |r| submit::submit(ctx, r), to_api).await,
            api::TASKS_GET => answer(&request, |r| get(ctx, r), to_api).await,
            api::TASKS_LIST => answer(&request, |r| list(ctx, r), to_api).await,
            _ => answer(&request, |r| cancel::cancel(ctx, r), to_api).await,
        }
    }
    .instrument(span)
    .await;
    if code == Some(ErrorCode::MalformedRequest) {
        ctx.metrics.rejected(ErrorCode::MalformedRequest.as_str_name());
        tracing::warn!(endpoint, "malformed request");
    }
    ctx.metrics.api_request(endpoint, code.map(|c| c.as_str_name()).unwrap_or("OK"), started.elapsed());
}

/// Logs and counts a refused request and makes the typed error.
fn record(ctx: &Context, error: RequestError) -> gradients_proto::v1::Error {
    let api_error = error.to_api();
    if error.is_rejection() {
        ctx.metrics.rejected(error.code().as_str_name());
        tracing::warn!(code = error.code().as_str_name(), error = %error, "request refused");
    } else {
        tracing::error!(code = error.code().as_str_name(), error = %error, "request failed");
    }
    api_error
}

async fn get(ctx: &Context, request: GetTaskRequest) -> Result<GetTaskResponse, RequestError> {
    let row = tasks::find(&ctx.db, &request.task_id).await?.ok_or(RequestError::NotFound(request.task_id))?;
    Ok(GetTaskResponse { task: Some(tasks::to_proto(&row)) })
}

async fn list(ctx: &Context, request: ListTasksRequest) -> Result<ListTasksResponse, RequestError> {
    let status = match TaskStatus::try_from(request.status) {
        Ok(TaskStatus::Unspecified) => None,
        Ok(status) => Some(status),
        Err(_) => {
            return Err(RequestError::bad(ErrorCode::InvalidArgument, format!("unknown status {}", request.status)))
        }
    };
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let (rows, next_page_token) =
        tasks::list(&ctx.db, status, page_size as u64, &request.page_token).await.map_err(|e| match e {
            PageTokenError::Malformed(_) => RequestError::bad(ErrorCode::InvalidArgument, e.to_string()),
            PageTokenError::Store(db) => RequestError::Store(db),
        })?;
    Ok(ListTasksResponse { tasks: rows.iter().map(tasks::to_proto).collect(), next_page_token })
}
