//! `gradients bench market`: the paper's claim measured on this system. Every task folder
//! under `--tasks` goes through the real market (intake → dispatch → trainers → evaluator
//! → ledger), each strategy a competing miner with the same budget; the ledger picks the
//! winner on the hidden test and synthetic rows, as it does for customers; then every
//! miner's submitted model is scored, with the evaluator's own code, on a report split the
//! market never saw (see [`holdout`]). The statistics are in [`stats`]; the JSON, the table
//! and the plot in [`report`].
//!
//! GRPO tasks (`--grpo` generates them from taskgen's families, with each family's shaped
//! rewards) go through the same market with their reward functions; they are scored on the
//! report rows by the evaluator's own GRPO scorer (greedy generation through ONNX Runtime,
//! mean reward), and every comparison counts their rewards upwards.

mod holdout;
mod pipeline;
mod raster;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use gradients_data::TaskType;
use gradients_evaluator::base_model::BaseModel;
use gradients_evaluator::evaluate::{check_and_score, check_artifact, prepare, run_model, scores, PreparedSplit};
use gradients_evaluator::grpo::GrpoTask;
use gradients_taskgen::TaskDir;
use indicatif::{ProgressBar, ProgressStyle};

use pipeline::{BaseModelDir, Binaries, Market};
use report::{EqualComputeRow, StrategyRow, TaskRow};

/// The strategy whose models are the baseline: AutoTrain's default recipe.
pub const BASELINE: &str = "fixed";
/// The strategies the reference trainer knows (`gradients-trainer train --help`).
const DEFAULT_STRATEGIES: &str = "fixed,random,lr-range-test,successive-halving,sweep-decay,pbt";
/// The taskgen families `--grpo` generates: each has shaped rewards a tiny model can climb.
const DEFAULT_GRPO_FAMILIES: &str = "arithmetic,compare-numbers,count-vowels,record-json";

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Competing strategies through the whole market against the fixed recipe, the best
    /// single strategy and a single strategy with the market's total compute.
    Market(MarketArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MarketArgs {
    /// A folder of task folders (task.toml + data.jsonl; GRPO folders with their
    /// `[[rewards]]`), or one task folder.
    #[arg(long, required_unless_present = "grpo", conflicts_with = "grpo")]
    pub tasks: Option<PathBuf>,
    /// Generate GRPO tasks of `--families` under `--out`/tasks and run those: scored by
    /// reward (higher is better) instead of loss.
    #[arg(long)]
    pub grpo: bool,
    /// The taskgen families `--grpo` generates.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_GRPO_FAMILIES, requires = "grpo")]
    pub families: Vec<String>,
    /// Rows per generated GRPO task (before the report split).
    #[arg(long, default_value_t = 200, requires = "grpo")]
    pub rows: usize,
    /// Where the JSON, the table and the plots go (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps per miner per task (default 150 when --minutes is not given).
    #[arg(long, conflicts_with = "minutes")]
    pub steps: Option<u64>,
    /// Minutes per miner per task instead of steps: the task's deadline.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// The competing strategies; `fixed` (the baseline) is always one of them.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_STRATEGIES)]
    pub strategies: Vec<String>,
    /// The base model: a Hugging Face folder, or a name under `trainer.models_dir`.
    #[arg(long, default_value = "tiny-1m")]
    pub base_model: String,
    /// Seeds the report split, the trainers and the bootstrap.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of each data set held out from the market to report on.
    #[arg(long, default_value_t = 0.2)]
    pub report_fraction: f64,
    /// The tasks' deadline with --steps (the step cap decides; the deadline only bounds a
    /// stuck miner).
    #[arg(long, default_value_t = 0.5)]
    pub hours: f64,
    /// Skip the second market where each miner gets 1/K of the budget.
    #[arg(long)]
    pub no_equal_compute: bool,
    /// Bootstrap resamples for the confidences.
    #[arg(long, default_value_t = 2000)]
    pub resamples: u32,
    /// The `nats-server` binary (default: .deps/py/bin/nats-server, else the PATH).
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// The `gradients-trainer` binary (default: beside `gradients`, else the PATH).
    #[arg(long)]
    pub trainer: Option<PathBuf>,
    /// Keep the market's work folder (databases, JetStream, trainer runs) under --out.
    #[arg(long)]
    pub keep_work: bool,
}

pub async fn run(settings: &gradients_config::Settings, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Market(args) => market(settings, args).await,
    }
}

/// A task folder read, its rows parted.
struct BenchTask {
    name: String,
    dir: PathBuf,
    file: TaskDir,
    task_type: TaskType,
    split: holdout::Holdout,
}

