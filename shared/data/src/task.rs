//! The kinds of fine-tuning task a data set can be for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The training task a data set is for; decides which columns a row needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    /// Supervised fine-tuning on instruction / input / output rows.
    Instruct,
    /// Supervised fine-tuning on multi-turn conversations (`messages`).
    Chat,
    /// Direct preference optimisation on prompt / chosen / rejected rows.
    Dpo,
    /// Group relative policy optimisation on prompts scored by reward functions.
    Grpo,
}

impl TaskType {
    /// Every task type, in a fixed order.
    pub const ALL: [TaskType; 4] = [TaskType::Instruct, TaskType::Chat, TaskType::Dpo, TaskType::Grpo];

    /// The stable lowercase name used on the wire and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Instruct => "instruct",
            TaskType::Chat => "chat",
            TaskType::Dpo => "dpo",
            TaskType::Grpo => "grpo",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task type name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task type {0:?}; expected one of instruct, chat, dpo, grpo")]
pub struct UnknownTaskType(pub String);

impl FromStr for TaskType {
    type Err = UnknownTaskType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Case-insensitive because people type these on the command line.
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTaskType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
            let json = serde_json::to_string(&t).expect("serialise");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!("DPO".parse::<TaskType>(), Ok(TaskType::Dpo));
    }

    #[test]
    fn unknown_name_is_reported() {
        let err = "sft".parse::<TaskType>().expect_err("sft is not a task type");
        assert_eq!(err, UnknownTaskType("sft".into()));
        assert!(err.to_string().contains("\"sft\""), "{err}");
    }
}
