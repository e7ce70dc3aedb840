//! Why a data set was rejected, as a value callers can report and match on.
//!
//! Every error carries a stable machine-readable [`DatasetError::code`] for
//! APIs and metrics, and a `Display` message a customer can act on: it names
//! the 1-based row (the line in their file) and the column as *they* named it.

/// The first problem found in a data set, or in a column mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    /// The file is empty or has only blank lines.
    #[error("the data set is empty: it has no non-blank lines")]
    Empty,
    /// The whole file is over the size limit.
    #[error("the data set is {bytes} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Size of the file.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// One line is over the per-row size limit.
    #[error("row {row}: the line is {bytes} bytes, over the limit of {max} bytes per row")]
    RowTooLarge {
        /// 1-based line number.
        row: u64,
        /// Length of the line without its line ending.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A line is not valid UTF-8.
    #[error("row {row}: the line is not valid UTF-8 text")]
    InvalidUtf8 {
        /// 1-based line number.
        row: u64,
    },
    /// A line is not a JSON object.
    #[error("row {row}: not a valid JSON object: {message}")]
    MalformedRow {
        /// 1-based line number.
        row: u64,
        /// What the JSON parser said.
        message: String,
    },
    /// A required column is absent.
    #[error("row {row}, column {column:?}: missing")]
    MissingColumn {
        /// 1-based line number.
        row: u64,
        /// The customer's name for the column.
        column: String,
    },
    /// A column holds the wrong kind of JSON value.
    #[error("row {row}, column {column:?}: expected {expected}, found {found}")]
    WrongType {
        /// 1-based line number.
        row: u64,
        /// The customer's name for the column.
        column: String,
        /// The JSON type that was needed, e.g. "a string".
        expected: &'static str,
        /// The JSON type that was there, e.g. "a number".
        found: &'static str,
    },
    /// A required text column is empty, or only whitespace and invisible characters.
    #[error("row {row}, column {column:?}: empty (only whitespace, invisible characters or nothing)")]
    EmptyValue {
        /// 1-based line number.
        row: u64,
        /// The customer's name for the column.
        column: String,
    },
    /// A chat `messages` column is not a usable conversation.
    #[error("row {row}, column {column:?}: {reason}")]
    InvalidMessages {
        /// 1-based line number.
        row: u64,
        /// The customer's name for the column.
        column: String,
        /// What is wrong with the conversation.
        reason: String,
    },
    /// A DPO row's chosen and rejected answers are the same.
    #[error(
        "row {row}: columns {chosen:?} and {rejected:?} are identical; \
         a preference pair needs two different answers"
    )]
    IdenticalPreference {
        /// 1-based line number.
        row: u64,
        /// The customer's name for the chosen column.
        chosen: String,
        /// The customer's name for the rejected column.
        rejected: String,
    },
    /// A row has the same content as an earlier row.
    #[error("row {row}: duplicate of row {first_row}")]
    DuplicateRow {
        /// 1-based line number of the repeat.
        row: u64,
        /// 1-based line number of the first occurrence.
        first_row: u64,
    },
    /// The file has more rows than allowed.
    #[error("the data set has more than {max} rows, the limit")]
    TooManyRows {
        /// The limit.
        max: u64,
    },
    /// The file has fewer rows than needed.
    #[error("the data set has {rows} rows; at least {min} are needed")]
    TooFewRows {
        /// Rows found.
        rows: u64,
        /// The minimum.
        min: u64,
    },
    /// A JSON object in a row names one key twice; JSON parsers disagree on which
    /// value counts, so the row is ambiguous.
    #[error("row {row}: the key {key:?} appears twice in one object")]
    DuplicateKey {
        /// 1-based line number.
        row: u64,
        /// The repeated key.
        key: String,
    },
    /// The column mapping sends two roles of the task to one column (a DPO pair whose
    /// chosen and rejected answers are one column, an answer that is its own prompt).
    #[error("roles {first:?} and {second:?} both read the column {column:?}; each role needs its own column")]
    ColumnRoleConflict {
        /// The first role, in the task's order.
        first: &'static str,
        /// The second role.
        second: &'static str,
        /// The customer's column both name.
        column: String,
    },
    /// A GRPO row lacks a column one of the task's reward functions reads, or holds a
    /// value it cannot use (the reason names the function).
    #[error("row {row}, column {column:?}: {reason}")]
    RewardColumn {
        /// 1-based line number.
        row: u64,
        /// The column as the row names it.
        column: String,
        /// Whether the column is absent (else its value is unusable).
        missing: bool,
        /// What the reward function needs, e.g. "missing column \"answer\" that reward function \"exact_match\" reads".
        reason: String,
    },
    /// A column override names a role that does not exist.
    #[error(
        "unknown column role {role:?}; expected one of \
         instruction, input, output, messages, prompt, chosen, rejected"
    )]
    UnknownColumnRole {
        /// The unknown key.
        role: String,
    },
}

