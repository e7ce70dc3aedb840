//! Per-task row rules: which columns a row needs and how it is canonicalised.

use serde_json::{Map, Value};

use crate::columns::ColumnMap;
use crate::error::DatasetError;
use crate::lines::json_type;
use crate::row::Row;
use crate::task::TaskType;

/// What a column must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A non-blank string; the column must be present.
    Text,
    /// A string (possibly empty) or null, or the column may be absent.
    OptionalText,
    /// An array of chat messages; the column must be present.
    Messages,
}

/// One column a task reads: its canonical key, the customer's name, its shape.
struct Field<'a> {
    key: &'static str,
    column: &'a str,
    shape: Shape,
}

/// Shorthand for building a [`Field`].
fn field<'a>(key: &'static str, column: &'a str, shape: Shape) -> Field<'a> {
    Field { key, column, shape }
}

/// The columns a task reads, in the order they are checked and reported.
fn fields(task: TaskType, columns: &ColumnMap) -> Vec<Field<'_>> {
    match task {
        TaskType::Instruct => vec![
            field("instruction", &columns.instruction, Shape::Text),
            field("input", &columns.input, Shape::OptionalText),
            field("output", &columns.output, Shape::Text),
        ],
        TaskType::Chat => vec![field("messages", &columns.messages, Shape::Messages)],
        TaskType::Dpo => vec![
            field("prompt", &columns.prompt, Shape::Text),
            field("chosen", &columns.chosen, Shape::Text),
            field("rejected", &columns.rejected, Shape::Text),
        ],
        TaskType::Grpo => vec![field("prompt", &columns.prompt, Shape::Text)],
    }
}

/// Checks one parsed line against the task's rules and returns it canonicalised.
///
/// Problems are found kind by kind (all missing columns, then all types, then
/// empty values, then task rules) so the reported error follows the
/// documented order even when a row has several problems.
pub(crate) fn canonicalise(
    task: TaskType,
    columns: &ColumnMap,
    row: u64,
    mut object: Map<String, Value>,
) -> Result<Row, DatasetError> {
    let fields = fields(task, columns);
    for f in &fields {
        if f.shape != Shape::OptionalText && !object.contains_key(f.column) {
            return Err(DatasetError::MissingColumn { row, column: f.column.to_owned() });
        }
    }
    for f in &fields {
        let expected = match (f.shape, object.get(f.column)) {
            (Shape::Text, Some(Value::String(_)))
            | (Shape::OptionalText, None | Some(Value::Null | Value::String(_)))
            | (Shape::Messages, Some(Value::Array(_))) => continue,
            (Shape::Messages, _) => "an array of messages",
            (Shape::Text | Shape::OptionalText, _) => "a string",
        };
        return Err(DatasetError::WrongType {
            row,
            column: f.column.to_owned(),
            expected,
            found: object.get(f.column).map_or("nothing", json_type),
        });
    }
    for f in fields.iter().filter(|f| f.shape == Shape::Text) {
        if object.get(f.column).and_then(Value::as_str).is_some_and(is_blank) {
            return Err(DatasetError::EmptyValue { row, column: f.column.to_owned() });
        }
    }

    let mut out = Map::new();
    match task {
        TaskType::Instruct | TaskType::Dpo => {
            for f in &fields {
                // An absent or null optional input is stored as "" so every
                // instruct row has the same keys.
                let value = match object.remove(f.column) {
                    Some(Value::Null) | None => Value::String(String::new()),
                    Some(value) => value,
                };
                out.insert(f.key.to_owned(), value);
            }
            if task == TaskType::Dpo && identical(&out) {
                return Err(DatasetError::IdenticalPreference {
                    row,
                    chosen: columns.chosen.clone(),
                    rejected: columns.rejected.clone(),
                });
            }
        }
        TaskType::Chat => {
            let messages = object.remove(&columns.messages).unwrap_or(Value::Null);
            let messages = canonical_messages(&messages).map_err(|reason| DatasetError::InvalidMessages {
                row,
                column: columns.messages.clone(),
                reason,
            })?;
            out.insert("messages".to_owned(), messages);
        }
        TaskType::Grpo => {
            let prompt = object.remove(&columns.prompt).unwrap_or(Value::Null);
            // Every other key stays under its own name for the reward
            // functions. If the prompt column was renamed and the row also
            // has a key literally called "prompt", the mapped column wins.
            out = object;
            out.insert("prompt".to_owned(), prompt);
        }
    }
    Ok(Row::from_map(out))
}

