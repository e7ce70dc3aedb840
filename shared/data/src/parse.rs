//! Validating an uploaded JSONL data set and canonicalising its rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::columns::ColumnMap;
use crate::error::DatasetError;
use crate::lines::{is_blank, numbered_lines, parse_object, strip_bom};
use crate::row::{canonical_bytes, Row};
use crate::schema::canonicalise;
use crate::task::TaskType;

/// Size and row-count limits a data set must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// Longest accepted line, in bytes, not counting its line ending.
    pub max_row_bytes: u64,
    /// Most rows accepted (blank lines do not count).
    pub max_rows: u64,
    /// Fewest rows accepted; intake keeps this at least 3 so every split part gets a row.
    pub min_rows: u64,
}

/// A validated data set: canonical rows plus the line each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    task_type: TaskType,
    rows: Vec<Row>,
    source_rows: Vec<u64>,
}

impl Dataset {
    /// The task the rows were validated for.
    pub fn task_type(&self) -> TaskType {
        self.task_type
    }

    /// The canonical rows, in file order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The 1-based line number of each row in the customer's file, parallel to [`Dataset::rows`].
    pub fn source_rows(&self) -> &[u64] {
        &self.source_rows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows (never true for a parsed data set with `min_rows >= 1`).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The canonical rows, dropping the line numbers.
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }
}

/// Validates a JSONL data set for `task_type` and canonicalises its rows.
///
/// Stops at the first problem, checking in this order: the column mapping (two roles on
/// one column), empty file, file size,
/// then line by line (1-based; blank lines are skipped but counted) line
/// size, UTF-8, JSON object (no key twice in one object), missing columns, value types, empty values,
/// task rules (chat messages, DPO preference), duplicates and the row limit;
/// finally the minimum row count. A leading UTF-8 byte order mark and `\r\n`
/// line endings are accepted.
pub fn parse(task_type: TaskType, columns: &ColumnMap, data: &[u8], limits: &Limits) -> Result<Dataset, DatasetError> {
    columns.check_for(task_type)?;
    if is_blank(strip_bom(data)) {
        return Err(DatasetError::Empty);
    }
    let bytes = data.len() as u64;
    if bytes > limits.max_bytes {
        return Err(DatasetError::TooLarge { bytes, max: limits.max_bytes });
    }

    let mut rows = Vec::new();
    let mut source_rows = Vec::new();
    // Keyed by digest rather than the bytes themselves to halve peak memory
    // on large files; a SHA-256 collision is not a practical concern.
    let mut seen: HashMap<[u8; 32], u64> = HashMap::new();
    for (row, line) in numbered_lines(data) {
        let line_bytes = line.len() as u64;
        if line_bytes > limits.max_row_bytes {
            return Err(DatasetError::RowTooLarge { row, bytes: line_bytes, max: limits.max_row_bytes });
        }
        if is_blank(line) {
            continue;
        }
        let object = parse_object(row, line)?;
        let canonical = canonicalise(task_type, columns, row, object)?;
        let digest: [u8; 32] = Sha256::digest(canonical_bytes(&canonical)).into();
        if let Some(&first_row) = seen.get(&digest) {
            return Err(DatasetError::DuplicateRow { row, first_row });
        }
        if rows.len() as u64 >= limits.max_rows {
            return Err(DatasetError::TooManyRows { max: limits.max_rows });
        }
        seen.insert(digest, row);
        rows.push(canonical);
        source_rows.push(row);
    }

    let count = rows.len() as u64;
    if count < limits.min_rows {
        return Err(DatasetError::TooFewRows { rows: count, min: limits.min_rows });
    }
    Ok(Dataset { task_type, rows, source_rows })
}
