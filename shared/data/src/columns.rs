//! Which of the customer's columns plays which role in a row.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::task::TaskType;

/// The customer's column name for each canonical role; defaults to the role names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnMap {
    /// Instruct: the task to perform.
    pub instruction: String,
    /// Instruct: optional extra context for the instruction.
    pub input: String,
    /// Instruct: the expected answer.
    pub output: String,
    /// Chat: the array of `{role, content}` messages.
    pub messages: String,
    /// DPO and GRPO: the prompt.
    pub prompt: String,
    /// DPO: the preferred answer.
    pub chosen: String,
    /// DPO: the dispreferred answer.
    pub rejected: String,
}

impl Default for ColumnMap {
    fn default() -> Self {
        ColumnMap {
            instruction: "instruction".into(),
            input: "input".into(),
            output: "output".into(),
            messages: "messages".into(),
            prompt: "prompt".into(),
            chosen: "chosen".into(),
            rejected: "rejected".into(),
        }
    }
}

impl ColumnMap {
    /// The defaults with some roles renamed; keys are role names, values the customer's columns.
    pub fn with_overrides(overrides: &BTreeMap<String, String>) -> Result<ColumnMap, DatasetError> {
        let mut map = ColumnMap::default();
        // Sorted so that with several bad keys the error is the same every time.
        let mut entries: Vec<_> = overrides.iter().collect();
        entries.sort();
        for (role, column) in entries {
            let slot = match role.as_str() {
                "instruction" => &mut map.instruction,
                "input" => &mut map.input,
                "output" => &mut map.output,
                "messages" => &mut map.messages,
                "prompt" => &mut map.prompt,
                "chosen" => &mut map.chosen,
                "rejected" => &mut map.rejected,
                _ => return Err(DatasetError::UnknownColumnRole { role: role.clone() }),
            };
            slot.clone_from(column);
        }
        Ok(map)
    }

    /// The roles `task` reads with the column each reads, in the task's order.
    pub fn roles_of(&self, task: TaskType) -> Vec<(&'static str, &str)> {
        match task {
            TaskType::Instruct => {
                vec![("instruction", &self.instruction), ("input", &self.input), ("output", &self.output)]
            }
            TaskType::Chat => vec![("messages", &self.messages)],
            TaskType::Dpo => vec![("prompt", &self.prompt), ("chosen", &self.chosen), ("rejected", &self.rejected)],
            TaskType::Grpo => vec![("prompt", &self.prompt)],
        }
    }

    /// Refuses a mapping that sends two roles of `task` to one column: the model would be
    /// trained to answer with its own prompt, or a preference pair would compare an answer
    /// with itself.
    pub fn check_for(&self, task: TaskType) -> Result<(), DatasetError> {
        let roles = self.roles_of(task);
        for (i, (first, column)) in roles.iter().enumerate() {
            if let Some((second, _)) = roles[i + 1..].iter().find(|(_, other)| other == column) {
                return Err(DatasetError::ColumnRoleConflict { first, second, column: (*column).to_owned() });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn overrides_rename_only_the_given_roles() {
        let map = ColumnMap::with_overrides(&overrides(&[("instruction", "question"), ("output", "answer")]))
            .expect("known roles");
        assert_eq!(map.instruction, "question");
        assert_eq!(map.output, "answer");
        assert_eq!(map.input, "input");
        assert_eq!(map.prompt, "prompt");
    }

    #[test]
    fn unknown_role_is_an_error_naming_it() {
        let err = ColumnMap::with_overrides(&overrides(&[("question", "q"), ("answer", "a")])).expect_err("not roles");
        assert_eq!(err.code(), "UNKNOWN_COLUMN_ROLE");
        // The first key in sorted order is reported, so the result is stable.
        assert_eq!(err, DatasetError::UnknownColumnRole { role: "answer".into() });
        assert!(err.to_string().contains("\"answer\""), "{err}");
    }

    #[test]
    fn two_roles_of_one_task_may_not_share_a_column() {
        let dpo = ColumnMap::with_overrides(&overrides(&[("chosen", "answer"), ("rejected", "answer")])).unwrap();
        let err = dpo.check_for(TaskType::Dpo).expect_err("chosen = rejected");
        assert_eq!(
            err,
            DatasetError::ColumnRoleConflict { first: "chosen", second: "rejected", column: "answer".into() }
        );
        assert_eq!((err.code(), err.column()), ("COLUMN_ROLE_CONFLICT", Some("answer")));
        // Roles of other task types may share it: an instruct task never reads chosen.
        dpo.check_for(TaskType::Instruct).expect("instruct reads neither");

        let instruct = ColumnMap::with_overrides(&overrides(&[("output", "instruction")])).unwrap();
        let err = instruct.check_for(TaskType::Instruct).expect_err("output = instruction");
        assert_eq!(err.code(), "COLUMN_ROLE_CONFLICT");
        assert!(err.to_string().contains("\"instruction\" and \"output\""), "{err}");
        ColumnMap::default().check_for(TaskType::Dpo).expect("defaults are distinct");
    }

    #[test]
    fn deserialises_partial_config_with_defaults() {
        let map: ColumnMap = serde_json::from_str(r#"{"prompt": "question"}"#).expect("partial map");
        assert_eq!(map.prompt, "question");
        assert_eq!(map.chosen, "chosen");
        assert!(serde_json::from_str::<ColumnMap>(r#"{"answer": "a"}"#).is_err());
    }
}
