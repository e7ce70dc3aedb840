//! The Gradients wire contract, generated from `proto/gradients/v1/*.proto`, and the
//! official ONNX contract (`proto/onnx/onnx.proto`) that model artifacts are written in.
//!
//! Messages are encoded with prost; subjects and streams are not here but in the bus
//! crate's `subjects` module.

/// The ONNX model format (protobuf package `onnx`), as published by the ONNX project.
#[allow(clippy::all, missing_docs)]
pub mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// Version 1 of the contract (protobuf package `gradients.v1`).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/gradients.v1.rs"));

    impl Timestamp {
        /// The current time.
        pub fn now() -> Self {
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            Self { unix_ms }
        }
    }

    impl TaskStatus {
        /// Whether no further transition can happen.
        pub fn is_terminal(self) -> bool {
            matches!(self, Self::Scored | Self::Rejected | Self::Failed | Self::Cancelled)
        }

        /// Position in the lifecycle; a projection applies only forward moves, which
        /// makes it tolerant of redelivered and reordered status events.
        pub fn progress(self) -> u8 {
            match self {
                Self::Unspecified => 0,
                Self::Pending => 1,
                Self::Accepted => 2,
                Self::Dispatching => 3,
                Self::Training => 4,
                Self::Evaluating => 5,
                Self::Scored | Self::Rejected | Self::Failed | Self::Cancelled => 6,
            }
        }

        /// Lower-case name for people and database columns ("accepted").
        pub fn label(self) -> String {
            self.as_str_name().to_ascii_lowercase()
        }

        /// Reads a [`TaskStatus::label`] back.
        pub fn from_label(label: &str) -> Option<Self> {
            Self::from_str_name(&label.to_ascii_uppercase()).filter(|s| *s != Self::Unspecified)
        }
    }

    impl TaskType {
        /// Lower-case name ("instruct"), as in task.toml and the CLI.
        pub fn label(self) -> String {
            self.as_str_name().to_ascii_lowercase()
        }

        /// Reads a [`TaskType::label`] back.
        pub fn from_label(label: &str) -> Option<Self> {
            Self::from_str_name(&label.to_ascii_uppercase()).filter(|t| *t != Self::Unspecified)
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::v1::*;

    /// Every status and type survives its label round trip; unspecified is never a label.
    #[test]
    fn labels_round_trip() {
        for status in [TaskStatus::Pending, TaskStatus::Accepted, TaskStatus::Scored, TaskStatus::Cancelled] {
            assert_eq!(TaskStatus::from_label(&status.label()), Some(status));
        }
        assert_eq!(TaskType::from_label("dpo"), Some(TaskType::Dpo));
        assert_eq!(TaskType::from_label("task_type_unspecified"), None);
        assert_eq!(TaskType::from_label("image"), None);
    }

    /// A message survives encode and decode, and garbage fails to decode.
    #[test]
    fn encode_decode() {
        let task = Task { id: "t".into(), r#type: TaskType::Grpo as i32, hours_to_complete: 1.5, ..Default::default() };
        let decoded = Task::decode(task.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, task);
        assert!(SubmitTaskRequest::decode(&b"\xff\xff\xff\xff"[..]).is_err());
    }
}
