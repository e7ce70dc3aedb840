//! The GRPO training report: a JSON record of what the strategy did and an SVG of the
//! rewards as training went (sampled rollouts and greedy validation).

use std::path::Path;

use gradients_reward::RewardSpec;
use serde::Serialize;

use super::run::GrpoRecord;
use super::search::{GrpoStrategy, GrpoTrial};
use crate::report::Curves;

/// Everything a person wants to know about a GRPO run.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoReport {
    pub strategy: GrpoStrategy,
    pub base_model: String,
    pub device: String,
    pub rewards: Vec<RewardSpec>,
    pub train_prompts: usize,
    pub validation_prompts: usize,
    /// Mean greedy reward of the start model on the validation prompts.
    pub start_reward: f64,
    /// The same for the model delivered.
    pub final_reward: f64,
    /// The chosen run.
    pub run: GrpoRecord,
    /// Every candidate tried (the chosen one last).
    pub trials: Vec<GrpoTrial>,
    /// Wall-clock seconds of the whole strategy.
    pub seconds: f64,
}

impl GrpoReport {
    /// A short human summary.
    pub fn summary(&self) -> String {
        format!(
            "{} on {} ({}): {} steps, {} rollouts, validation reward {:.3} -> {:.3}, {} trial(s), {:.1}s",
            self.strategy.as_str(),
            self.base_model,
            self.device,
            self.run.steps,
            self.run.rollouts,
            self.start_reward,
            self.final_reward,
            self.trials.len(),
            self.seconds
        )
    }

    /// Writes `report.json` and `reward.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        plot_rewards(self, &dir.join("reward.svg"))
    }
}

/// Sampled reward per rollout and greedy validation reward, on one chart (both in [0, 1]).
fn plot_rewards(report: &GrpoReport, path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let points = |curve: &[super::run::Point]| -> Vec<(f64, f64)> {
        curve.iter().filter(|p| p.value.is_finite()).map(|p| (p.step as f64, p.value)).collect()
    };
    let chart = Curves {
        caption: format!("{} — {}", report.strategy.as_str(), report.base_model),
        y_desc: "mean reward",
        y_range: 0.0..1.0,
        steps: ("sampled (rollouts)", points(&report.run.reward_curve)),
        validations: ("greedy (validation)", points(&report.run.validation_curve)),
    };
    chart.plot(path)
}
