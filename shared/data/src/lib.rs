//! Customer data set formats for Gradients.
//!
//! Pure and synchronous, with no I/O. The intake service uses [`parse`] to
//! validate an uploaded JSONL file and [`split`] to cut it into train, synth
//! and test parts; the trainer and evaluator read those parts back with
//! [`from_jsonl`]. Rows are stored under canonical column names (see
//! [`Row`]) so that nobody downstream needs the customer's column mapping.

mod columns;
mod error;
mod lines;
mod parse;
mod row;
mod schema;
mod split;
mod strict_json;
mod task;

pub use columns::ColumnMap;
pub use error::DatasetError;
pub use parse::{parse, Dataset, Limits};
pub use row::{canonical_bytes, from_jsonl, to_jsonl, Row};
pub use split::{split, split_sizes, SplitPlan, SplitSizes, Splits};
pub use task::{TaskType, UnknownTaskType};

#[cfg(test)]
mod tests;
