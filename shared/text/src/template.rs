//! How a data set row becomes text: a sequence of segments, each either prompt (context
//! the model is given) or answer (what it is scored on).
//!
//! The templates are Alpaca-style for instruct and DPO rows, and role-tagged turns for
//! chat. They are part of the market's contract: a miner trained on another template is
//! still scored on this one, so changing a template changes every score.

use gradients_data::{Row, TaskType};

use crate::TextError;

/// One piece of templated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    /// Whether the model is scored on these tokens.
    pub is_answer: bool,
}

/// The text before an instruct answer.
pub fn instruct_prompt(instruction: &str, input: &str) -> String {
    if input.is_empty() {
        format!("### Instruction:\n{instruction}\n### Response:\n")
    } else {
        format!("### Instruction:\n{instruction}\n### Input:\n{input}\n### Response:\n")
    }
}

/// The text before a DPO answer (the preference prompt as an instruction without input).
pub fn preference_prompt(prompt: &str) -> String {
    instruct_prompt(prompt, "")
}

/// The text a GRPO prompt is given to the model as: the preference prompt's template, so
/// that a completion is generated where an answer would follow. The trainer samples from
/// it and the evaluator generates from it; the reward functions see the row's raw prompt.
pub fn grpo_prompt(prompt: &str) -> String {
    preference_prompt(prompt)
}

/// The segments of a supervised row (instruct or chat). `row` is its 1-based number, for
/// errors. The end-of-text token is appended by the caller after the last answer.
pub fn sft_segments(task_type: TaskType, row_number: usize, row: &Row) -> Result<Vec<Segment>, TextError> {
    let text = |column: &'static str| {
        row.get_str(column).map(str::to_owned).ok_or(TextError::Column { row: row_number, column })
    };
    match task_type {
        TaskType::Instruct => {
            let input = row.get_str("input").unwrap_or("");
            Ok(vec![
                Segment { text: instruct_prompt(&text("instruction")?, input), is_answer: false },
                Segment { text: text("output")?, is_answer: true },
            ])
        }
        TaskType::Chat => chat_segments(row_number, row),
        // A DPO row's chosen answer is also a supervised example (used by SFT warm-up).
        TaskType::Dpo => Ok(vec![
            Segment { text: preference_prompt(&text("prompt")?), is_answer: false },
            Segment { text: text("chosen")?, is_answer: true },
        ]),
        TaskType::Grpo => Err(TextError::Unsupported(task_type)),
    }
}

/// `<|role|>\n` before every turn; assistant turns are answers.
fn chat_segments(row_number: usize, row: &Row) -> Result<Vec<Segment>, TextError> {
    let messages = row
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or(TextError::Column { row: row_number, column: "messages" })?;
    let mut segments = Vec::with_capacity(messages.len() * 2);
    for message in messages {
        let (Some(role), Some(content)) =
            (message.get("role").and_then(|v| v.as_str()), message.get("content").and_then(|v| v.as_str()))
        else {
            return Err(TextError::Row { row: row_number, reason: "a message lacks a role or content".into() });
        };
        segments.push(Segment { text: format!("<|{role}|>\n"), is_answer: false });
        segments.push(Segment { text: format!("{content}\n"), is_answer: role == "assistant" });
    }
    if !segments.iter().any(|s| s.is_answer) {
        return Err(TextError::Row { row: row_number, reason: "no assistant message to learn from".into() });
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: serde_json::Value) -> Row {
        Row::from_map(value.as_object().expect("object").clone())
    }

    #[test]
    fn instruct_rows_render_with_and_without_input() {
        let with =
            sft_segments(TaskType::Instruct, 1, &row(json!({"instruction": "Add", "input": "2 3", "output": "5"})))
                .expect("render");
        assert_eq!(with[0].text, "### Instruction:\nAdd\n### Input:\n2 3\n### Response:\n");
        assert_eq!(with[1], Segment { text: "5".into(), is_answer: true });
        let without =
            sft_segments(TaskType::Instruct, 1, &row(json!({"instruction": "Hi", "input": "", "output": "x"})))
                .expect("render");
        assert_eq!(without[0].text, "### Instruction:\nHi\n### Response:\n");
    }

    #[test]
    fn chat_marks_only_assistant_turns() {
        let r = row(json!({"messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]}));
        let segments = sft_segments(TaskType::Chat, 1, &r).expect("render");
        let answers: Vec<_> = segments.iter().filter(|s| s.is_answer).map(|s| s.text.as_str()).collect();
        assert_eq!(answers, ["hello\n", "ciao\n"]);
        assert_eq!(segments[0].text, "<|user|>\n");
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        let err = sft_segments(TaskType::Instruct, 4, &row(json!({"instruction": "x"}))).expect_err("no output");
        assert!(matches!(err, TextError::Column { row: 4, column: "output" }), "{err}");
        let err = sft_segments(TaskType::Grpo, 1, &row(json!({"prompt": "x"}))).expect_err("grpo");
        assert!(matches!(err, TextError::Unsupported(TaskType::Grpo)));
        let err = sft_segments(TaskType::Chat, 2, &row(json!({"messages": [{"role": "user", "content": "x"}]})))
            .expect_err("no assistant");
        assert!(err.to_string().contains("row 2"), "{err}");
    }
}
