//! Request/reply APIs on the NATS micro service protocol, both sides.
//!
//! A service answers with the encoded response message, or with an error carried in the
//! standard `Nats-Service-Error` / `Nats-Service-Error-Code` headers (so `nats micro`
//! tooling and `$SRV.STATS` see it) plus our typed detail in `Gradients-Error-*` headers.
//! [`call`] turns both back into a `Result` for clients.

use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::service::{error::Error as ServiceError, Request, NATS_SERVICE_ERROR, NATS_SERVICE_ERROR_CODE};
use gradients_proto::v1::{Error as ApiError, ErrorCode};
use prost::Message;

/// Header with the stable error code's name (`CHECKSUM_MISMATCH`).
pub const ERROR_CODE_HEADER: &str = "Gradients-Error-Code";
/// Header with the 1-based data set row an error is about.
pub const ERROR_ROW_HEADER: &str = "Gradients-Error-Row";
/// Header with the column an error is about.
pub const ERROR_COLUMN_HEADER: &str = "Gradients-Error-Column";

/// Builds a typed error.
pub fn api_error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError { code: code as i32, message: message.into(), row: 0, column: String::new() }
}

/// The HTTP-like number that goes in `Nats-Service-Error-Code`, by error family.
pub fn status_number(code: ErrorCode) -> usize {
    use ErrorCode::*;
    match code {
        TaskNotFound | UploadNotFound | UnknownMiner => 404,
        IdempotencyConflict | InvalidStateTransition => 409,
        DatasetTooLarge | RowTooLarge | TooManyRows => 413,
        InvalidSignature => 401,
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
            let mut headers = HeaderMap::new();
            headers.insert(ERROR_CODE_HEADER, code.as_str_name());
            if error.row > 0 {
                headers.insert(ERROR_ROW_HEADER, error.row.to_string().as_str());
            }
            if !error.column.is_empty() {
                headers.insert(ERROR_COLUMN_HEADER, error.column.as_str());
            }
            // Header values are one line; keep the message readable but safe.
            let status = error.message.replace(['\r', '\n'], " ");
            request.respond_with_headers(Err(ServiceError { status, code: status_number(code) }), headers).await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(subject = %request.message.subject, error = %e, "could not send the reply");
    }
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
    use async_nats::RequestErrorKind;
    let sent = async_nats::Request::new().payload(request.encode_to_vec().into()).timeout(Some(timeout));
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
            }));
        }
    }
    R::decode(reply.payload.as_ref()).map_err(|e| CallError::Decode { subject, reason: e.to_string() })
}