impl DatasetError {
    /// Stable SCREAMING_SNAKE_CASE code for APIs, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DatasetError::Empty => "EMPTY_DATASET",
            DatasetError::TooLarge { .. } => "DATASET_TOO_LARGE",
            DatasetError::RowTooLarge { .. } => "ROW_TOO_LARGE",
            DatasetError::InvalidUtf8 { .. } => "INVALID_UTF8",
            DatasetError::MalformedRow { .. } => "MALFORMED_ROW",
            DatasetError::MissingColumn { .. } => "MISSING_COLUMN",
            DatasetError::WrongType { .. } => "WRONG_TYPE",
            DatasetError::EmptyValue { .. } => "EMPTY_VALUE",
            DatasetError::InvalidMessages { .. } => "INVALID_MESSAGES",
            DatasetError::IdenticalPreference { .. } => "IDENTICAL_PREFERENCE",
            DatasetError::DuplicateRow { .. } => "DUPLICATE_ROW",
            DatasetError::TooManyRows { .. } => "TOO_MANY_ROWS",
            DatasetError::TooFewRows { .. } => "TOO_FEW_ROWS",
            DatasetError::UnknownColumnRole { .. } => "UNKNOWN_COLUMN_ROLE",
            DatasetError::DuplicateKey { .. } => "DUPLICATE_KEY",
            DatasetError::ColumnRoleConflict { .. } => "COLUMN_ROLE_CONFLICT",
            DatasetError::RewardColumn { missing: true, .. } => "MISSING_COLUMN",
            DatasetError::RewardColumn { missing: false, .. } => "WRONG_TYPE",
        }
    }

    /// The 1-based row (line) the error is about, if it is about one row.
    pub fn row(&self) -> Option<u64> {
        match self {
            DatasetError::RowTooLarge { row, .. }
            | DatasetError::InvalidUtf8 { row }
            | DatasetError::MalformedRow { row, .. }
            | DatasetError::MissingColumn { row, .. }
            | DatasetError::WrongType { row, .. }
            | DatasetError::EmptyValue { row, .. }
            | DatasetError::InvalidMessages { row, .. }
            | DatasetError::IdenticalPreference { row, .. }
            | DatasetError::DuplicateRow { row, .. }
            | DatasetError::DuplicateKey { row, .. }
            | DatasetError::RewardColumn { row, .. } => Some(*row),
            DatasetError::ColumnRoleConflict { .. }
            | DatasetError::Empty
            | DatasetError::TooLarge { .. }
            | DatasetError::TooManyRows { .. }
            | DatasetError::TooFewRows { .. }
            | DatasetError::UnknownColumnRole { .. } => None,
        }
    }

    /// The customer's name of the column the error is about, if it is about one column.
    pub fn column(&self) -> Option<&str> {
        match self {
            DatasetError::MissingColumn { column, .. }
            | DatasetError::WrongType { column, .. }
            | DatasetError::EmptyValue { column, .. }
            | DatasetError::InvalidMessages { column, .. }
            | DatasetError::ColumnRoleConflict { column, .. }
            | DatasetError::RewardColumn { column, .. } => Some(column),
            DatasetError::DuplicateKey { key, .. } => Some(key),
            // Two columns are involved, so the caller reads the message instead.
            DatasetError::IdenticalPreference { .. } => None,
            DatasetError::Empty
            | DatasetError::TooLarge { .. }
            | DatasetError::RowTooLarge { .. }
            | DatasetError::InvalidUtf8 { .. }
            | DatasetError::MalformedRow { .. }
            | DatasetError::DuplicateRow { .. }
            | DatasetError::TooManyRows { .. }
            | DatasetError::TooFewRows { .. }
            | DatasetError::UnknownColumnRole { .. } => None,
        }
    }
}
