//! The evaluator's errors: why the service stopped, why a base model could not be had, and
//! why a submission was refused (a [`Refusal`] is a result, published like a score).

use gradients_bus::BusError;
use gradients_proto::v1::{Error as ApiError, ErrorCode, EvaluationStatus};

/// Why the evaluator service stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The metrics and health endpoint could not start.
    #[error(transparent)]
    Telemetry(#[from] gradients_telemetry::TelemetryError),
    /// One of the service's loops panicked.
    #[error(transparent)]
    Panicked(#[from] gradients_bus::lifecycle::LoopPanicked),
    /// The evaluator's or dispatch's key could not be read or made.
    #[error(transparent)]
    Identity(#[from] gradients_miner::IdentityError),
    /// A configured key is not usable.
    #[error("{key}: {reason}")]
    Key { key: &'static str, reason: String },
    /// ONNX Runtime could not be loaded.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Why a base model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BaseModelError {
    /// Neither the `gradients-models` store nor the local models folder has it.
    #[error("base model {name} is neither published in gradients-models nor in {dir}")]
    NotFound { name: String, dir: String },
    /// A file of the model could not be read.
    #[error("base model {name}: {file}: {reason}")]
    File { name: String, file: String, reason: String },
    /// A stored file does not hash to the sha256 its index records.
    #[error("base model {name}: {file} does not match its published sha256")]
    Checksum { name: String, file: String },
    /// The configuration, weights or tokenizer are not a model we can run.
    #[error("base model {name}: {reason}")]
    Invalid { name: String, reason: String },
    /// The bus failed (worth retrying).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A submission refused before or while running: its status, stable code and reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status:?} ({code:?}): {message}")]
pub struct Refusal {
    pub status: EvaluationStatus,
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    /// An `INVALID` result with `code`.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: EvaluationStatus::Invalid, code, message: message.into() }
    }

    /// A submission that arrived after its deadline.
    pub fn late(message: impl Into<String>) -> Self {
        Self { status: EvaluationStatus::Late, code: ErrorCode::DeadlinePassed, message: message.into() }
    }

    /// A byte-identical copy of an earlier submission of another miner.
    pub fn duplicate(message: impl Into<String>) -> Self {
        Self { status: EvaluationStatus::Duplicate, code: ErrorCode::DuplicateArtifact, message: message.into() }
    }

    /// Accepted by the checks but could not be scored (a time or memory limit, a runtime
    /// error of the model itself).
    pub fn failed(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: EvaluationStatus::EvaluationFailed, code, message: message.into() }
    }

    /// The typed error carried by the evaluation.
    pub fn to_api(&self) -> ApiError {
        ApiError { code: self.code as i32, message: self.message.clone(), ..Default::default() }
    }
}
