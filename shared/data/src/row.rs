//! One canonicalised data set row, and its deterministic JSONL encoding.
//!
//! A [`Row`] uses canonical key names whatever the customer called their
//! columns:
//! - instruct: `instruction`, `input` (always present, `""` when absent), `output`;
//! - chat: `messages`, each message reduced to `role` and `content`;
//! - DPO: `prompt`, `chosen`, `rejected`;
//! - GRPO: `prompt` plus every other key of the original row, unchanged.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::DatasetError;
use crate::lines::{is_blank, numbered_lines, parse_object};

/// A data set row keyed by canonical column names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Row(Map<String, Value>);

impl Row {
    /// Wraps a JSON object that already uses canonical keys.
    pub fn from_map(map: Map<String, Value>) -> Row {
        Row(map)
    }

    /// The value under a canonical key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The string under a canonical key, if it is one.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The whole row as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Unwraps the row into its JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// Compact JSON for a row with object keys sorted at every depth.
///
/// Sorting is done here rather than trusting `Map`'s order: another crate in
/// the build can switch on serde_json's `preserve_order` feature, which would
/// silently make the bytes (and so duplicate detection and splits) depend on
/// the customer's key order.
pub fn canonical_bytes(row: &Row) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(&mut out, row);
    out
}

/// Appends the canonical bytes of `row` to `out`.
fn write_canonical(out: &mut Vec<u8>, row: &Row) {
    let mut ser = serde_json::Serializer::new(out);
    // Serialising JSON values into a Vec cannot fail (keys are strings, numbers
    // are finite, there is no I/O), so the API stays infallible.
    let result = SortedObject(&row.0).serialize(&mut ser);
    debug_assert!(result.is_ok(), "serialising a JSON value failed: {result:?}");
}

/// Serialises a JSON object with its keys in byte order.
struct SortedObject<'a>(&'a Map<String, Value>);

/// Serialises a JSON value, sorting the keys of any objects inside it.
struct Sorted<'a>(&'a Value);

impl Serialize for SortedObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<_> = self.0.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in entries {
            map.serialize_entry(key, &Sorted(value))?;
        }
        map.end()
    }
}

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => SortedObject(map).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Sorted(item))?;
                }
                seq.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// JSONL of the rows' canonical bytes, one per line, each ending in `\n`.
pub fn to_jsonl(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        write_canonical(&mut out, row);
        out.push(b'\n');
    }
    out
}

/// Reads rows back from JSONL written by [`to_jsonl`]; blank lines are skipped.
///
/// This only checks that each line is a JSON object: the file came from our
/// own intake, which validated it, so the keys are trusted to be canonical.
pub fn from_jsonl(data: &[u8]) -> Result<Vec<Row>, DatasetError> {
    numbered_lines(data)
        .filter(|(_, line)| !is_blank(line))
        .map(|(row, line)| parse_object(row, line).map(Row))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Row {
        match value {
            Value::Object(map) => Row::from_map(map),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn canonical_bytes_are_compact_and_sorted_at_every_depth() {
        let r = row(json!({"b": 1, "a": {"z": [ {"y": 2, "x": 1} ], "c": null}}));
        assert_eq!(
            String::from_utf8(canonical_bytes(&r)).expect("utf8"),
            r#"{"a":{"c":null,"z":[{"x":1,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn jsonl_round_trip() {
        let rows = vec![
            row(json!({"prompt": "p1", "answer": 42, "meta": {"k": [1, "two"]}})),
            row(json!({"prompt": "line\nbreak \"quoted\" ünïcödé"})),
        ];
        let bytes = to_jsonl(&rows);
        assert!(bytes.ends_with(b"\n"));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 2);
        assert_eq!(from_jsonl(&bytes).expect("round trip"), rows);
        assert_eq!(from_jsonl(b"").expect("empty"), Vec::<Row>::new());
        assert!(to_jsonl(&[]).is_empty());
    }

    #[test]
    fn from_jsonl_reports_bad_lines_by_number() {
        let err = from_jsonl(b"{\"a\":1}\n\n[1]\n").expect_err("array line");
        assert_eq!(err.code(), "MALFORMED_ROW");
        assert_eq!(err.row(), Some(3));
        let err = from_jsonl(b"{\"a\":1}\n\xff\n").expect_err("bad utf8");
        assert_eq!(err, DatasetError::InvalidUtf8 { row: 2 });
    }
}