/// One market phase: how much each miner gets.
#[derive(Clone, Copy)]
struct Phase {
    label: &'static str,
    budget: pipeline::MinerBudget,
}

async fn market(settings: &gradients_config::Settings, mut args: MarketArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    args.strategies.retain(|s| !s.trim().is_empty());
    if !args.strategies.iter().any(|s| s == BASELINE) {
        args.strategies.insert(0, BASELINE.to_owned());
    }
    args.strategies.dedup();
    if !(0.0..1.0).contains(&args.report_fraction) || args.report_fraction == 0.0 {
        bail!("--report-fraction must be between 0 and 1");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    if args.grpo {
        args.tasks = Some(generate_grpo_tasks(&args)?);
    }
    let tasks_dir = args.tasks.clone().context("--tasks or --grpo")?;
    let tasks = read_tasks(&tasks_dir, args.report_fraction, args.seed)?;
    if tasks.is_empty() {
        bail!("no task folder (task.toml + data.jsonl) under {}", tasks_dir.display());
    }
    let base = resolve_base_model(settings, &args.base_model)?;
    let work = args.out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }

    let k = args.strategies.len() as u64;
    let full = match args.minutes {
        Some(minutes) => pipeline::MinerBudget { max_steps: 0, hours: minutes / 60.0 },
        None => pipeline::MinerBudget { max_steps: args.steps.unwrap_or(150), hours: args.hours },
    };
    let split_budget = match args.minutes {
        Some(minutes) => pipeline::MinerBudget { max_steps: 0, hours: minutes / 60.0 / k as f64 },
        None => pipeline::MinerBudget { max_steps: (full.max_steps / k).max(1), hours: args.hours },
    };
    let mut phases = vec![Phase { label: "full", budget: full }];
    if !args.no_equal_compute {
        phases.push(Phase { label: "equal-compute", budget: split_budget });
    }

    let scorer = {
        let dir = base.dir.clone();
        let name = base.name.clone();
        tokio::task::spawn_blocking(move || BaseModel::from_dir(&name, &dir)).await??
    };
    let binaries = Binaries::locate(args.nats_server.clone(), args.trainer.clone());
    let progress = ProgressBar::new((tasks.len() * phases.len()) as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} {bar:30} {pos}/{len} runs {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_message("starting the market");
    let mut market = Market::start(&work, binaries, base.clone(), &args.strategies).await?;
    // Interrupted, the market is still stopped: no trainer or nats-server is left behind.
    let outcome = tokio::select! {
        outcome = run_phases(&mut market, &args, &tasks, &phases, &scorer, &progress) => outcome,
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    progress.set_message("stopping the market");
    market.stop().await;
    progress.finish_and_clear();
    let rows = outcome?;

    let summary = report::Report::build(&args, &base, full, split_budget, rows, started.elapsed());
    let written = summary.write(&args.out)?;
    print!("{}", summary.table());
    for path in written {
        println!("wrote {}", path.display());
    }
    if !args.keep_work {
        std::fs::remove_dir_all(&work).ok();
    }
    Ok(ExitCode::SUCCESS)
}

/// Every task through the market in each phase; the per-task rows.
async fn run_phases(
    market: &mut Market,
    args: &MarketArgs,
    tasks: &[BenchTask],
    phases: &[Phase],
    scorer: &BaseModel,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<TaskRow>> {
    let mut rows: Vec<TaskRow> = Vec::new();
    let mut evaluator = gradients_config::Settings::default().evaluator;
    evaluator.run_timeout_ms = evaluator.run_timeout_ms.max(600_000);
    for (p, phase) in phases.iter().enumerate() {
        progress.set_message(format!("{}: starting {} trainers", phase.label, args.strategies.len()));
        market.start_miners(&args.strategies, phase.budget.max_steps, args.seed).await?;
        for (t, task) in tasks.iter().enumerate() {
            let run_started = Instant::now();
            progress.set_message(format!("{}: {} training", phase.label, task.name));
            let (columns, data) = (&task.file.task.columns, holdout::jsonl(&task.split.market));
            let proto_type = gradients_proto::v1::TaskType::from_label(task.task_type.as_str())
                .with_context(|| format!("task type {}", task.task_type.as_str()))?;
            let key = format!("bench-{}-{}-{}", phase.label, args.seed, task.name);
            let submitted = pipeline::TaskSubmission {
                key: &key,
                name: &task.name,
                task_type: proto_type,
                columns,
                data: &data,
                hours: phase.budget.hours,
                reward_functions: task.file.task.reward_functions.clone(),
                rewards: task.file.task.wire_rewards(),
            };
            let (task_id, result) = market.run_task(submitted).await?;
            progress.set_message(format!("{}: {} scoring on the report rows", phase.label, task.name));
            let report_rows = report_split(task, &market_dir(&args.out, &task.name))?;
            let splits = {
                let base = scorer.clone();
                let (task_type, evaluator) = (task.task_type, evaluator.clone());
                let rewards = match task.task_type {
                    TaskType::Grpo => Some(task.file.reward_set()?),
                    _ => None,
                };
                tokio::task::spawn_blocking(move || match rewards {
                    Some(rewards) => {
                        gradients_evaluator::grpo::prepare(&base, rewards, &[("report", &report_rows)], &evaluator)
                            .map(Prepared::Reward)
                    }
                    None => prepare(&base, task_type, &[("report", &report_rows)]).map(Prepared::Loss),
                })
                .await?
                .map_err(|r| anyhow::anyhow!("{}: {}", task.name, r.message))?
            };
            let mut strategies = BTreeMap::new();
            let mut row_losses: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (miner, strategy) in &market.miners {
                let entry = result.entries.iter().find(|e| &e.miner_id == miner);
                let scored = match market.submitted_model(&task_id, miner).await? {
                    Some(bytes) => score(bytes, scorer, task.task_type, &splits, &evaluator).await?,
                    None => Err("no submission".to_owned()),
                };
                let (report_value, refusal) = match scored {
                    Ok((value, per_row)) => {
                        row_losses.insert(strategy.clone(), per_row);
                        (Some(value), None)
                    }
                    Err(reason) => (None, Some(reason)),
                };
                strategies.insert(
                    strategy.clone(),
                    StrategyRow {
                        miner_id: miner.clone(),
                        report_value,
                        report_refusal: refusal,
                        ledger_reason: entry.map(|e| e.reason.clone()).unwrap_or_default(),
                        ledger_rank: entry.map(|e| e.rank).unwrap_or_default(),
                        ranking_loss: entry.and_then(|e| e.ranking_loss),
                    },
                );
            }
            let winner = market.miners.get(&result.winner_miner_id).cloned();
            if p == 0 {
                let base_value = base_value(scorer, task.task_type, &splits, &evaluator).await?;
                rows.push(TaskRow::new(
                    task.name.clone(),
                    task.dir.clone(),
                    task.task_type,
                    &task.split,
                    task_id,
                    base_value,
                    strategies,
                    winner,
                    row_losses,
                    args,
                ));
            } else {
                let row = &mut rows[t];
                let winner_value = winner.as_ref().and_then(|w| strategies.get(w)).and_then(|s| s.report_value);
                row.equal_compute = Some(EqualComputeRow {
                    task_id,
                    winner_strategy: winner,
                    winner_value: winner_value.unwrap_or(row.base_value),
                    strategies,
                });
            }
            let line = format!(
                "{} {}: winner {} in {:.0} s",
                phase.label,
                task.name,
                market.miners.get(&result.winner_miner_id).map(String::as_str).unwrap_or("none"),
                run_started.elapsed().as_secs_f64()
            );
            // A hidden bar (no terminal, as under nohup) prints nothing: keep the log anyway.
            if progress.is_hidden() {
                eprintln!("{line}");
            } else {
                progress.println(line);
            }
            progress.inc(1);
        }
    }
    Ok(rows)
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => signal.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminated => "SIGTERM",
    }
}

fn market_dir(out: &Path, task: &str) -> PathBuf {
    out.join("work").join("report-splits").join(task)
}

/// The report rows under the task's canonical columns, validated as intake validates.
fn report_split(task: &BenchTask, dir: &Path) -> anyhow::Result<Vec<gradients_data::Row>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("report.jsonl");
    std::fs::write(&path, holdout::jsonl(&task.split.report))?;
    let held = TaskDir { task: task.file.task.clone(), data: path };
    Ok(held.rows()?.1)
}

/// The report rows, ready for the evaluator's scorer of the task's type.
#[derive(Clone)]
enum Prepared {
    /// Supervised and DPO: a test loss.
    Loss(Vec<PreparedSplit>),
    /// GRPO: the mean greedy reward.
    Reward(GrpoTask),
}

/// A submitted model's value on the report rows (a loss, or a GRPO task's mean reward) and
/// its per-row losses (a GRPO row's is its negated reward), or why the evaluator's checks
/// refuse it.
async fn score(
    bytes: Vec<u8>,
    base: &BaseModel,
    task_type: TaskType,
    prepared: &Prepared,
    evaluator: &gradients_config::EvaluatorSettings,
) -> anyhow::Result<Result<(f64, Vec<f64>), String>> {
    let (base, prepared, evaluator) = (base.clone(), prepared.clone(), evaluator.clone());
    let outcome = tokio::task::spawn_blocking(move || match &prepared {
        Prepared::Loss(splits) => check_and_score(bytes, &base, task_type, splits, &evaluator)
            .map(|(_, scores)| (scores[0].loss, row_losses(&scores[0]))),
        Prepared::Reward(task) => {
            check_artifact(&bytes, &base, &evaluator)?;
            let (scores, _) = gradients_evaluator::grpo::score_model(bytes.into(), &base, task, &evaluator)?;
            Ok((scores[0].reward, scores[0].rows.iter().map(|r| r.loss).collect()))
        }
    })
    .await?;
    Ok(outcome.map_err(|r| r.message))
}

/// The base model's own value on the report rows.
async fn base_value(
    base: &BaseModel,
    task_type: TaskType,
    prepared: &Prepared,
    evaluator: &gradients_config::EvaluatorSettings,
) -> anyhow::Result<f64> {
    let (base, prepared, evaluator) = (base.clone(), prepared.clone(), evaluator.clone());
    tokio::task::spawn_blocking(move || match &prepared {
        Prepared::Loss(splits) => {
            let sums = run_model(base.onnx.clone(), &base, splits, &evaluator)?;
            let reference = (task_type == TaskType::Dpo).then_some(sums.as_slice());
            scores(splits, &sums, reference, evaluator.dpo_beta).map(|s| s[0].loss)
        }
        Prepared::Reward(task) => {
            gradients_evaluator::grpo::score_model(base.onnx.clone(), &base, task, &evaluator).map(|(s, _)| s[0].reward)
        }
    })
    .await?
    .map_err(|r| anyhow::anyhow!("the base model on the report rows: {}", r.message))
}

/// `--grpo`: one GRPO task folder per family under `--out`/tasks (replaced), with the
/// family's reward functions; returns that folder.
fn generate_grpo_tasks(args: &MarketArgs) -> anyhow::Result<PathBuf> {
    let dir = args.out.join("tasks");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for name in args.families.iter().filter(|f| !f.trim().is_empty()) {
        let family = gradients_taskgen::family(name.trim())?;
        gradients_taskgen::write_task_dir(&dir, family, gradients_taskgen::TaskKind::Grpo, args.rows, args.seed, None)?;
    }
    Ok(dir)
}

/// Per-row losses as the ledger's bootstrap takes them: a row's summed answer-token loss
/// (instruct, chat) or a pair's loss (DPO).
fn row_losses(score: &gradients_evaluator::scoring::SplitScore) -> Vec<f64> {
    score.rows.iter().map(|r| r.loss).collect()
}

/// The task folders under `dir` (or `dir` itself), by name, each parted into market and
/// report rows.
fn read_tasks(dir: &Path, fraction: f64, seed: u64) -> anyhow::Result<Vec<BenchTask>> {
    let mut folders = Vec::new();
    if dir.join("task.toml").is_file() {
        folders.push(dir.to_path_buf());
    } else {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.join("task.toml").is_file() {
                folders.push(path);
            }
        }
        folders.sort();
    }
    folders
        .into_iter()
        .map(|folder| {
            let file = gradients_taskgen::read_task_dir(&folder)?;
            let (task_type, _) = file.rows().with_context(|| format!("{}", folder.display()))?;
            let text = std::fs::read_to_string(&file.data)?;
            let name =
                folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.task.name.clone());
            Ok(BenchTask { name, dir: folder, task_type, split: holdout::split(&text, fraction, seed), file })
        })
        .collect()
}

/// `--base-model`: a folder, else a name under `trainer.models_dir` or `evaluator.models_dir`.
fn resolve_base_model(settings: &gradients_config::Settings, name_or_dir: &str) -> anyhow::Result<BaseModelDir> {
    let as_dir = PathBuf::from(name_or_dir);
    let candidates = [
        as_dir.clone(),
        settings.trainer.models_dir.join(name_or_dir),
        settings.evaluator.models_dir.join(name_or_dir),
    ];
    let dir = candidates
        .into_iter()
        .find(|d| d.join("config.json").is_file())
        .with_context(|| format!("base model {name_or_dir}: no config.json there, nor under trainer.models_dir or evaluator.models_dir (pretrain one with `gradients model pretrain`)"))?;
    let name = if as_dir.join("config.json").is_file() {
        as_dir.canonicalize()?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "base".into())
    } else {
        name_or_dir.to_owned()
    };
    Ok(BaseModelDir { name, dir })
}
