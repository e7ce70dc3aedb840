//! Request/reply APIs on the NATS micro service protocol, both sides.
//!
//! A service answers with the encoded response message, or with an error carried in the
//! standard `Nats-Service-Error` / `Nats-Service-Error-Code` headers (so `nats micro`
//! tooling and `$SRV.STATS` see it) plus our typed detail in `Gradients-Error-*` headers.
//! [`call`] turns both back into a `Result` for clients.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::service::{
    error::Error as ServiceError, Request, ServiceExt, NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE,
};
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use gradients_proto::v1::{Error as ApiError, ErrorCode};
use prost::Message;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::BusError;

/// How long in-flight requests may take to finish once a service stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// A micro service: its name and version (as `$SRV.INFO` reports them), the subject
/// group of its endpoints, and how many requests one process handles at once.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service name (`gradients-intake`).
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
    /// One line for `$SRV.INFO`.
    pub description: &'static str,
    /// The subject prefix of its endpoints (`gradients.api.tasks`).
    pub group: &'static str,
    /// Endpoint names under the group.
    pub endpoints: &'static [&'static str],
    /// Requests handled at once; more wait.
    pub max_concurrent: usize,
}

/// Registers the service and hands each request to `handler` (at most
/// `spec.max_concurrent` at once) until `stop`; then stops taking requests (the queue
/// group gives them to other replicas) and lets those in hand finish.
pub async fn serve<H, F>(
    client: &async_nats::Client,
    spec: ServiceSpec,
    stop: CancellationToken,
    handler: H,
) -> Result<(), BusError>
where
    H: Fn(&'static str, Request) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let fail = |source: crate::Cause| BusError::Service { service: spec.name.to_owned(), source };
    let service =
        client.service_builder().description(spec.description).start(spec.name, spec.version).await.map_err(fail)?;
    let group = service.group(spec.group);
    let mut endpoints = Vec::new();
    for name in spec.endpoints {
        let endpoint = group.endpoint(*name).await.map_err(fail)?;
        endpoints.push(endpoint.map(move |request| (*name, request)).boxed());
    }
    let mut requests = stream::select_all(endpoints);
    let limit = Arc::new(Semaphore::new(spec.max_concurrent));
    let handler = Arc::new(handler);
    let mut in_flight = JoinSet::new();
    let spec_name = spec.name;
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
        // Kept to answer the caller if the handler panics, which would otherwise leave it
        // waiting for its timeout.
        let (replier, reply_to) = (client.clone(), request.message.reply.clone());
        let handled = handler(endpoint, request);
        in_flight.spawn(async move {
            if let Err(payload) = AssertUnwindSafe(handled).catch_unwind().await {
                let panic = crate::worker::panic_message(payload.as_ref());
                answer_panicked(&replier, spec_name, endpoint, reply_to, &panic).await;
            }
            drop(permit);
        });
    }
    drop(requests);
    if let Err(e) = service.stop().await {
        tracing::warn!(service = spec.name, error = %e, "stopping the micro service");
    }
    let drained = tokio::time::timeout(DRAIN_LIMIT, async { while in_flight.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(service = spec.name, "requests still running after {DRAIN_LIMIT:?}; abandoning them");
    }
    Ok(())
}

/// Answers a request whose handler panicked with an `INTERNAL` error and a reference, the
/// panic logged under it.
async fn answer_panicked(
    client: &async_nats::Client,
    service: &'static str,
    endpoint: &'static str,
    reply_to: Option<async_nats::Subject>,
    panic: &str,
) {
    let reference = new_reference();
    tracing::error!(service, endpoint, reference, panic, "request handler panicked");
    let Some(reply_to) = reply_to else { return };
    let error = ApiError {
        code: ErrorCode::Internal as i32,
        message: failure_message(ErrorCode::Internal, &reference),
        reference,
        ..Default::default()
    };
    let (status, headers) = error_headers(&error);
    let mut headers = headers;
    headers.insert(NATS_SERVICE_ERROR, status.as_str());
    headers.insert(NATS_SERVICE_ERROR_CODE, status_number(ErrorCode::Internal).to_string().as_str());
    if let Err(e) = client.publish_with_headers(reply_to, headers, bytes::Bytes::new()).await {
        tracing::warn!(service, endpoint, error = %e, "could not answer after the panic");
    }
}

