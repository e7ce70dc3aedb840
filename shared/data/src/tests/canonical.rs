//! Accepted data sets: column mapping and the canonical form of each task's rows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{limits, parse_ok};
use crate::{canonical_bytes, from_jsonl, parse, to_jsonl, ColumnMap, TaskType};

fn as_json(row: &crate::Row) -> Value {
    Value::Object(row.as_map().clone())
}

#[test]
fn customer_columns_map_to_canonical_names() {
    let overrides =
        BTreeMap::from([("instruction".to_owned(), "question".to_owned()), ("output".to_owned(), "answer".to_owned())]);
    let columns = ColumnMap::with_overrides(&overrides).expect("known roles");
    let text = r#"{"question": "2+2?", "answer": "4", "source": "quiz"}"#;
    let dataset = parse(TaskType::Instruct, &columns, text.as_bytes(), &limits()).expect("valid");
    assert_eq!(as_json(&dataset.rows()[0]), json!({"instruction": "2+2?", "input": "", "output": "4"}));
}

#[test]
fn instruct_input_defaults_to_empty_string() {
    let dataset = parse_ok(
        TaskType::Instruct,
        "{\"instruction\": \"a\", \"output\": \"b\"}\n\
         {\"instruction\": \"c\", \"input\": null, \"output\": \"d\"}\n\
         {\"instruction\": \"e\", \"input\": \"ctx\", \"output\": \"f\"}\n",
    );
    let inputs: Vec<_> = dataset.rows().iter().map(|r| r.get_str("input")).collect();
    assert_eq!(inputs, [Some(""), Some(""), Some("ctx")]);
    assert_eq!(dataset.task_type(), TaskType::Instruct);
}

#[test]
fn grpo_keeps_other_keys_as_they_are() {
    let columns = ColumnMap { prompt: "question".into(), ..ColumnMap::default() };
    let text = r#"{"question": "2+2?", "reference": "4", "meta": {"level": [1, 2]}}"#;
    let dataset = parse(TaskType::Grpo, &columns, text.as_bytes(), &limits()).expect("valid");
    assert_eq!(as_json(&dataset.rows()[0]), json!({"prompt": "2+2?", "reference": "4", "meta": {"level": [1, 2]}}));
}

#[test]
fn chat_messages_keep_only_role_and_content() {
    let text = r#"{"messages": [
        {"role": "system", "content": "Be brief.", "name": "sys"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "weight": 1}
    ], "id": 7}"#
        .replace('\n', "");
    let dataset = parse_ok(TaskType::Chat, &text);
    assert_eq!(
        as_json(&dataset.rows()[0]),
        json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}
        ]})
    );
}

#[test]
fn dpo_rows_use_canonical_names() {
    let columns =
        ColumnMap { prompt: "q".into(), chosen: "good".into(), rejected: "bad".into(), ..ColumnMap::default() };
    let text = r#"{"q": "Hi", "good": "Hello!", "bad": "Go away.", "score": 0.5}"#;
    let dataset = parse(TaskType::Dpo, &columns, text.as_bytes(), &limits()).expect("valid");
    assert_eq!(as_json(&dataset.rows()[0]), json!({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}));
}

#[test]
fn line_numbers_bom_crlf_and_missing_final_newline() {
    let text = "\u{feff}{\"prompt\": \"a\"}\r\n\r\n  \n{\"prompt\": \"b\"}\r\n{\"prompt\": \"c\"}";
    let dataset = parse_ok(TaskType::Grpo, text);
    assert_eq!(dataset.len(), 3);
    assert!(!dataset.is_empty());
    assert_eq!(dataset.source_rows(), [1, 4, 5]);
    // The same rows with a trailing newline parse the same.
    assert_eq!(parse_ok(TaskType::Grpo, &format!("{text}\n")), dataset);
}

#[test]
fn canonical_bytes_do_not_depend_on_key_order() {
    let a = parse_ok(TaskType::Grpo, r#"{"prompt": "p", "x": {"b": 1, "a": 2}, "y": 3}"#);
    let b = parse_ok(TaskType::Grpo, r#"{"y": 3, "x": {"a": 2, "b": 1}, "prompt": "p"}"#);
    let bytes = canonical_bytes(&a.rows()[0]);
    assert_eq!(bytes, canonical_bytes(&b.rows()[0]));
    assert_eq!(bytes, br#"{"prompt":"p","x":{"a":2,"b":1},"y":3}"#);
}

#[test]
fn parsed_rows_round_trip_through_jsonl() {
    let dataset = parse_ok(
        TaskType::Chat,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"q\\n\\\"1\\\"\"}, \
         {\"role\": \"assistant\", \"content\": \"ä\"}]}\n\
         {\"messages\": [{\"role\": \"user\", \"content\": \"q2\"}, \
         {\"role\": \"assistant\", \"content\": \"a2\"}]}\n",
    );
    let bytes = to_jsonl(dataset.rows());
    let back = from_jsonl(&bytes).expect("our own output");
    assert_eq!(back, dataset.rows());
    // Writing again gives identical bytes.
    assert_eq!(to_jsonl(&back), bytes);
}
