//! One test per error kind, checking its code, row, column and message,
//! plus the order in which problems are reported.

use std::collections::BTreeMap;

use super::{limits, parse_err, parse_ok};
use crate::{parse, ColumnMap, DatasetError, Limits, TaskType};

const GOOD: &str = r#"{"instruction": "Add", "input": "1 2", "output": "3"}"#;

/// `n` distinct valid instruct lines.
fn instruct_lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!(r#"{{"instruction": "Say {i}", "output": "{i}"}}"#)).collect()
}

fn parse_with(limits: &Limits, text: &[u8]) -> DatasetError {
    match parse(TaskType::Instruct, &ColumnMap::default(), text, limits) {
        Ok(d) => panic!("expected an error, parsed {} rows", d.len()),
        Err(e) => e,
    }
}

#[test]
fn empty_input() {
    for text in ["", "\n", "  \n\t\r\n\n", "\u{feff}\n"] {
        let err = parse_err(TaskType::Instruct, text);
        assert_eq!(err, DatasetError::Empty, "{text:?}");
        assert_eq!(err.code(), "EMPTY_DATASET");
        assert_eq!((err.row(), err.column()), (None, None));
    }
}

#[test]
fn too_large_comes_after_empty_and_before_rows() {
    let tiny = Limits { max_bytes: 10, ..limits() };
    // Whitespace-only is reported as empty even when it is over the limit.
    assert_eq!(parse_with(&tiny, &[b' '; 64]), DatasetError::Empty);
    let err = parse_with(&tiny, b"not json at all\n");
    assert_eq!(err, DatasetError::TooLarge { bytes: 16, max: 10 });
    assert_eq!(err.code(), "DATASET_TOO_LARGE");
    assert!(err.to_string().contains("16 bytes"), "{err}");
}

