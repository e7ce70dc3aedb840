//! Seeded generators of small fine-tuning tasks and of a pretraining corpus to go with them.
//!
//! Tests, the demo and the market benchmark need data sets that tiny (1M–10M parameter)
//! byte-level models can actually learn, with answers that are short and fully determined
//! by the prompt so that scores mean something. Each [`Family`] makes such rows, as
//! instruct rows, as DPO rows with a plausible wrong answer, or as GRPO prompts with a
//! reference answer and the reward functions that score them, and [`corpus`] makes plain
//! text to pretrain the base model on. The corpus demonstrates every [`Knowledge::HalfKnown`]
//! family in other words and never mentions a [`Knowledge::New`] one, so a benchmark can
//! tell fine-tuning that builds on pretraining from fine-tuning that teaches from scratch.
//!
//! Everything is a pure function of its seed: the generators use ChaCha8, whose output is
//! the same on every platform, so the same seed gives byte-identical files anywhere.

mod corpus;
mod error;
mod families;
mod generate;
mod task_dir;
mod words;

use std::fmt;

pub use corpus::corpus;
pub use error::TaskgenError;
pub use families::Family;
pub use generate::generate;
pub use task_dir::{read_task_dir, write_task_dir, TaskDir, TaskFile};

/// Whether the pretraining corpus already shows a family's skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Knowledge {
    /// The corpus demonstrates the skill in different words; fine-tuning maps the
    /// instruction onto something the base model half knows.
    HalfKnown,
    /// The corpus has nothing of it; fine-tuning must teach it from scratch.
    New,
}

impl Knowledge {
    /// The stable kebab-case label: `half-known` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Knowledge::HalfKnown => "half-known",
            Knowledge::New => "new",
        }
    }
}

impl fmt::Display for Knowledge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of rows to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `{"instruction", "input", "output"}` rows.
    Instruct,
    /// `{"prompt", "chosen", "rejected"}` rows; the prompt is the instruction and the
    /// input on two lines.
    Dpo,
    /// `{"prompt", "answer"}` rows (the prompt as for DPO) scored by the family's reward
    /// functions, [`Family::grpo_rewards`].
    Grpo,
}

impl TaskKind {
    /// The task type's name in `task.toml` and on the wire: `instruct`, `dpo` or `grpo`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Instruct => "instruct",
            TaskKind::Dpo => "dpo",
            TaskKind::Grpo => "grpo",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every task family, in a fixed order.
pub fn families() -> &'static [Family] {
    &families::FAMILIES
}

/// The family with this name; the error lists the known names.
pub fn family(name: &str) -> Result<&'static Family, TaskgenError> {
    families().iter().find(|f| f.name == name).ok_or_else(|| TaskgenError::UnknownFamily {
        name: name.to_owned(),
        known: families().iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests;