/// A new correlation id for a failure: logged with the full error, sent to the client.
pub fn new_reference() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a client is told when the service itself failed: what kind of failure, and the
/// reference under which the cause was logged; never the cause's own text.
fn failure_message(code: ErrorCode, reference: &str) -> String {
    let what = match code {
        ErrorCode::Unavailable => "the service is unavailable (storage or bus); retry later",
        _ => "the service failed",
    };
    format!("{what} (reference {reference})")
}

/// A failure of the service itself, as the client sees it: `code` (`UNAVAILABLE` for what a
/// retry may fix, `INTERNAL` otherwise) and a fresh reference. `error` and its causes are
/// logged under that reference, for whoever the client reports it to; the client never sees
/// their text, which can quote the request, the schema or a server's address.
pub fn service_failure(code: ErrorCode, error: &(dyn std::error::Error + 'static)) -> ApiError {
    let reference = new_reference();
    tracing::error!(code = code.as_str_name(), reference, error = %crate::error_chain(error), "request failed");
    ApiError { code: code as i32, message: failure_message(code, &reference), reference, ..Default::default() }
}

/// Decodes a request as `Req`, runs `query`, answers with its result or its error (made
/// typed by `to_api`), and returns the error code it answered with, if any.
pub async fn answer<Req, Resp, E, Q, Fut>(
    request: &Request,
    query: Q,
    to_api: impl FnOnce(E) -> ApiError,
) -> Option<ErrorCode>
where
    Req: Message + Default,
    Resp: Message,
    Q: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, E>>,
{
    let result = match decode_request::<Req>(request) {
        Ok(decoded) => query(decoded).await.map_err(to_api),
        Err(malformed) => Err(malformed),
    };
    let code = result.as_ref().err().map(|e| ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal));
    respond(request, result).await;
    code
}

/// Header with the stable error code's name (`CHECKSUM_MISMATCH`).
pub const ERROR_CODE_HEADER: &str = "Gradients-Error-Code";
/// Header with the 1-based data set row an error is about.
pub const ERROR_ROW_HEADER: &str = "Gradients-Error-Row";
/// Header with the column an error is about.
pub const ERROR_COLUMN_HEADER: &str = "Gradients-Error-Column";
/// Header with the correlation id of a failure of the service itself (see
/// [`service_failure`]).
pub const ERROR_REFERENCE_HEADER: &str = "Gradients-Error-Reference";

/// Builds a typed error.
pub fn api_error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError { code: code as i32, message: message.into(), ..Default::default() }
}

/// The HTTP-like number that goes in `Nats-Service-Error-Code`, by error family.
pub fn status_number(code: ErrorCode) -> usize {
    use ErrorCode::*;
    match code {
        TaskNotFound | UploadNotFound | UnknownMiner => 404,
        IdempotencyConflict | InvalidStateTransition => 409,
        DatasetTooLarge | RowTooLarge | TooManyRows => 413,
        InvalidSignature => 401,
        RateLimited => 429,
        AccessDenied => 403,
        DeadlinePassed => 410,
        Unavailable => 503,
        Internal | Unspecified => 500,
        _ => 400,
    }
}

/// Decodes a request body, or says why it is malformed.
pub fn decode_request<M: Message + Default>(request: &Request) -> Result<M, ApiError> {
    M::decode(request.message.payload.as_ref()).map_err(|e| {
        api_error(
            ErrorCode::MalformedRequest,
            format!(
                "request is not a valid {}: {e}",
                std::any::type_name::<M>().rsplit("::").next().unwrap_or("message")
            ),
        )
    })
}

