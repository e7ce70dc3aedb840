//! `gradients-trainer`: the reference miner, and its tools run alone.
//!
//! - `serve`: join the market as a miner (configuration section `[trainer]`);
//! - `pretrain`: build one of the project's small base models on the generated corpus;
//! - `train`: fine-tune a base model on a task folder with one strategy, outside the
//!   market (the same code the miner runs), writing the model, ONNX, manifest and report;
//!   a GRPO folder trains with GRPO on its `[[rewards]]` (`--strategy fixed` runs G.O.D.'s
//!   GRPO recipe, any other strategy the GRPO probe).
//!
//! The only binary that links libtorch; `gradients model pretrain` runs this one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gradients_config::Settings;
use gradients_trainer::strategy::{Budget, StrategyKind};
use gradients_trainer::{checkpoint, device, job, presets, pretrain};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "gradients-trainer", version, about = "The Gradients reference miner (tch/libtorch)")]
struct Cli {
    /// A TOML configuration file; repeat to layer several (later ones win).
    #[arg(long = "config", global = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join the market as a miner until SIGINT or SIGTERM.
    Serve,
    /// Pretrain a preset base model (tiny-1m, tiny-10m) on the generated corpus.
    Pretrain {
        #[arg(long, default_value = "tiny-1m")]
        preset: String,
        /// The model folder to write (HF layout).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 600)]
        steps: u64,
        /// Bytes of generated corpus to train on.
        #[arg(long, default_value_t = 2_000_000)]
        corpus_bytes: usize,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        #[arg(long, default_value_t = 2e-3)]
        learning_rate: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Fine-tune a base model on a task folder with one strategy, outside the market.
    Train {
        /// The base model folder (HF layout).
        #[arg(long)]
        base: PathBuf,
        /// A task folder (task.toml + data.jsonl).
        #[arg(long)]
        task: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "lr-range-test")]
        strategy: StrategyKind,
        /// Budget in optimizer steps (300 when neither --steps nor --minutes is given).
        #[arg(long, conflicts_with = "minutes")]
        steps: Option<u64>,
        /// Budget in wall-clock minutes.
        #[arg(long)]
        minutes: Option<f64>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value = "auto")]
        device: String,
    },
}

fn progress_bar(length: u64) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config).context("loading configuration")?;
    match cli.command {
        Command::Serve => {
            let telemetry = settings.telemetry.clone();
            gradients_telemetry::run_until_signal(gradients_trainer::runtime::SERVICE_NAME, &telemetry, |shutdown| {
                gradients_trainer::runtime::run(settings, shutdown)
            })
            .await
            .map_err(|e| anyhow::anyhow!(e))
        }
        Command::Pretrain { preset, out, steps, corpus_bytes, batch_size, learning_rate, seed, device } => {
            let config = presets::config(&preset)
                .with_context(|| format!("unknown preset {preset:?}; known: {}", presets::NAMES.join(", ")))?;
            let device = device::choose(&device);
            let tokenizer = gradients_text::Tokenizer::byte_level();
            let corpus = gradients_taskgen::corpus(seed, corpus_bytes);
            let plan = pretrain::PretrainPlan { steps, batch_size, learning_rate, seed, ..Default::default() };
            eprintln!("pretraining {preset} ({} parameters) on {device:?}", config.parameter_count());
            let bar = progress_bar(steps);
            let started = Instant::now();
            let (model, record) = tokio::task::spawn_blocking(move || {
                pretrain::pretrain(&config, &tokenizer, &corpus, &plan, device, &bar)
            })
            .await??;
            checkpoint::save(&model, &gradients_text::Tokenizer::byte_level(), &out)?;
            println!(
                "{preset}: {} steps in {:.1}s ({:.0} tokens/s), validation loss {:.3} at step {} -> {:.3}; wrote {}",
                record.steps,
                started.elapsed().as_secs_f64(),
                record.tokens as f64 / record.seconds.max(1e-9),
                record.validation_curve.first().map_or(f64::NAN, |p| p.loss),
                record.validation_curve.first().map_or(0, |p| p.step),
                record.best_validation_loss,
                out.display()
            );
            Ok(())
        }
        Command::Train { base, task, out, strategy, steps, minutes, seed, device } => {
            let folder = gradients_taskgen::read_task_dir(&task)?;
            let (task_type, rows) = folder.rows()?;
            // A GRPO folder's `[[rewards]]`: what the evaluator will score it by.
            let rewards = (task_type == gradients_data::TaskType::Grpo).then(|| folder.reward_set()).transpose()?;
            let budget = match (steps, minutes) {
                (Some(steps), _) => Budget::steps(steps),
                (None, Some(minutes)) => Budget::until(Instant::now() + Duration::from_secs_f64(minutes * 60.0)),
                (None, None) => Budget::steps(300),
            };
            let device = device::choose(&device);
            let base_name = base.file_name().map_or_else(|| base.display().to_string(), |n| n.to_string_lossy().into());
            eprintln!("{} on {} rows of {} ({task_type}), {device:?}", strategy.as_str(), rows.len(), folder.task.name);
            let bar = progress_bar(budget.steps.unwrap_or(0));
            let output = tokio::task::spawn_blocking(move || {
                job::run(job::Job {
                    base_dir: &base,
                    base_name: &base_name,
                    task_type,
                    rows: &rows,
                    rewards: rewards.as_ref(),
                    strategy,
                    budget,
                    seed,
                    device,
                    out_dir: &out,
                    bar,
                    cancel: Default::default(),
                })
                .map(|output| (output, out))
            })
            .await??;
            let (output, out) = output;
            println!("{}", output.report.summary());
            let plot = if task_type == gradients_data::TaskType::Grpo { "reward.svg" } else { "loss.svg" };
            println!("wrote {} (model/, model.onnx, manifest.json, report.json, {plot})", out.display());
            Ok(())
        }
    }
}
