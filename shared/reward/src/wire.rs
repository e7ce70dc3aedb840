//! Reward specs on the wire (`gradients.v1.RewardFunction`) and the set a task carries.
//!
//! A [`Task`] names its rewards in `rewards` (name, weight, parameters); tasks from before
//! that field have only the names in `reward_functions`, each read as weight 1 with no
//! parameters. Intake fills both, so old readers still see the names.

use gradients_proto::v1::{RewardFunction, Task};

use crate::error::SpecError;
use crate::set::{RewardSet, RewardSpec};

impl From<&RewardFunction> for RewardSpec {
    /// An unset weight is 1.
    fn from(f: &RewardFunction) -> Self {
        Self { name: f.name.clone(), weight: f.weight.unwrap_or(1.0), params: f.params.clone() }
    }
}

impl From<&RewardSpec> for RewardFunction {
    fn from(spec: &RewardSpec) -> Self {
        Self { name: spec.name.clone(), weight: Some(spec.weight), params: spec.params.clone() }
    }
}

/// The specs a request or task names: `rewards` when given, else each of the old `names`
/// with weight 1.
pub fn specs_from_wire(rewards: &[RewardFunction], names: &[String]) -> Vec<RewardSpec> {
    if rewards.is_empty() {
        names.iter().map(RewardSpec::named).collect()
    } else {
        rewards.iter().map(RewardSpec::from).collect()
    }
}

impl TryFrom<&Task> for RewardSet {
    type Error = SpecError;

    /// The reward set a GRPO task is scored by (the trainer's and the evaluator's way in).
    fn try_from(task: &Task) -> Result<Self, SpecError> {
        RewardSet::new(specs_from_wire(&task.rewards, &task.reward_functions))
    }
}
