//! Tests of the public API, with shared helpers: rows are checked with the data crate's
//! own validator, the one intake runs on uploads.

mod corpus;
mod families;
mod grpo;
mod task_dir;

use gradients_data::{parse, ColumnMap, Dataset, Limits, TaskType};
use serde_json::{Map, Value};

use crate::TaskKind;

/// Intake's default size limits, but any row count, so small sets validate too.
fn limits() -> Limits {
    Limits { max_bytes: 256 * 1024 * 1024, max_row_bytes: 1024 * 1024, max_rows: 1_000_000, min_rows: 1 }
}

fn task_type(kind: TaskKind) -> TaskType {
    match kind {
        TaskKind::Instruct => TaskType::Instruct,
        TaskKind::Dpo => TaskType::Dpo,
        TaskKind::Grpo => TaskType::Grpo,
    }
}

/// Rows as JSONL, one compact object per line, as `write_task_dir` writes them.
fn jsonl(rows: &[Map<String, Value>]) -> String {
    rows.iter().map(|row| format!("{}\n", Value::Object(row.clone()))).collect()
}

/// Validates JSONL for `kind` with default columns, failing the test with the error.
fn validate(kind: TaskKind, data: &[u8]) -> Dataset {
    parse(task_type(kind), &ColumnMap::default(), data, &limits())
        .unwrap_or_else(|e| panic!("{kind} rows refused by the data crate: {e}"))
}

/// A string field of a generated row.
fn text<'a>(row: &'a Map<String, Value>, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("row without {key}: {row:?}"))
}
