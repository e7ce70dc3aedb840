//! The intake API as a NATS micro service: `gradients.api.tasks.{upload,submit,get,list,
//! cancel,result}`, discoverable with `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. Replicas share
//! requests through the micro service's queue group. Every request is authenticated
//! first ([`crate::auth`]); each endpoint sees only what its caller may see.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::service::Request;
use gradients_bus::api::{answer, respond, ServiceSpec};
use gradients_bus::event::ReceivedHeaders;
use gradients_bus::subjects::api;
use gradients_bus::BusError;
use gradients_proto::v1::{
    ErrorCode, GetTaskRequest, GetTaskResponse, ListTasksRequest, ListTasksResponse, SubmitTaskResponse, TaskStatus,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::Caller;
use crate::error::RequestError;
use crate::tasks::{self, PageTokenError};
use crate::{cancel, result, submit, upload, Context};

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
        endpoints: &[
            api::TASKS_UPLOAD,
            api::TASKS_SUBMIT,
            api::TASKS_GET,
            api::TASKS_LIST,
            api::TASKS_CANCEL,
            api::TASKS_RESULT,
        ],
        max_concurrent: ctx.settings.intake.max_concurrent_requests,
    };
    let client = ctx.bus.client.clone();
    gradients_bus::api::serve(&client, spec, stop, move |endpoint, request| {
        let ctx = ctx.clone();
        async move {
            // Counted for readiness: a process whose every slot is taken cannot answer.
            ctx.in_flight.fetch_add(1, Ordering::SeqCst);
            handle(&ctx, endpoint, request).await;
            ctx.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await
}

/// Authenticates, decodes, dispatches, answers and records one request.
async fn handle(ctx: &Context, endpoint: &'static str, request: Request) {
    let span =
        tracing::info_span!("api", endpoint, customer_id = tracing::field::Empty, task_id = tracing::field::Empty);
    gradients_telemetry::set_parent_from(&span, &ReceivedHeaders(request.message.headers.as_ref()));
    let started = Instant::now();
    let to_api = |e: RequestError| record(ctx, e);
    let code = async {
        let message = &request.message;
        let caller = match ctx.auth.authenticate(&message.subject, message.headers.as_ref(), &message.payload).await {
            Ok(caller) => caller,
            Err(refused) => {
                let error = record(ctx, refused);
                let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
                respond::<SubmitTaskResponse>(&request, Err(error)).await;
                return Some(code);
            }
        };
        tracing::Span::current().record("customer_id", caller.customer_id.as_str());
        let caller = &caller;
        match endpoint {
            api::TASKS_UPLOAD => answer(&request, |r| upload::prepare(ctx, caller, r), to_api).await,
            api::TASKS_SUBMIT => answer(&request, |r| submit::submit(ctx, caller, r), to_api).await,
            api::TASKS_GET => answer(&request, |r| get(ctx, caller, r), to_api).await,
            api::TASKS_LIST => answer(&request, |r| list(ctx, caller, r), to_api).await,
            api::TASKS_RESULT => answer(&request, |r| result::result(ctx, caller, r), to_api).await,
            _ => answer(&request, |r| cancel::cancel(ctx, caller, r), to_api).await,
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

/// Logs and counts a refused request and makes the typed error; a failure of our own is
/// logged in full under a reference the client is given instead of the text.
fn record(ctx: &Context, error: RequestError) -> gradients_proto::v1::Error {
    if error.is_rejection() {
        ctx.metrics.rejected(error.code().as_str_name());
        tracing::warn!(code = error.code().as_str_name(), error = %error, "request refused");
        return error.to_api("");
    }
    let reference = gradients_bus::api::new_reference();
    let cause = gradients_bus::error_chain(&error);
    tracing::error!(code = error.code().as_str_name(), error = %cause, reference, "request failed");
    error.to_api(&reference)
}

async fn get(ctx: &Context, caller: &Caller, request: GetTaskRequest) -> Result<GetTaskResponse, RequestError> {
    let row = tasks::find_visible(&ctx.db, caller, &request.task_id).await?;
    Ok(GetTaskResponse { task: Some(tasks::to_proto(&row)?) })
}

async fn list(ctx: &Context, caller: &Caller, request: ListTasksRequest) -> Result<ListTasksResponse, RequestError> {
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
    let page = tasks::Page { owner: caller.owner_filter(), status, size: page_size as u64, token: &request.page_token };
    let (rows, next_page_token) = tasks::list(&ctx.db, page).await.map_err(|e| match e {
        PageTokenError::Malformed(_) => RequestError::bad(ErrorCode::InvalidArgument, e.to_string()),
        PageTokenError::Store(db) => RequestError::Store(db),
    })?;
    let tasks = rows.iter().map(tasks::to_proto).collect::<Result<_, _>>()?;
    Ok(ListTasksResponse { tasks, next_page_token })
}
