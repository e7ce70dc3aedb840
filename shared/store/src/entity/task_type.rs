//! The task type as intake and the ledger store it (`instruct`, `chat`, `dpo`, `grpo`), and
//! its one conversion to and from the wire enum.

use gradients_proto::v1;

use crate::label::{stored_label, Unspecified};

stored_label! {
    /// What a task trains.
    pub enum TaskType {
        Instruct => "instruct",
        Chat => "chat",
        Dpo => "dpo",
        Grpo => "grpo",
    }
}

impl From<TaskType> for v1::TaskType {
    fn from(stored: TaskType) -> Self {
        match stored {
            TaskType::Instruct => Self::Instruct,
            TaskType::Chat => Self::Chat,
            TaskType::Dpo => Self::Dpo,
            TaskType::Grpo => Self::Grpo,
        }
    }
}

impl TaskType {
    /// The stored value of a wire value; unspecified is never stored.
    pub fn from_proto(wire: v1::TaskType) -> Result<Self, Unspecified> {
        match wire {
            v1::TaskType::Instruct => Ok(Self::Instruct),
            v1::TaskType::Chat => Ok(Self::Chat),
            v1::TaskType::Dpo => Ok(Self::Dpo),
            v1::TaskType::Grpo => Ok(Self::Grpo),
            v1::TaskType::Unspecified => Err(Unspecified { kind: "TaskType", value: wire as i32 }),
        }
    }
}

impl TaskType {
    /// The type a wire value names; an unknown or unspecified value is an error.
    pub fn from_wire(value: i32) -> Result<Self, Unspecified> {
        v1::TaskType::try_from(value).map_err(|_| Unspecified { kind: "TaskType", value }).and_then(Self::from_proto)
    }
}
