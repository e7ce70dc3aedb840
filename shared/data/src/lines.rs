//! Splitting JSONL bytes into numbered lines and reading one line as a JSON object.

use serde_json::{Map, Value};

use crate::error::DatasetError;
use crate::strict_json::{duplicate_key, StrictValue};

/// The UTF-8 byte order mark some Windows tools put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Lines with their 1-based numbers, without `\n` or `\r\n` endings.
///
/// Blank lines are yielded too so that numbering matches what the customer
/// sees in an editor; callers skip them with [`is_blank`].
pub(crate) fn numbered_lines(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    strip_bom(data)
        .split(|&b| b == b'\n')
        .zip(1u64..)
        .map(|(line, row)| (row, line.strip_suffix(b"\r").unwrap_or(line)))
}

/// The data without a leading UTF-8 byte order mark.
///
/// Tolerated rather than reported as a baffling parse error on row 1.
pub(crate) fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(BOM).unwrap_or(data)
}

/// Whether a line has nothing but ASCII whitespace.
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Decodes one line as a JSON object, or says why it is not one.
pub(crate) fn parse_object(row: u64, line: &[u8]) -> Result<Map<String, Value>, DatasetError> {
    let text = std::str::from_utf8(line).map_err(|_| DatasetError::InvalidUtf8 { row })?;
    match serde_json::from_str::<StrictValue>(text) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(StrictValue(other)) => Err(DatasetError::MalformedRow {
            row,
            message: format!("expected a JSON object, found {}", json_type(&other)),
        }),
        Err(e) => match duplicate_key(&e) {
            Some(key) => Err(DatasetError::DuplicateKey { row, key }),
            None => Err(DatasetError::MalformedRow { row, message: json_error_message(&e) }),
        },
    }
}

/// serde_json's message with its position rewritten for a single line.
///
/// serde_json always says "at line 1" because it only saw one line, which
/// would contradict the row number we report; keep just the column.
fn json_error_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(at) => &full[..at],
        None => full.as_str(),
    };
    format!("{message} at character {}", e.column())
}

/// An English name for a JSON value's type, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_counts_blank_lines_and_strips_endings() {
        let lines: Vec<_> = numbered_lines(b"\xEF\xBB\xBFa\r\n\n  \nb").collect();
        assert_eq!(lines, vec![(1, &b"a"[..]), (2, &b""[..]), (3, &b"  "[..]), (4, &b"b"[..])]);
        assert!(is_blank(b" \t"));
        assert!(!is_blank(b" x"));
    }

    #[test]
    fn parse_error_mentions_character_not_line() {
        let err = parse_object(7, br#"{"a": }"#).expect_err("bad json");
        let DatasetError::MalformedRow { row, message } = err else {
            panic!("wrong kind: {err:?}");
        };
        assert_eq!(row, 7);
        assert!(message.contains("at character"), "{message}");
        assert!(!message.contains("line"), "{message}");
    }
}
