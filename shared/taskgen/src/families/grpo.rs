//! The reward functions each family's GRPO rows are scored by.
//!
//! A GRPO row is `{"prompt", "answer"}` (see `generate.rs`); the rewards read the answer
//! from the `answer` column. Families whose answers have a shape a tiny model can learn
//! before it gets them right (a number, a date, a JSON object, one of two words) pair a
//! shape reward with a correctness reward, so the reward rises in steps a group of
//! sampled completions can tell apart; the rest are scored by the exact answer alone.

use gradients_reward::RewardSpec;

use super::Family;

/// A regular-expression format check with `weight`.
fn pattern(pattern: &str, weight: f64) -> RewardSpec {
    RewardSpec::named("regex_format").with_param("pattern", pattern).weighted(weight)
}

/// The exact answer with `weight`.
fn exact(weight: f64) -> RewardSpec {
    RewardSpec::named("exact_match").weighted(weight)
}

impl Family {
    /// The reward functions its GRPO task names (read from `task.toml`'s `[[rewards]]`);
    /// the right answer scores 1 under every one of them, and every wrong answer the
    /// family knows scores less.
    pub fn grpo_rewards(&self) -> Vec<RewardSpec> {
        match self.name {
            // Closeness gives partial credit for a near miss; the pattern rewards writing
            // only a number.
            "arithmetic" => vec![RewardSpec::named("numeric_closeness").weighted(2.0), pattern("[0-9]+", 1.0)],
            "compare-numbers" | "count-vowels" => {
                vec![RewardSpec::named("numeric_closeness").weighted(2.0), pattern("[0-9]+", 1.0)]
            }
            "date-iso" => vec![pattern("[0-9]{4}-[0-9]{2}-[0-9]{2}", 1.0), exact(2.0)],
            "parity" => vec![pattern("even|odd", 1.0), exact(2.0)],
            "record-json" => {
                vec![RewardSpec::named("valid_json").with_param("required_keys", "name,age").weighted(1.0), exact(1.0)]
            }
            "key-value-json" => vec![RewardSpec::named("valid_json").weighted(1.0), exact(2.0)],
            "roman-numerals" => vec![pattern("[IVXLCDM]+", 1.0), exact(2.0)],
            _ => vec![exact(1.0)],
        }
    }
}
