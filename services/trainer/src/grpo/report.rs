//! The GRPO training report: a JSON record of what the strategy did and an SVG of the
//! rewards as training went (sampled rollouts and greedy validation).

use std::path::Path;

use gradients_reward::RewardSpec;
use plotters::prelude::*;
use serde::Serialize;

use super::run::GrpoRecord;
use super::search::{GrpoStrategy, GrpoTrial};

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
    let sampled = points(&report.run.reward_curve);
    let validation = points(&report.run.validation_curve);
    let max_step = sampled.iter().chain(&validation).map(|p| p.0).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} — {}", report.strategy.as_str(), report.base_model), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..max_step, 0.0..1.0)?;
    chart.configure_mesh().x_desc("optimizer step").y_desc("mean reward").draw()?;
    chart
        .draw_series(LineSeries::new(sampled, &BLUE))?
        .label("sampled (rollouts)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(validation.clone(), RED.stroke_width(2)))?
        .label("greedy (validation)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    chart.draw_series(validation.into_iter().map(|p| Circle::new(p, 3, RED.filled())))?;
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}
