//! What can be wrong with a task's reward specs or with a row they are applied to.

use thiserror::Error;

/// A reward spec that cannot be used; every variant names the function (and parameter).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpecError {
    /// A GRPO task must name at least one reward function.
    #[error("no reward function given; a GRPO task needs at least one")]
    Empty,
    /// More functions than [`crate::MAX_FUNCTIONS`].
    #[error("{count} reward functions given; at most {max} are allowed")]
    TooMany { count: usize, max: usize },
    /// A name that is not one of [`crate::FUNCTIONS`].
    #[error("unknown reward function {name:?}; known: {known}", known = crate::FUNCTIONS.join(", "))]
    UnknownFunction { name: String },
    /// A weight that is not finite and positive.
    #[error("reward function {function:?} has weight {weight}; a weight must be finite and greater than 0")]
    BadWeight { function: String, weight: f64 },
    /// A parameter the function does not read (a typo would otherwise be ignored silently).
    #[error("reward function {function:?} has no parameter {param:?}; it reads: {known}")]
    UnknownParam { function: String, param: String, known: String },
    /// A parameter the function cannot work without.
    #[error("reward function {function:?} needs parameter {param:?}")]
    MissingParam { function: String, param: String },
    /// A parameter whose value cannot be used.
    #[error("reward function {function:?} parameter {param:?} = {value:?}: {reason}")]
    BadParam { function: String, param: String, value: String, reason: String },
}

/// Why a data set row cannot be scored by a reward set; the caller adds the row number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ColumnError {
    /// The row lacks a column a function reads.
    #[error("missing column {column:?} that reward function {function:?} reads")]
    Missing { function: &'static str, column: String },
    /// The column holds something the function cannot use.
    #[error("column {column:?} (read by reward function {function:?}) must be {expected}, found {found}")]
    WrongType { function: &'static str, column: String, expected: &'static str, found: String },
}

impl ColumnError {
    /// The column the error is about.
    pub fn column(&self) -> &str {
        match self {
            ColumnError::Missing { column, .. } | ColumnError::WrongType { column, .. } => column,
        }
    }
}
