//! The intake API as a NATS micro service: `gradients.api.tasks.{submit,get,list,cancel}`,
//! discoverable with `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`. Replicas share requests
//! through the micro service's queue group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::service::{Request, Service, ServiceExt};
use futures::stream::{self, StreamExt};
use gradients_bus::api::{decode_request, respond};
use gradients_bus::event::ReceivedHeaders;
use gradients_bus::subjects::api;
use gradients_bus::BusError;
use gradients_proto::v1::{
    ErrorCode, GetTaskRequest, GetTaskResponse, ListTasksRequest, ListTasksResponse, TaskStatus,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::RequestError;
use crate::tasks::{self, PageTokenError};
use crate::{cancel, submit, Context};

/// Version reported by `$SRV.INFO`: the crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Default and largest page of `list`.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// Registers the micro service and answers requests until `stop`.
pub async fn serve(ctx: Arc<Context>, stop: CancellationToken) -> Result<(), BusError> {
    let fail = |reason: String| BusError::Service { service: api::INTAKE_SERVICE.to_owned(), reason };
    let service: Service = ctx
        .bus
        .client
        .service_builder()
        .description("Gradients task intake: submit, get, list and cancel fine-tuning tasks")
        .start(api::INTAKE_SERVICE, VERSION)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let group = service.group(api::TASKS_GROUP);
    let mut endpoints = Vec::new();
    for name in [api::TASKS_SUBMIT, api::TASKS_GET, api::TASKS_LIST, api::TASKS_CANCEL] {
        let endpoint = group.endpoint(name).await.map_err(|e| fail(e.to_string()))?;
        endpoints.push(endpoint.map(move |request| (name, request)).boxed());
    }
    let mut requests = stream::select_all(endpoints);
    let limit = Arc::new(Semaphore::new(ctx.settings.intake.max_concurrent_requests));
    let mut in_flight = JoinSet::new();
    loop {
        let (endpoint, request) = tokio::select! {
            _ = stop.cancelled() => break,
            next = requests.next() => match next {
                Some(next) => next,
                None => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        };
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let ctx = ctx.clone();
        in_flight.spawn(async move {
            handle(&ctx, endpoint, request).await;
            drop(permit);
        });
    }
    // Stop taking requests (unsubscribe), then let the ones in hand finish.
    drop(requests);
    if let Err(e) = service.stop().await {
        tracing::warn!(error = %e, "stopping the micro service");
    }
    let drained = tokio::time::timeout(DRAIN_LIMIT, async { while in_flight.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN_LIMIT:?}; abandoning them (clients will retry)");
    }
    Ok(())
}

/// Decodes, dispatches, answers and records one request.
async fn handle(ctx: &Context, endpoint: &'static str, request: Request) {
    let span = tracing::info_span!("api", endpoint, task_id = tracing::field::Empty);
    gradients_telemetry::set_parent_from(&span, &ReceivedHeaders(request.message.headers.as_ref()));
    let started = Instant::now();
    let code = async {
        macro_rules! answer {
            ($req:ty, $handler:expr) => {{
                let result = match decode_request::<$req>(&request) {
                    Ok(decoded) => $handler(decoded).await.map_err(|e: RequestError| record(ctx, e)),
                    Err(malformed) => {
                        ctx.metrics.rejected(ErrorCode::MalformedRequest.as_str_name());
                        tracing::warn!(error = %malformed.message, "malformed request");
                        Err(malformed)
                    }
                };
                let code = result.as_ref().err().map(|e| ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal));
                respond(&request, result).await;
                code
            }};
        }
        match endpoint {
            api::TASKS_SUBMIT => answer!(gradients_proto::v1::SubmitTaskRequest, |r| submit::submit(ctx, r)),
            api::TASKS_GET => answer!(GetTaskRequest, |r| get(ctx, r)),
            api::TASKS_LIST => answer!(ListTasksRequest, |r| list(ctx, r)),
            _ => answer!(gradients_proto::v1::CancelTaskRequest, |r| cancel::cancel(ctx, r)),
        }
    }
    .instrument(span)
    .await;
    let code_name = code.map(|c| c.as_str_name()).unwrap_or("OK");
    ctx.metrics.api_request(endpoint, code_name, started.elapsed());
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
