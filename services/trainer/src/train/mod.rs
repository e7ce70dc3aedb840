//! Training: data preparation, hyperparameters and schedule, objectives (SFT with an
//! answer-only loss, DPO), and resumable runs with early stopping.

pub mod data;
pub mod hyper;
pub mod objective;
pub mod run;

pub use data::{prepare, Item, TrainData};
pub use hyper::{Hyperparameters, Schedule};
pub use run::{Progress, Run, RunRecord, StopReason};

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the data set has {rows} training rows; at least {minimum} are needed")]
    TooFewRows { rows: usize, minimum: usize },
    #[error(transparent)]
    Text(#[from] gradients_text::TextError),
    #[error("training configuration: {0}")]
    Config(String),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// Stopped from outside between two optimizer steps (the miner is shutting down):
    /// nothing half-trained is exported or submitted.
    #[error("training was cancelled")]
    Cancelled,
}
