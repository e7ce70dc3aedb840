//! What `gradients bench market` writes: `market.json` (every figure and per-task row),
//! `market.md` (the table), and `market.svg` / `market.png` (per task: the base model,
//! the fixed baseline, each strategy and the market's winner, on the report rows).
//!
//! A task's values are losses, or mean rewards for GRPO (its `metric`); the Rust fields
//! say `value`, the JSON names them `…_loss` or `…_reward` by the task's metric
//! ([`name_values`]), so a reader never takes a reward for a loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gradients_data::TaskType;
use plotters::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::holdout::Holdout;
use super::pipeline::{BaseModelDir, MinerBudget};
use super::stats::{self, gain, improvement, Comparison, Summary, TaskOutcome};
use super::{MarketArgs, BASELINE};

/// One strategy's miner on one task.
#[derive(Debug, Clone, Serialize)]
pub struct StrategyRow {
    pub miner_id: String,
    /// Its submitted model's loss (GRPO: mean reward) on the report rows; `None` when it
    /// submitted nothing or the evaluator's checks refuse the file.
    pub report_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_refusal: Option<String>,
    /// The ledger's verdict on the hidden rows: its reason, rank and ranking loss.
    pub ledger_reason: String,
    pub ledger_rank: u32,
    pub ranking_loss: Option<f64>,
}

/// The second market of a task: every miner with 1/K of the budget.
#[derive(Debug, Clone, Serialize)]
pub struct EqualComputeRow {
    pub task_id: String,
    pub winner_strategy: Option<String>,
    /// The winner's report value (the base model's when nobody delivered).
    pub winner_value: f64,
    pub strategies: BTreeMap<String, StrategyRow>,
}

/// One task's results.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub task: String,
    pub dir: PathBuf,
    #[serde(rename = "type")]
    pub task_type: &'static str,
    /// `loss` (lower is better) or `reward` (GRPO: the evaluator's mean greedy reward,
    /// higher is better).
    pub metric: &'static str,
    pub higher_is_better: bool,
    /// Rows the market saw (split by intake into train, synthetic and test) and rows held
    /// out for the report.
    pub market_rows: usize,
    pub report_rows: usize,
    pub task_id: String,
    pub base_value: f64,
    pub baseline_value: f64,
    pub winner_strategy: Option<String>,
    pub winner_value: f64,
    /// The winner's gain over the baseline relative to the baseline's value, the right way
    /// round for the metric; `None` when the baseline's value is not positive (a reward of 0).
    pub improvement: Option<f64>,
    /// The winner's gain over the baseline in the metric's units (positive is better).
    pub gain: f64,
    /// Paired-bootstrap confidence that the winner's model beats the baseline's on the
    /// population of the report rows (0.5 when the winner is the baseline's model).
    pub confidence: Option<f64>,
    pub best_single_value: Option<f64>,
    pub improvement_vs_best_single: Option<f64>,
    pub confidence_vs_best_single: Option<f64>,
    pub strategies: BTreeMap<String, StrategyRow>,
    pub equal_compute: Option<EqualComputeRow>,
    #[serde(skip)]
    row_losses: BTreeMap<String, Vec<f64>>,
}

impl TaskRow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        task: String,
        dir: PathBuf,
        task_type: TaskType,
        split: &Holdout,
        task_id: String,
        base_value: f64,
        strategies: BTreeMap<String, StrategyRow>,
        winner_strategy: Option<String>,
        row_losses: BTreeMap<String, Vec<f64>>,
        args: &MarketArgs,
    ) -> Self {
        let value_of = |name: Option<&String>| {
            name.and_then(|n| strategies.get(n)).and_then(|s| s.report_value).unwrap_or(base_value)
        };
        let baseline_value = value_of(Some(&BASELINE.to_owned()));
        let winner_value = value_of(winner_strategy.as_ref());
        let higher_is_better = stats::higher_is_better(task_type);
        let confidence = confidence(&row_losses, winner_strategy.as_deref(), BASELINE, args);
        Self {
            task,
            dir,
            task_type: task_type.as_str(),
            metric: if higher_is_better { "reward" } else { "loss" },
            higher_is_better,
            market_rows: split.market.len(),
            report_rows: split.report.len(),
            task_id,
            base_value,
            baseline_value,
            improvement: improvement(baseline_value, winner_value, higher_is_better),
            gain: gain(baseline_value, winner_value, higher_is_better),
            winner_strategy,
            winner_value,
            confidence,
            best_single_value: None,
            improvement_vs_best_single: None,
            confidence_vs_best_single: None,
            strategies,
            equal_compute: None,
            row_losses,
        }
    }

    /// What the statistics need: values with a missing model counted as the base model.
    fn outcome(&self) -> TaskOutcome {
        TaskOutcome {
            higher_is_better: self.higher_is_better,
            base_value: self.base_value,
            strategy_values: self
                .strategies
                .iter()
                .map(|(name, s)| (name.clone(), s.report_value.unwrap_or(self.base_value)))
                .collect(),
            market_value: self.winner_value,
            equal_compute_market_value: self.equal_compute.as_ref().map(|e| e.winner_value),
        }
    }
}

