//! The training report: a JSON record of the run and an SVG of its loss curves.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::strategy::{StrategyKind, Trial};
use crate::train::RunRecord;

/// Everything a person wants to know about a training run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingReport {
    pub strategy: StrategyKind,
    pub base_model: String,
    pub task_type: String,
    pub device: String,
    pub train_rows: usize,
    pub validation_rows: usize,
    /// The chosen run.
    pub run: RunRecord,
    /// Every configuration tried (the chosen one included).
    pub trials: Vec<Trial>,
    /// Tokens (real, not padding) processed per second by the chosen run.
    pub tokens_per_second: f64,
    /// Wall-clock seconds of the whole strategy.
    pub seconds: f64,
}

impl TrainingReport {
    /// A short human summary.
    pub fn summary(&self) -> String {
        format!(
            "{} on {} ({}): {} steps, best validation loss {:.4}, {:.0} tokens/s, {} trial(s), {:.1}s",
            self.strategy.as_str(),
            self.base_model,
            self.device,
            self.run.steps,
            self.run.best_validation_loss,
            self.tokens_per_second,
            self.trials.len(),
            self.seconds
        )
    }

    /// Writes `report.json` and `loss.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        plot_losses(self, &dir.join("loss.svg"))
    }
}

/// Training loss per step and validation loss at each validation, on one chart.
fn plot_losses(report: &TrainingReport, path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let train: Vec<(f64, f64)> =
        report.run.train_curve.iter().filter(|p| p.loss.is_finite()).map(|p| (p.step as f64, p.loss)).collect();
    let validation: Vec<(f64, f64)> =
        report.run.validation_curve.iter().filter(|p| p.loss.is_finite()).map(|p| (p.step as f64, p.loss)).collect();
    let (low, high) = train
        .iter()
        .chain(&validation)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (low, high) = if low.is_finite() { (low.min(high - 1e-3), high) } else { (0.0, 1.0) };
    let chart = Curves {
        caption: format!("{} — {}", report.strategy.as_str(), report.base_model),
        y_desc: "loss (nats / answer token)",
        y_range: (low * 0.95)..(high * 1.05),
        steps: ("train", train),
        validations: ("validation", validation),
    };
    chart.plot(path)
}

/// A training chart: one value per optimizer step (blue) and the validations (red, with
/// points), against the step. The supervised and the GRPO reports draw theirs with it.
pub(crate) struct Curves {
    pub caption: String,
    pub y_desc: &'static str,
    pub y_range: std::ops::Range<f64>,
    /// (label, (step, value)) of the per-step curve.
    pub steps: (&'static str, Vec<(f64, f64)>),
    /// (label, (step, value)) of the validations.
    pub validations: (&'static str, Vec<(f64, f64)>),
}

impl Curves {
    /// Draws the chart as an SVG at `path`.
    pub fn plot(self, path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (step_label, steps) = self.steps;
        let (validation_label, validations) = self.validations;
        let max_step = steps.iter().chain(&validations).map(|p| p.0).fold(1.0, f64::max);
        let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..max_step, self.y_range)?;
        chart.configure_mesh().x_desc("optimizer step").y_desc(self.y_desc).draw()?;
        chart
            .draw_series(LineSeries::new(steps, &BLUE))?
            .label(step_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(validations.clone(), RED.stroke_width(2)))?
            .label(validation_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart.draw_series(validations.into_iter().map(|p| Circle::new(p, 3, RED.filled())))?;
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
        root.present()?;
        Ok(())
    }
}
