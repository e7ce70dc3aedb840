//! Intake's errors: why the service could not run, and why a request was refused.

use gradients_bus::objects::ObjectError;
use gradients_bus::BusError;
use gradients_data::DatasetError;
use gradients_proto::v1::{Error as ApiError, ErrorCode, TaskStatus};
use gradients_store::sea_orm::DbErr;

/// Why the intake service stopped.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] gradients_store::StoreError),
    /// The metrics and health endpoint could not start.
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    /// One of the service's loops panicked.
    #[error(transparent)]
    Panicked(#[from] gradients_bus::lifecycle::LoopPanicked),
    /// A test's fault point fired: the service stopped as if killed.
    #[error("stopped by the fault point `{0}`")]
    FaultInjected(&'static str),
}

/// Why one API request was refused. Every variant maps to a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request itself is wrong (type, model, hours, names, references).
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    /// The uploaded data set could not be read as declared.
    #[error(transparent)]
    Upload(#[from] ObjectError),
    /// The data set breaks a rule of its task type.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// No task has this id.
    #[error("no task with id {0:?}")]
    NotFound(String),
    /// The idempotency key belongs to a different request.
    #[error("idempotency key {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    /// The task is not in a state that allows this.
    #[error("task is {}; it cannot become {}", .from.label(), .to.label())]
    InvalidTransition { from: TaskStatus, to: TaskStatus },
    /// The request is unsigned, or its signature does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// A signed request outside the freshness window, or one already received.
    #[error("{0}")]
    Stale(String),
    /// The caller may not do this (a key not admitted, a bucket not its own).
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests of this kind in progress; the caller retries later.
    #[error("{0}")]
    Busy(String),
    /// The database failed. Its text is logged, never sent: it can quote the request.
    #[error("storage: {0}")]
    Store(#[from] DbErr),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The data set is larger than all the bytes intake processes at once
    /// (`intake.data_budget_bytes`): it could never be given room.
    #[error("the data set is {size} bytes, more than the {budget} bytes intake processes at once")]
    OverBudget { size: u64, budget: u64 },
    /// The blocking thread preparing the data set panicked or was cancelled.
    #[error("preparing the data set failed")]
    Worker(#[source] tokio::task::JoinError),
    /// The ledger did not answer for a task's result.
    #[error("the ledger: {0}")]
    Ledger(#[source] gradients_bus::api::CallError),
    /// A file of the winning model could not be copied for download (a reference that is
    /// not the winner's own, a manifest that does not parse, a checksum that does not match).
    #[error("the winning model's {path}: {reason}")]
    Staging { path: String, reason: String },
}

impl RequestError {
    /// Shorthand for a [`RequestError::BadRequest`].
    pub fn bad(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// The stable code a client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest { code, .. } => *code,
            Self::Upload(ObjectError::NotFound { .. }) => ErrorCode::UploadNotFound,
            Self::Upload(ObjectError::TooLarge { .. }) => ErrorCode::DatasetTooLarge,
            Self::Upload(ObjectError::Incomplete { .. }) => ErrorCode::UploadIncomplete,
            Self::Upload(ObjectError::ChecksumMismatch { .. }) => ErrorCode::ChecksumMismatch,
            Self::Upload(ObjectError::NotPlain { .. }) => ErrorCode::UploadNotPlain,
            Self::Upload(ObjectError::Stalled { .. }) => ErrorCode::UploadStalled,
            Self::Unauthenticated(_) => ErrorCode::InvalidSignature,
            Self::Stale(_) => ErrorCode::StaleMessage,
            Self::Forbidden(_) => ErrorCode::AccessDenied,
            Self::Busy(_) => ErrorCode::RateLimited,
            Self::OverBudget { .. } => ErrorCode::DatasetTooLarge,
            Self::Store(e) if !gradients_store::failure::classify(e).is_retryable() => ErrorCode::Internal,
            Self::Upload(ObjectError::Bus(_)) | Self::Bus(_) | Self::Store(_) => ErrorCode::Unavailable,
            Self::Worker(_) | Self::Staging { .. } => ErrorCode::Internal,
            Self::Ledger(_) => ErrorCode::Unavailable,
            Self::Dataset(e) => ErrorCode::from_str_name(e.code()).unwrap_or(ErrorCode::InvalidArgument),
            Self::NotFound(_) => ErrorCode::TaskNotFound,
            Self::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
            Self::InvalidTransition { .. } => ErrorCode::InvalidStateTransition,
        }
    }

    /// Whether the client sent something wrong (as opposed to the service failing).
    /// Only these are counted as rejections, and only these discard the upload.
    pub fn is_rejection(&self) -> bool {
        !matches!(self.code(), ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited)
    }

    /// The typed error sent to the client. A failure of the service itself is described
    /// by what failed and `reference` (logged beside the full error), never by the text
    /// of the database or the bus, which can quote the request or the schema.
    pub fn to_api(&self, reference: &str) -> ApiError {
        let (row, column) = match self {
            // The column comes from the customer's file and travels in a header: control
            // characters are spelled out, so it can neither break the reply nor add headers.
            Self::Dataset(e) => (e.row().unwrap_or(0), e.column().map(printable).unwrap_or_default()),
            _ => (0, String::new()),
        };
        let message = match self {
            Self::Store(_) if self.code() == ErrorCode::Internal => {
                format!("intake's storage failed (reference {reference})")
            }
            Self::Store(_) => format!("intake's storage is unavailable; retry later (reference {reference})"),
            Self::Worker(_) => format!("intake failed preparing the data set (reference {reference})"),
            Self::Bus(_) | Self::Upload(ObjectError::Bus(_)) => {
                format!("intake could not reach NATS; retry later (reference {reference})")
            }
            _ => self.to_string(),
        };
        ApiError { code: self.code() as i32, message, row, column, reference: reference.to_owned() }
    }
}

/// `text` with each control character written as its escape (`\n`, `\u{0}`).
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