/// Paired-bootstrap confidence that `winner`'s model beats `reference`'s on the report rows
/// (per-row losses; a GRPO row's is its negated reward, as the evaluator gives the ledger).
fn confidence(
    row_losses: &BTreeMap<String, Vec<f64>>,
    winner: Option<&str>,
    reference: &str,
    args: &MarketArgs,
) -> Option<f64> {
    let (a, b) = (row_losses.get(winner?)?, row_losses.get(reference)?);
    stats::confidence(a, b, args.resamples, args.seed)
}

/// Everything the benchmark found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub tasks: Vec<TaskRow>,
    pub config: serde_json::Value,
}

fn comparison_keys(prefix: &str, suffix: &str, c: Option<&Comparison>) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert(format!("{prefix}win_rate{suffix}"), json!(c.map(|c| c.win_rate)));
    map.insert(format!("{prefix}mean_improvement{suffix}"), json!(c.map(|c| c.mean_improvement)));
    map.insert(format!("{prefix}median_improvement{suffix}"), json!(c.map(|c| c.median_improvement)));
    map.insert(format!("{prefix}mean_gain{suffix}"), json!(c.map(|c| c.mean_gain)));
    map
}

impl Report {
    pub fn build(
        args: &MarketArgs,
        base: &BaseModelDir,
        full: MinerBudget,
        split: MinerBudget,
        mut tasks: Vec<TaskRow>,
        elapsed: Duration,
    ) -> Self {
        let outcomes: Vec<TaskOutcome> = tasks.iter().map(TaskRow::outcome).collect();
        let summary = stats::summarize(&outcomes, BASELINE);
        if let Some(best) = &summary.best_single_strategy {
            for (row, outcome) in tasks.iter_mut().zip(&outcomes) {
                let best_value = outcome.strategy_values[best];
                row.best_single_value = Some(best_value);
                row.improvement_vs_best_single = improvement(best_value, row.winner_value, row.higher_is_better);
                row.confidence_vs_best_single = confidence(&row.row_losses, row.winner_strategy.as_deref(), best, args);
            }
        }
        let machine = json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu_model": cpu_model(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        });
        let config = json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "tasks_dir": args.tasks,
            "strategies": args.strategies,
            "baseline": BASELINE,
            "base_model": {"name": base.name, "dir": base.dir},
            "seed": args.seed,
            "budget": {
                "unit": if args.minutes.is_some() { "minutes" } else { "steps" },
                "per_miner_steps": full.max_steps,
                "per_miner_hours": full.hours,
                "equal_compute_per_miner_steps": if args.no_equal_compute { None } else { Some(split.max_steps) },
                "equal_compute_per_miner_hours": if args.no_equal_compute { None } else { Some(split.hours) },
            },
            "report_fraction": args.report_fraction,
            "bootstrap_resamples": args.resamples,
            "machine": machine,
            "seconds": elapsed.as_secs_f64(),
        });
        Self { summary, tasks, config }
    }

    /// The JSON document: the headline keys at the top level, fractions not percents.
    pub fn json(&self) -> serde_json::Value {
        let mut top = serde_json::Map::new();
        top.extend(comparison_keys("", "", self.summary.vs_baseline.as_ref()));
        top.extend(comparison_keys("", "_vs_best_single", self.summary.vs_best_single.as_ref()));
        top.extend(comparison_keys("", "_equal_compute", self.summary.equal_compute.as_ref()));
        top.insert("best_single_strategy".into(), json!(self.summary.best_single_strategy));
        top.insert("strategy_mean_improvement".into(), json!(self.summary.strategy_mean_improvement));
        top.insert("strategy_mean_gain".into(), json!(self.summary.strategy_mean_gain));
        top.insert("task_count".into(), json!(self.tasks.len()));
        top.insert("metric".into(), json!(self.metric()));
        let mut tasks = json!(self.tasks);
        if let Some(rows) = tasks.as_array_mut() {
            for (row, task) in rows.iter_mut().zip(&self.tasks) {
                name_values(row, task.metric);
            }
        }
        top.insert("tasks".into(), tasks);
        top.insert("config".into(), self.config.clone());
        serde_json::Value::Object(top)
    }

    /// `loss`, `reward`, or `mixed` when the tasks have both.
    fn metric(&self) -> &'static str {
        match self.tasks.first().map(|t| t.metric) {
            Some(first) if self.tasks.iter().all(|t| t.metric == first) => first,
            Some(_) => "mixed",
            None => "loss",
        }
    }

    /// The Markdown table and the overall figures.
    pub fn table(&self) -> String {
        let strategies: Vec<&String> = self.tasks.first().map(|t| t.strategies.keys().collect()).unwrap_or_default();
        let mut out = format!(
            "Values on the report rows: {} ({}).\n\n| task | base |",
            self.metric(),
            match self.metric() {
                "reward" => "the evaluator's mean greedy reward, higher is better",
                "loss" => "test loss, lower is better",
                _ => "losses lower is better, rewards higher is better",
            }
        );
        for s in &strategies {
            out.push_str(&format!(" {s} |"));
        }
        out.push_str(
            " winner | winner value | vs fixed | gain vs fixed | confidence | vs best single | equal-compute winner |\n|---|---:|",
        );
        out.push_str(&"---:|".repeat(strategies.len()));
        out.push_str("---|---:|---:|---:|---:|---:|---|\n");
        for t in &self.tasks {
            out.push_str(&format!("| {} ({}) | {:.4} |", t.task, t.metric, t.base_value));
            for s in &strategies {
                let value = t.strategies.get(*s).and_then(|r| r.report_value);
                out.push_str(&format!(" {} |", value.map_or("—".into(), |l| format!("{l:.4}"))));
            }
            out.push_str(&format!(
                " {} | {:.4} | {} | {:+.4} | {} | {} | {} |\n",
                t.winner_strategy.as_deref().unwrap_or("none"),
                t.winner_value,
                percent(t.improvement),
                t.gain,
                t.confidence.map_or("—".into(), |c| format!("{c:.2}")),
                percent(t.improvement_vs_best_single),
                t.equal_compute.as_ref().map_or("—".into(), |e| format!(
                    "{} {:.4}",
                    e.winner_strategy.as_deref().unwrap_or("none"),
                    e.winner_value
                )),
            ));
        }
        let line = |label: &str, c: Option<&Comparison>| match c {
            Some(c) => format!(
                "- {label}: win rate {:.0}% ({} tasks), mean improvement {}, median {}, mean gain {:+.4}\n",
                c.win_rate * 100.0,
                c.tasks,
                percent(c.mean_improvement),
                percent(c.median_improvement),
                c.mean_gain
            ),
            None => format!("- {label}: not measured\n"),
        };
        out.push('\n');
        out.push_str(&line("market vs fixed", self.summary.vs_baseline.as_ref()));
        let best = self.summary.best_single_strategy.as_deref().unwrap_or("none");
        out.push_str(&line(&format!("market vs best single strategy ({best})"), self.summary.vs_best_single.as_ref()));
        out.push_str(&line(
            &format!("equal compute: market with 1/K budget each vs {best} with all of it"),
            self.summary.equal_compute.as_ref(),
        ));
        out.push_str("- each strategy alone vs fixed (mean improvement):");
        for (name, value) in &self.summary.strategy_mean_improvement {
            out.push_str(&format!(" {name} {}", percent(Some(*value))));
        }
        out.push_str("\n- each strategy alone vs fixed (mean gain):");
        for (name, value) in &self.summary.strategy_mean_gain {
            out.push_str(&format!(" {name} {value:+.4}"));
        }
        out.push('\n');
        out
    }

    /// Writes market.json, market.md, market.svg and market.png into `out`.
    pub fn write(&self, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let paths = ["market.json", "market.md", "market.svg", "market.png"].map(|name| out.join(name));
        std::fs::write(&paths[0], serde_json::to_vec_pretty(&self.json())?)?;
        std::fs::write(&paths[1], self.table())?;
        let svg = self.plot_svg()?;
        std::fs::write(&paths[2], &svg)?;
        std::fs::write(&paths[3], super::raster::svg_to_png(&svg)?)?;
        Ok(paths.to_vec())
    }

    /// Per task (x): the base model, each strategy and the winner's report loss (y).
    fn plot_svg(&self) -> anyhow::Result<String> {
        let (caption, y_desc) = match self.metric() {
            "reward" => ("mean greedy reward", "reward (mean over rows, 0 to 1; higher is better)"),
            "loss" => ("test loss", "loss (nats per answer token; DPO: per pair)"),
            _ => ("loss or reward", "loss (lower is better) or reward (higher is better)"),
        };
        let mut svg = String::new();
        {
            let width = (240 + 70 * self.tasks.len() as u32).max(640);
            let root = SVGBackend::with_string(&mut svg, (width, 480)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let losses = self.tasks.iter().flat_map(|t| {
                std::iter::once(t.base_value).chain(t.strategies.values().filter_map(|s| s.report_value))
            });
            let top = losses.fold(0.0_f64, f64::max).max(1e-3) * 1.08;
            let n = self.tasks.len().max(1);
            let names: Vec<String> = self.tasks.iter().map(|t| t.task.clone()).collect();
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{} on held-out report rows, per task", caption), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(110)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 {
                        names.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .x_label_style(("sans-serif", 12).into_font().transform(FontTransform::Rotate90))
                .y_desc(y_desc)
                .draw()
                .map_err(plot_error)?;
            let strategies: Vec<String> =
                self.tasks.first().map(|t| t.strategies.keys().cloned().collect()).unwrap_or_default();
            let count = strategies.len().max(1) as f64;
            let series = std::iter::once(("base model".to_owned(), BLACK.mix(0.5)))
                .chain(strategies.iter().enumerate().map(|(i, s)| (s.clone(), Palette99::pick(i).mix(1.0))));
            for (i, (label, color)) in series.enumerate() {
                let offset = (i as f64 - count / 2.0) * 0.6 / (count + 1.0);
                let points: Vec<(f64, f64)> = self
                    .tasks
                    .iter()
                    .enumerate()
                    .filter_map(|(x, t)| {
                        let y = if i == 0 { Some(t.base_value) } else { t.strategies.get(&label)?.report_value };
                        Some((x as f64 + offset, y?))
                    })
                    .collect();
                let style = if label == BASELINE { color.stroke_width(3) } else { color.filled() };
                chart
                    .draw_series(points.iter().map(|&(x, y)| Rectangle::new([(x - 0.03, 0.0), (x + 0.03, y)], style)))
                    .map_err(plot_error)?
                    .label(label)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            }
            let winners: Vec<(f64, f64)> =
                self.tasks.iter().enumerate().map(|(x, t)| (x as f64, t.winner_value)).collect();
            chart
                .draw_series(
                    winners
                        .iter()
                        .map(|&(x, y)| PathElement::new(vec![(x - 0.35, y), (x + 0.35, y)], RED.stroke_width(3))),
                )
                .map_err(plot_error)?
                .label("market winner")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RED.stroke_width(3)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(plot_error)?;
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }
}

/// Renames a serialized task row's `…_value` keys (its own, its strategies' and its
/// equal-compute run's) to `…_loss` or `…_reward` by `metric`.
fn name_values(value: &mut serde_json::Value, metric: &str) {
    match value {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| k.ends_with("_value")).cloned().collect();
            for key in keys {
                if let Some(v) = map.remove(&key) {
                    map.insert(format!("{}_{metric}", key.trim_end_matches("_value")), v);
                }
            }
            map.values_mut().for_each(|v| name_values(v, metric));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| name_values(v, metric)),
        _ => {}
    }
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

fn percent(value: Option<f64>) -> String {
    value.map_or("—".into(), |v| format!("{:+.1}%", v * 100.0))
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned())
}
