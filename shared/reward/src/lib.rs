//! GRPO reward functions: the one definition intake validates a task's rewards with, the
//! trainer optimises and the evaluator scores by, so a miner optimises exactly what it is
//! scored on.
//!
//! Pure and synchronous: no I/O, no clock, no randomness. A task names its functions as
//! [`RewardSpec`]s (name, weight, text parameters); [`RewardSet::new`] checks them into
//! typed [`Reward`]s, [`RewardSet::check_row`] says whether a data set row has the columns
//! they read, and [`RewardSet::score`] gives the weighted mean of the rewards, in [0, 1]
//! (every function's reward is in [0, 1], higher is better).
//!
//! | function | reads column | parameters | reward |
//! |---|---|---|---|
//! | `exact_match` | `column` (`answer`) | `column`, `ignore_case` | 1 if the trimmed completion equals the answer |
//! | `contains_answer` | `column` (`answer`) | `column`, `ignore_case` | 1 if the completion contains the answer |
//! | `length_penalty` | — | `max_chars` (256) | 1 up to `max_chars`, linearly 0 at twice that |
//! | `valid_json` | — | `required_keys` (comma-separated) | 1/0; with keys 0.5 + 0.5·share of keys present |
//! | `regex_format` | — | `pattern` (required, ≤ 1 KiB) | 1 if the trimmed completion fully matches |
//! | `numeric_closeness` | `column` (`answer`) | `column`, `tolerance` (0), `scale` | 1 within tolerance, linearly 0 at tolerance + scale |
//!
//! Hostile completions cannot crash or stall scoring: over [`MAX_COMPLETION_BYTES`] every
//! reward is 0, invalid UTF-8 is decoded lossily, JSON deeper than serde_json's recursion
//! limit is invalid, and patterns run on the linear-time `regex` crate with size limits.

mod error;
pub mod functions;
mod set;
mod wire;

pub use error::{ColumnError, SpecError};
pub use set::{
    Reward, RewardSet, RewardSpec, DEFAULT_COLUMN, DEFAULT_MAX_CHARS, FUNCTIONS, MAX_COMPLETION_BYTES, MAX_FUNCTIONS,
};
pub use wire::specs_from_wire;