/// Whether a string shows nothing: only whitespace, control characters and characters
/// that render as nothing (zero-width spaces and joiners, the byte order mark, bidi
/// controls, variation selectors, fillers, tags). A value of U+200B is as empty as "".
fn is_blank(s: &str) -> bool {
    s.chars().all(renders_as_nothing)
}

/// Whether `c` is whitespace or a character with no visible glyph.
fn renders_as_nothing(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'                          // soft hyphen
                | '\u{034F}'                    // combining grapheme joiner
                | '\u{061C}'                    // Arabic letter mark
                | '\u{115F}' | '\u{1160}'       // Hangul fillers
                | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
                | '\u{180B}'..='\u{180F}'       // Mongolian selectors and vowel separator
                | '\u{200B}'..='\u{200F}'       // zero-width space, (non-)joiner, marks
                | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
                | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, bidi isolates
                | '\u{2800}'                    // braille blank
                | '\u{3164}' | '\u{FFA0}'       // Hangul fillers
                | '\u{FE00}'..='\u{FE0F}'       // variation selectors
                | '\u{FEFF}'                    // byte order mark / zero-width no-break space
                | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation controls
                | '\u{1D173}'..='\u{1D17A}'     // musical formatting controls
                | '\u{E0000}'..='\u{E007F}'     // tags
                | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
        )
}

/// The text without what renders as nothing at either end.
fn visible_core(s: &str) -> &str {
    s.trim_matches(renders_as_nothing)
}

/// Whether a canonical DPO row's answers are the same, ignoring surrounding whitespace.
///
/// Answers that differ only in leading or trailing whitespace (or invisible
/// characters) carry no preference signal, so they count as identical.
fn identical(dpo: &Map<String, Value>) -> bool {
    let text = |key| dpo.get(key).and_then(Value::as_str).map(visible_core);
    text("chosen") == text("rejected")
}

/// The roles a chat message may have.
const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// Validates a conversation and reduces each message to `role` and `content`.
///
/// The error is a reason phrase for [`DatasetError::InvalidMessages`];
/// messages are numbered from 1 like rows.
fn canonical_messages(messages: &Value) -> Result<Value, String> {
    let Value::Array(items) = messages else {
        return Err(format!("expected an array, found {}", json_type(messages)));
    };
    if items.is_empty() {
        return Err("the conversation has no messages".to_owned());
    }
    let mut out = Vec::with_capacity(items.len());
    let mut has_user = false;
    let mut last_role = "";
    for (i, item) in (1u64..).zip(items) {
        let Value::Object(message) = item else {
            return Err(format!(
                "message {i} must be an object with \"role\" and \"content\", found {}",
                json_type(item)
            ));
        };
        let role = message_text(message, i, "role")?;
        if !ROLES.contains(&role) {
            return Err(format!("message {i} has role {role:?}; expected system, user or assistant"));
        }
        let content = message_text(message, i, "content")?;
        if is_blank(content) {
            return Err(format!("message {i} has empty content"));
        }
        has_user |= role == "user";
        last_role = role;
        // Other keys (names, tool calls, weights) are dropped: trainers only
        // understand role and content.
        let mut reduced = Map::new();
        reduced.insert("role".to_owned(), Value::String(role.to_owned()));
        reduced.insert("content".to_owned(), Value::String(content.to_owned()));
        out.push(Value::Object(reduced));
    }
    if !has_user {
        return Err("the conversation has no message from the user".to_owned());
    }
    if last_role != "assistant" {
        return Err(format!("the last message must be from the assistant, not the {last_role}"));
    }
    Ok(Value::Array(out))
}

/// A message's string field, or why it is missing or not a string.
fn message_text<'a>(message: &'a Map<String, Value>, i: u64, key: &str) -> Result<&'a str, String> {
    match message.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("message {i} has {key:?} {}, expected a string", json_type(other))),
        None => Err(format!("message {i} has no {key:?}")),
    }
}
