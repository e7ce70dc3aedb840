//! Tests of the public API through the crate root, shared helpers first.

mod canonical;
mod errors;
mod split;

use crate::{parse, ColumnMap, Dataset, DatasetError, Limits, TaskType};

/// Generous limits so a test only trips the one it is about.
fn limits() -> Limits {
    Limits { max_bytes: 1 << 24, max_row_bytes: 1 << 16, max_rows: 100_000, min_rows: 1 }
}

/// Parses `text` with default columns and generous limits.
fn parse_str(task: TaskType, text: &str) -> Result<Dataset, DatasetError> {
    parse(task, &ColumnMap::default(), text.as_bytes(), &limits())
}

/// Parses `text`, failing the test with the error if it is rejected.
fn parse_ok(task: TaskType, text: &str) -> Dataset {
    match parse_str(task, text) {
        Ok(dataset) => dataset,
        Err(e) => panic!("expected {task} data to parse, got {e}"),
    }
}

/// Parses `text`, failing the test if it is accepted.
fn parse_err(task: TaskType, text: &str) -> DatasetError {
    match parse_str(task, text) {
        Ok(dataset) => panic!("expected an error, parsed {} rows", dataset.len()),
        Err(e) => e,
    }
}