/// Answers a request. A failure to answer is logged: the caller times out and may retry,
/// which every endpoint tolerates (they are idempotent or read-only).
pub async fn respond<M: Message>(request: &Request, result: Result<M, ApiError>) {
    let outcome = match result {
        Ok(response) => request.respond(Ok(response.encode_to_vec().into())).await,
        Err(error) => {
            let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
            let (status, headers) = error_headers(&error);
            request.respond_with_headers(Err(ServiceError { status, code: status_number(code) }), headers).await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(subject = %request.message.subject, error = %e, "could not send the reply");
    }
}

/// Our typed headers for `error`, and the one-line status text of `Nats-Service-Error`.
fn error_headers(error: &ApiError) -> (String, HeaderMap) {
    let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal);
    let mut headers = HeaderMap::new();
    headers.insert(ERROR_CODE_HEADER, code.as_str_name());
    if error.row > 0 {
        headers.insert(ERROR_ROW_HEADER, error.row.to_string().as_str());
    }
    if !error.column.is_empty() {
        // A header value may hold no line break (async-nats panics on one), and the
        // column can come from a client's data.
        headers.insert(ERROR_COLUMN_HEADER, error.column.replace(['\r', '\n'], " ").as_str());
    }
    if !error.reference.is_empty() {
        headers.insert(ERROR_REFERENCE_HEADER, error.reference.replace(['\r', '\n'], " ").as_str());
    }
    // Header values are one line; keep the message readable but safe.
    (error.message.replace(['\r', '\n'], " "), headers)
}

/// Why a call to a service API failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The service answered with a typed error.
    #[error("{}: {}", code_name(.0), .0.message)]
    Service(ApiError),
    /// Nobody serves this subject: the service is not running or not reachable.
    #[error("no service answers on {0}: is it running?")]
    NoResponders(String),
    /// The service did not answer in time.
    #[error("no answer on {0} in time")]
    Timeout(String),
    /// The connection failed.
    #[error("request on {subject} failed: {reason}")]
    Transport { subject: String, reason: String },
    /// The answer was not the expected message.
    #[error("undecodable answer on {subject}: {reason}")]
    Decode { subject: String, reason: String },
}

impl CallError {
    /// The typed error code when the service answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Service(e) => ErrorCode::try_from(e.code).ok(),
            _ => None,
        }
    }
}

fn code_name(error: &ApiError) -> &'static str {
    ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Internal).as_str_name()
}

/// Sends `request` to `subject` and decodes the answer as `R`, or the typed error.
pub async fn call<R: Message + Default>(
    client: &async_nats::Client,
    subject: String,
    request: &impl Message,
    timeout: Duration,
) -> Result<R, CallError> {
    call_with_headers(client, subject, request.encode_to_vec().into(), HeaderMap::new(), timeout).await
}

/// [`call`] with an encoded body and headers (a signed request: the signature covers the
/// exact bytes sent).
pub async fn call_with_headers<R: Message + Default>(
    client: &async_nats::Client,
    subject: String,
    body: bytes::Bytes,
    headers: HeaderMap,
    timeout: Duration,
) -> Result<R, CallError> {
    use async_nats::RequestErrorKind;
    let sent = async_nats::Request::new().payload(body).headers(headers).timeout(Some(timeout));
    let reply = client.send_request(subject.clone(), sent).await.map_err(|e| match e.kind() {
        RequestErrorKind::NoResponders => CallError::NoResponders(subject.clone()),
        RequestErrorKind::TimedOut => CallError::Timeout(subject.clone()),
        _ => CallError::Transport { subject: subject.clone(), reason: e.to_string() },
    })?;
    if let Some(headers) = &reply.headers {
        if let Some(status) = headers.get(NATS_SERVICE_ERROR) {
            let header = |name: &str| headers.get(name).map(|v| v.to_string());
            let code = header(ERROR_CODE_HEADER).and_then(|name| ErrorCode::from_str_name(&name)).unwrap_or(
                match header(NATS_SERVICE_ERROR_CODE).as_deref() {
                    Some("503") => ErrorCode::Unavailable,
                    _ => ErrorCode::Internal,
                },
            );
            return Err(CallError::Service(ApiError {
                code: code as i32,
                message: status.to_string(),
                row: header(ERROR_ROW_HEADER).and_then(|r| r.parse().ok()).unwrap_or(0),
                column: header(ERROR_COLUMN_HEADER).unwrap_or_default(),
                reference: header(ERROR_REFERENCE_HEADER).unwrap_or_default(),
            }));
        }
    }
    R::decode(reply.payload.as_ref()).map_err(|e| CallError::Decode { subject, reason: e.to_string() })
}
