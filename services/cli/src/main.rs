//! `gradients`: the one command for operators and customers.
//!
//! - `gradients serve <service>` runs a service in the foreground (SIGINT/SIGTERM drain it).
//! - `gradients task submit|get|list|cancel|watch|result` talks to the intake API over NATS, signed with
//!   the key `gradients customer keygen` makes.
//! - `gradients ledger task|miner|weights|export` queries the reward ledger.
//! - `gradients audit proof|verify-proof|consistency|verify|export`: the audit log and its proofs.
//! - `gradients miner keygen|list`: a miner's key, and the live miners.
//! - `gradients data families|generate|corpus`: generated task folders and pretraining text.
//! - `gradients model pretrain|publish|list`: a small base model, trained by
//!   `gradients-trainer`; the `gradients-models` store of base models.
//! - `gradients eval run|inspect`: score or inspect a local ONNX file as the evaluator does.
//! - `gradients bench market`: competing strategies through the whole market, measured.
//!
//! Every command reads the same configuration as the services: `--config` files, then
//! `GRADIENTS__...` variables (`GRADIENTS__NATS__URL` points it at your cluster).

mod audit_cmd;
mod bench;
mod customer_cmd;
mod data_cmd;
mod eval_cmd;
mod ledger_cmd;
mod miner_cmd;
mod model_cmd;
mod output;
mod task_cmd;
mod task_dir;
mod task_outcome;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gradients_config::Settings;
use gradients_telemetry::run_until_signal;

#[derive(Parser)]
#[command(name = "gradients", version, about = "A market where miners compete to fine-tune models")]
struct Cli {
    /// A TOML configuration file; repeat to layer several (later ones win).
    #[arg(long = "config", global = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a service in the foreground until SIGINT or SIGTERM.
    Serve {
        #[command(subcommand)]
        service: Service,
    },
    /// Submit and follow fine-tuning tasks (signed with your customer key).
    Task {
        /// The customer key to sign with (default: `intake.customer_key_file`).
        #[arg(long, global = true, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(subcommand)]
        command: task_cmd::TaskCommand,
    },
    /// Customer identities: `gradients customer keygen`.
    Customer {
        #[command(subcommand)]
        command: customer_cmd::CustomerCommand,
    },
    /// Miner identities and the live miner registry.
    Miner {
        #[command(subcommand)]
        command: miner_cmd::MinerCommand,
    },
    /// Query the reward ledger: task results, entries, weights, exports.
    Ledger {
        #[command(subcommand)]
        command: ledger_cmd::LedgerCommand,
    },
    /// The audit log: signed checkpoints, proofs (checked offline), verification, export.
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Score a local ONNX file as the evaluator would, or inspect one.
    Eval {
        #[command(subcommand)]
        command: eval_cmd::EvalCommand,
    },
    /// Base models: `pretrain` (runs `gradients-trainer`), `publish` and `list` (the
    /// `gradients-models` store).
    Model {
        #[command(subcommand)]
        command: model_cmd::ModelCommand,
    },
    /// Generate task folders and pretraining text for tests, the demo and benchmarks.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
    /// Measure the market: `gradients bench market --tasks DIR --out DIR`.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum Service {
    /// Task intake: validates, splits, stores and announces tasks.
    Intake,
    /// The reward ledger: scores finalized tasks, append-only.
    Ledger,
    /// Miner dispatch: registry, offers, assignments, grants, deadlines.
    Dispatch,
    /// The audit log: captures every stream, signs checkpoints, serves proofs.
    Audit,
    /// The evaluator: checks and scores submissions with ONNX Runtime.
    Evaluator,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let settings = Settings::load(&cli.config).context("loading configuration")?;
    match cli.command {
        Command::Serve { service } => {
            let telemetry = settings.telemetry.clone();
            let name = service_name(service);
            let served = match service {
                Service::Intake => {
                    run_until_signal(name, &telemetry, |shutdown| gradients_intake::run(settings, shutdown)).await
                }
                Service::Ledger => {
                    run_until_signal(name, &telemetry, |shutdown| gradients_ledger::run(settings, shutdown)).await
                }
                Service::Dispatch => {
                    run_until_signal(name, &telemetry, |shutdown| gradients_dispatch::run(settings, shutdown)).await
                }
                Service::Audit => {
                    run_until_signal(name, &telemetry, |shutdown| gradients_audit::run(settings, shutdown)).await
                }
                Service::Evaluator => {
                    run_until_signal(name, &telemetry, |shutdown| gradients_evaluator::run(settings, shutdown)).await
                }
            };
            served.map_err(|e| anyhow::anyhow!(e))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Task { key, command } => task_cmd::run(&settings, key, command).await,
        Command::Customer { command } => customer_cmd::run(command),
        Command::Ledger { command } => ledger_cmd::run(&settings, command).await,
        Command::Audit { command } => audit_cmd::run(&settings, command).await,
        Command::Miner { command } => miner_cmd::run(&settings, command).await,
        Command::Data { command } => data_cmd::run(command),
        Command::Model { command: command @ model_cmd::ModelCommand::Pretrain { .. } } => {
            model_cmd::run(&cli.config, command)
        }
        Command::Model { command } => model_cmd::run_store(&settings, command).await,
        Command::Eval { command } => eval_cmd::run(&settings, command).await,
        Command::Bench { command } => bench::run(&settings, command).await,
    }
}

fn service_name(service: Service) -> &'static str {
    match service {
        Service::Intake => gradients_intake::SERVICE_NAME,
        Service::Ledger => gradients_ledger::SERVICE_NAME,
        Service::Dispatch => gradients_dispatch::SERVICE_NAME,
        Service::Audit => gradients_audit::SERVICE_NAME,
        Service::Evaluator => gradients_evaluator::SERVICE_NAME,
    }
}
