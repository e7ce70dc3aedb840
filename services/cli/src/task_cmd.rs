//! `gradients task ...`: submit, get, list, cancel, watch and result over the intake API,
//! each request signed with the customer's key (see `gradients customer keygen`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gradients_bus::api::CallError;
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_intake::client::{IntakeClient, UploadError};
use gradients_intake::customer::CustomerKey;
use gradients_proto::v1::{ListTasksRequest, SubmitTaskRequest, Task, TaskStatus, TaskType};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::output::{self, refused};
use crate::{task_dir, task_outcome};

/// Base model used when neither `--model` nor task.toml names one.
const DEFAULT_BASE_MODEL: &str = "tiny-10m";
/// Hours to complete when neither `--hours` nor task.toml gives them.
const DEFAULT_HOURS: f64 = 1.0;

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Upload a data set and submit a fine-tuning task.
    Submit(Box<SubmitArgs>),
    /// Show one task.
    Get {
        /// The task id.
        task_id: String,
        #[command(flatten)]
        format: Format,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks in this state (accepted, training, scored, cancelled, ...).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous listing's next page token.
        #[arg(long)]
        page_token: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Follow a task live through its states until it is final (exit 0: scored; 2: failed,
    /// rejected or cancelled).
    Watch {
        /// The task id.
        task_id: String,
        /// How often to ask intake, in milliseconds.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
        /// One JSON line per change instead of the progress display.
        #[arg(long)]
        json: bool,
    },
    /// Show how a task ended: the ranking, each miner's losses, status and reward, the
    /// improvement over the base model and the fixed baseline, and the confidences.
    Result {
        /// The task id.
        task_id: String,
        /// Also download the winning model (ONNX, HF folder, manifest, training report)
        /// into this folder, every file checked against its sha256.
        #[arg(long, value_name = "DIR")]
        download: Option<PathBuf>,
        #[command(flatten)]
        format: Format,
    },
    /// Cancel a task that has not finished.
    Cancel {
        /// The task id.
        task_id: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Args)]
pub struct Format {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// A task folder with task.toml and data.jsonl; flags given beside it win.
    #[arg(long, conflicts_with = "data")]
    dir: Option<PathBuf>,
    /// The data set, JSONL.
    #[arg(long, required_unless_present = "dir")]
    data: Option<PathBuf>,
    /// instruct, chat, dpo or grpo.
    #[arg(long = "type")]
    task_type: Option<String>,
    /// Base model to fine-tune.
    #[arg(long)]
    model: Option<String>,
    /// A name for the task (default: the data file's name).
    #[arg(long)]
    name: Option<String>,
    /// Hours the market has to deliver.
    #[arg(long)]
    hours: Option<f64>,
    /// Map a role to your column name, e.g. `--column instruction=question`; repeatable.
    #[arg(long = "column", value_name = "ROLE=COLUMN")]
    columns: Vec<String>,
    /// A reward function (GRPO); repeatable.
    #[arg(long = "reward-function")]
    reward_functions: Vec<String>,
    /// Makes retries safe: the same key returns the same task (default: a fresh one).
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    format: Format,
}

/// Runs a task command, signed with the customer key at `key` (default:
/// `intake.customer_key_file`); the exit code is 1 when the service refused the request.
pub async fn run(settings: &Settings, key: Option<PathBuf>, command: TaskCommand) -> anyhow::Result<ExitCode> {
    let key_file = key.unwrap_or_else(|| settings.intake.customer_key_file.clone());
    let key = CustomerKey::load(&key_file).with_context(|| {
        format!("reading the customer key {} (make one with `gradients customer keygen`)", key_file.display())
    })?;
    let bus = Bus::connect(&settings.nats, "gradients-cli").await?;
    let client = IntakeClient::new(bus, key, settings.nats.request_timeout());
    match command {
        TaskCommand::Submit(args) => submit(&client, *args).await,
        TaskCommand::Get { task_id, format } => show_task(client.get(&task_id).await.map(|r| r.task), format.json),
        TaskCommand::Watch { task_id, poll_ms, json } => {
            task_outcome::watch(&client, &task_id, Duration::from_millis(poll_ms.max(50)), json).await
        }
        TaskCommand::Result { task_id, download, format } => {
            task_outcome::result(&client, &task_id, download, format.json).await
        }
        TaskCommand::Cancel { task_id, reason, format } => {
            show_task(client.cancel(&task_id, &reason).await.map(|r| r.task), format.json)
        }
        TaskCommand::List { status, limit, page_token, format } => {
            let status = match status {
                Some(label) => {
                    TaskStatus::from_label(&label).with_context(|| format!("unknown status {label:?}"))? as i32
                }
                None => 0,
            };
            let request = ListTasksRequest { status, page_size: limit, page_token: page_token.unwrap_or_default() };
            match client.list(&request).await {
                Ok(page) if format.json => {
                    let tasks: Vec<_> = page.tasks.iter().map(output::task_json).collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &json!({ "tasks": tasks, "next_page_token": page.next_page_token })
                        )?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(page) => {
                    print!("{}", output::task_table(&page.tasks));
                    if !page.next_page_token.is_empty() {
                        println!("more: --page-token {}", page.next_page_token);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, format.json),
            }
        }
    }
}

async fn submit(client: &IntakeClient, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let from_dir = args.dir.as_deref().map(task_dir::read).transpose()?;
    let data_path = match (&from_dir, &args.data) {
        (Some(dir), _) => dir.data.clone(),
        (None, Some(path)) => path.clone(),
        (None, None) => anyhow::bail!("give --data FILE or --dir FOLDER"),
    };
    let file = from_dir.as_ref().map(|d| &d.task);
    let type_label = args
        .task_type
        .clone()
        .or_else(|| file.map(|f| f.task_type.clone()))
        .context("give --type (instruct, chat, dpo, grpo)")?;
    let task_type = TaskType::from_label(&type_label)
        .with_context(|| format!("unknown task type {type_label:?}: use instruct, chat, dpo or grpo"))?;
    let mut columns: BTreeMap<String, String> = file.map(|f| f.columns.clone()).unwrap_or_default();
    for pair in &args.columns {
        let (role, column) = pair.split_once('=').with_context(|| format!("--column {pair:?}: write ROLE=COLUMN"))?;
        columns.insert(role.to_owned(), column.to_owned());
    }
    let name = args.name.clone().or_else(|| file.map(|f| f.name.clone())).unwrap_or_else(|| {
        data_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "task".into())
    });
    let data = std::fs::read(&data_path).with_context(|| format!("reading {}", data_path.display()))?;

    let progress = spinner(args.format.json);
    progress.set_message(format!("uploading {} ({} bytes)", data_path.display(), data.len()));
    let dataset = match client.upload_dataset(&data).await {
        Ok(dataset) => dataset,
        Err(UploadError::Call(refusal)) => {
            progress.finish_and_clear();
            return refused(refusal, args.format.json);
        }
        Err(UploadError::Bus(e)) => return Err(e.into()),
    };
    progress.set_message("validating and splitting");
    let request = SubmitTaskRequest {
        idempotency_key: args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        name,
        r#type: task_type as i32,
        base_model: args
            .model
            .clone()
            .or_else(|| file.and_then(|f| f.base_model.clone()))
            .unwrap_or_else(|| DEFAULT_BASE_MODEL.into()),
        columns,
        hours_to_complete: args.hours.or_else(|| file.and_then(|f| f.hours_to_complete)).unwrap_or(DEFAULT_HOURS),
        reward_functions: if args.reward_functions.is_empty() {
            file.map(|f| f.reward_functions.clone()).unwrap_or_default()
        } else {
            args.reward_functions.clone()
        },
        // A task folder's `[[rewards]]` (weights and parameters); names on the command
        // line replace them.
        rewards: if args.reward_functions.is_empty() {
            file.map(|f| f.wire_rewards()).unwrap_or_default()
        } else {
            Vec::new()
        },
        dataset: Some(dataset),
    };
    let answer = client.submit(&request).await;
    progress.finish_and_clear();
    match answer {
        Ok(response) => {
            if !args.format.json {
                println!(
                    "{}",
                    if response.created { "accepted" } else { "already submitted with this idempotency key" }
                );
            }
            show_task(Ok(response.task), args.format.json)
        }
        Err(e) => refused(e, args.format.json),
    }
}

fn spinner(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn show_task(answer: Result<Option<Task>, CallError>, json: bool) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(Some(task)) if json => println!("{}", serde_json::to_string_pretty(&output::task_json(&task))?),
        Ok(Some(task)) => print!("{}", output::task_block(&task)),
        Ok(None) => anyhow::bail!("the service answered without a task"),
        Err(e) => return refused(e, json),
    }
    Ok(ExitCode::SUCCESS)
}