#[test]
fn row_too_large() {
    let limits = Limits { max_row_bytes: 60, ..limits() };
    let long = format!(r#"{{"instruction": "{}", "output": "x"}}"#, "a".repeat(60));
    let text = format!("{GOOD}\r\n\n{long}\n");
    let err = parse_with(&limits, text.as_bytes());
    assert_eq!(err.code(), "ROW_TOO_LARGE");
    assert_eq!(err.row(), Some(3));
    let DatasetError::RowTooLarge { bytes, max, .. } = err else {
        panic!("wrong kind: {err:?}");
    };
    assert_eq!((bytes, max), (long.len() as u64, 60));
}

#[test]
fn invalid_utf8() {
    let mut text = format!("{GOOD}\n").into_bytes();
    text.extend_from_slice(b"{\"instruction\": \"caf\xe9\", \"output\": \"x\"}\n");
    let err = parse_with(&limits(), &text);
    assert_eq!(err, DatasetError::InvalidUtf8 { row: 2 });
    assert_eq!(err.code(), "INVALID_UTF8");
    assert_eq!(err.to_string(), "row 2: the line is not valid UTF-8 text");
}

#[test]
fn malformed_rows() {
    let err = parse_err(TaskType::Instruct, &format!("{GOOD}\n\n{{\"instruction\": \n"));
    assert_eq!(err.code(), "MALFORMED_ROW");
    assert_eq!((err.row(), err.column()), (Some(3), None));
    assert!(err.to_string().starts_with("row 3: not a valid JSON object: "), "{err}");

    let err = parse_err(TaskType::Instruct, &format!("{GOOD}\n[\"a\", \"b\"]"));
    assert_eq!(err, DatasetError::MalformedRow { row: 2, message: "expected a JSON object, found an array".into() });
}

#[test]
fn missing_column_names_the_customers_column() {
    let text = format!("{GOOD}\n{{\"instruction\": \"Add\"}}\n");
    let err = parse_err(TaskType::Instruct, &text);
    assert_eq!(err, DatasetError::MissingColumn { row: 2, column: "output".into() });
    assert_eq!(err.code(), "MISSING_COLUMN");
    assert_eq!(err.to_string(), r#"row 2, column "output": missing"#);

    let overrides = BTreeMap::from([("output".to_owned(), "answer".to_owned())]);
    let columns = ColumnMap::with_overrides(&overrides).expect("known role");
    let err = parse(TaskType::Instruct, &columns, GOOD.as_bytes(), &limits()).expect_err("no answer column");
    assert_eq!((err.row(), err.column()), (Some(1), Some("answer")));
}

#[test]
fn wrong_type() {
    let err = parse_err(TaskType::Instruct, r#"{"instruction": "Add", "output": 3}"#);
    assert_eq!(
        err,
        DatasetError::WrongType { row: 1, column: "output".into(), expected: "a string", found: "a number" }
    );
    assert_eq!(err.code(), "WRONG_TYPE");
    assert_eq!(err.to_string(), r#"row 1, column "output": expected a string, found a number"#);
    // The optional input may be absent or null, but not another type.
    let err = parse_err(TaskType::Instruct, r#"{"instruction": "a", "input": [], "output": "b"}"#);
    assert_eq!(err.column(), Some("input"));
    let err = parse_err(TaskType::Chat, r#"{"messages": "hi"}"#);
    assert_eq!((err.code(), err.column()), ("WRONG_TYPE", Some("messages")));
}

#[test]
fn empty_value() {
    let err = parse_err(TaskType::Dpo, "{\"prompt\": \"p\", \"chosen\": \" \\n\\t\", \"rejected\": \"r\"}");
    assert_eq!(err, DatasetError::EmptyValue { row: 1, column: "chosen".into() });
    assert_eq!(err.code(), "EMPTY_VALUE");
    // An empty optional input is fine.
    parse_ok(TaskType::Instruct, r#"{"instruction": "a", "input": "", "output": "b"}"#);
}

#[test]
fn invalid_messages() {
    let cases = [
        (r#"[]"#, "no messages"),
        (r#"["hi"]"#, "message 1 must be an object"),
        (r#"[{"content": "hi"}]"#, r#"message 1 has no "role""#),
        (r#"[{"role": "tool", "content": "x"}]"#, r#"has role "tool""#),
        (r#"[{"role": "user", "content": null}]"#, r#"message 1 has "content" null"#),
        (r#"[{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]"#, "message 2 has empty content"),
        (r#"[{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]"#, "no message from the user"),
        (r#"[{"role": "user", "content": "q"}]"#, "last message must be from the assistant"),
    ];
    for (messages, reason) in cases {
        let text = format!("{{\"dialogue\": {messages}}}");
        let columns = ColumnMap { messages: "dialogue".into(), ..ColumnMap::default() };
        let err = parse(TaskType::Chat, &columns, text.as_bytes(), &limits()).expect_err(messages);
        assert_eq!(err.code(), "INVALID_MESSAGES", "{messages}: {err}");
        assert_eq!((err.row(), err.column()), (Some(1), Some("dialogue")));
        assert!(err.to_string().contains(reason), "{messages}: {err}");
    }
}

#[test]
fn identical_preference() {
    let text = "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n\
                {\"prompt\": \"p\", \"chosen\": \"same\", \"rejected\": \" same\\n\"}\n";
    let err = parse_err(TaskType::Dpo, text);
    assert_eq!(err.code(), "IDENTICAL_PREFERENCE");
    assert_eq!((err.row(), err.column()), (Some(2), None));
    assert!(err.to_string().contains(r#"columns "chosen" and "rejected""#), "{err}");
}

#[test]
fn duplicate_row_ignores_key_order_and_absent_input() {
    let text = format!(
        "{GOOD}\n{}\n{}\n",
        r#"{"instruction": "Other", "output": "x"}"#,
        r#"{"output": "x", "input": "", "instruction": "Other", "extra": 1}"#
    );
    let err = parse_err(TaskType::Instruct, &text);
    assert_eq!(err, DatasetError::DuplicateRow { row: 3, first_row: 2 });
    assert_eq!(err.code(), "DUPLICATE_ROW");
    assert_eq!(err.to_string(), "row 3: duplicate of row 2");
}

#[test]
fn too_many_rows() {
    let limits = Limits { max_rows: 3, ..limits() };
    let ok = instruct_lines(3).join("\n\n");
    let dataset = parse(TaskType::Instruct, &ColumnMap::default(), ok.as_bytes(), &limits).expect("exactly max_rows");
    assert_eq!(dataset.len(), 3);
    let err = parse_with(&limits, instruct_lines(4).join("\n").as_bytes());
    assert_eq!(err, DatasetError::TooManyRows { max: 3 });
    assert_eq!(err.code(), "TOO_MANY_ROWS");
}

#[test]
fn too_few_rows() {
    let limits = Limits { min_rows: 3, ..limits() };
    let err = parse_with(&limits, instruct_lines(2).join("\n\n\n").as_bytes());
    assert_eq!(err, DatasetError::TooFewRows { rows: 2, min: 3 });
    assert_eq!(err.code(), "TOO_FEW_ROWS");
    assert_eq!(err.to_string(), "the data set has 2 rows; at least 3 are needed");
}

#[test]
fn first_failure_wins() {
    // Row 2 is malformed and row 3 is missing a column: row 2 is reported.
    let text = format!("{GOOD}\n{{oops\n{{}}\n");
    assert_eq!(parse_err(TaskType::Instruct, &text).row(), Some(2));
    // Within one row, a missing column beats a wrong type in an earlier one.
    let err = parse_err(TaskType::Dpo, r#"{"prompt": 1, "chosen": "a"}"#);
    assert_eq!(err.column(), Some("rejected"));
    assert_eq!(err.code(), "MISSING_COLUMN");
    // A wrong type beats an empty value in an earlier column.
    let err = parse_err(TaskType::Dpo, r#"{"prompt": "", "chosen": "a", "rejected": false}"#);
    assert_eq!((err.code(), err.column()), ("WRONG_TYPE", Some("rejected")));
}

#[test]
fn codes_are_distinct_screaming_snake_case() {
    let errors = [
        DatasetError::Empty,
        DatasetError::TooLarge { bytes: 2, max: 1 },
        DatasetError::RowTooLarge { row: 1, bytes: 2, max: 1 },
        DatasetError::InvalidUtf8 { row: 1 },
        DatasetError::MalformedRow { row: 1, message: "m".into() },
        DatasetError::MissingColumn { row: 1, column: "c".into() },
        DatasetError::WrongType { row: 1, column: "c".into(), expected: "a string", found: "null" },
        DatasetError::EmptyValue { row: 1, column: "c".into() },
        DatasetError::InvalidMessages { row: 1, column: "c".into(), reason: "r".into() },
        DatasetError::IdenticalPreference { row: 1, chosen: "c".into(), rejected: "r".into() },
        DatasetError::DuplicateRow { row: 2, first_row: 1 },
        DatasetError::TooManyRows { max: 1 },
        DatasetError::TooFewRows { rows: 0, min: 1 },
        DatasetError::UnknownColumnRole { role: "x".into() },
        DatasetError::DuplicateKey { row: 1, key: "k".into() },
        DatasetError::ColumnRoleConflict { first: "chosen", second: "rejected", column: "c".into() },
    ];
    let mut codes: Vec<_> = errors.iter().map(DatasetError::code).collect();
    for code in &codes {
        assert!(code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'), "{code}");
    }
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}

/// A row naming one key twice is ambiguous (parsers keep the first or the last): refused,
/// at the top level and inside chat messages, naming the key.
#[test]
fn duplicate_json_key() {
    let text = format!("{GOOD}\n{{\"instruction\": \"a\", \"output\": \"shown\", \"output\": \"trained\"}}\n");
    let err = parse_err(TaskType::Instruct, &text);
    assert_eq!(err, DatasetError::DuplicateKey { row: 2, key: "output".into() });
    assert_eq!((err.code(), err.row(), err.column()), ("DUPLICATE_KEY", Some(2), Some("output")));
    assert_eq!(err.to_string(), r#"row 2: the key "output" appears twice in one object"#);

    let chat =
        r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "content": "b"}]}"#;
    let err = parse_err(TaskType::Chat, chat);
    assert_eq!(err, DatasetError::DuplicateKey { row: 1, key: "content".into() });
}

/// Values made only of zero-width or other invisible characters are empty values, and a
/// DPO pair that differs only by them is identical.
#[test]
fn invisible_values_are_empty() {
    for invisible in
        ["\u{200B}", "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}", " \u{00A0}\u{3164}\u{E0020}", "\u{202E}\u{2066}"]
    {
        let row = serde_json::json!({ "instruction": "a", "output": invisible }).to_string();
        let err = parse_err(TaskType::Instruct, &row);
        assert_eq!(err, DatasetError::EmptyValue { row: 1, column: "output".into() }, "{invisible:?}");
        let chat = serde_json::json!({ "messages": [
            { "role": "user", "content": "q" }, { "role": "assistant", "content": invisible } ] })
        .to_string();
        assert_eq!(parse_err(TaskType::Chat, &chat).code(), "INVALID_MESSAGES", "{invisible:?}");
    }
    let pair = serde_json::json!({ "prompt": "p", "chosen": "yes", "rejected": "\u{200B}yes\u{FEFF}" }).to_string();
    assert_eq!(parse_err(TaskType::Dpo, &pair).code(), "IDENTICAL_PREFERENCE");
    // Visible text with a joiner inside (emoji sequences) is fine.
    parse_ok(TaskType::Instruct, &serde_json::json!({ "instruction": "a", "output": "👩\u{200D}💻" }).to_string());
}

/// A column map sending two roles of the task to one column is refused before any row.
#[test]
fn two_roles_on_one_column() {
    for (task, overrides, first, second) in [
        (TaskType::Dpo, [("chosen", "answer"), ("rejected", "answer")], "chosen", "rejected"),
        (TaskType::Instruct, [("output", "q"), ("instruction", "q")], "instruction", "output"),
    ] {
        let overrides: BTreeMap<String, String> =
            overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let columns = ColumnMap::with_overrides(&overrides).expect("known roles");
        let err = parse(task, &columns, GOOD.as_bytes(), &limits()).expect_err("conflict");
        let column = overrides.values().next().unwrap().clone();
        assert_eq!(err, DatasetError::ColumnRoleConflict { first, second, column });
    }
}
