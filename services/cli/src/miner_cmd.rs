//! `gradients miner ...`: make a miner's key, and see who is mining.

use std::path::PathBuf;
use std::process::ExitCode;

use gradients_bus::api::call;
use gradients_bus::subjects::api;
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_miner::Identity;
use gradients_proto::v1::{ListMinersRequest, ListMinersResponse, TaskType};
use serde_json::json;

use crate::output::{refused, time_ms};

#[derive(clap::Subcommand)]
pub enum MinerCommand {
    /// Make a new ed25519 key for a miner and print its id and public key.
    Keygen {
        /// Where to write the key (never overwritten; readable by its owner only).
        #[arg(long, default_value = "miner.key")]
        out: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The live miners: capabilities, load and last heartbeat.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a miner command.
pub async fn run(settings: &Settings, command: MinerCommand) -> anyhow::Result<ExitCode> {
    match command {
        MinerCommand::Keygen { out, json } => {
            let identity = Identity::generate();
            identity.save(&out)?;
            let public_key = hex::encode(identity.public_key());
            if json {
                println!("{}", json!({ "miner_id": identity.id(), "public_key": public_key, "key_file": out }));
            } else {
                println!("miner id    {}\npublic key  {public_key}\nkey file    {}", identity.id(), out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        MinerCommand::List { json } => {
            let bus = Bus::connect(&settings.nats, "gradients-cli").await?;
            let answer: Result<ListMinersResponse, _> = call(
                &bus.client,
                api::miners(api::MINERS_LIST),
                &ListMinersRequest {},
                settings.nats.request_timeout(),
            )
            .await;
            let miners = match answer {
                Ok(list) => list.miners,
                Err(e) => return refused(e, json),
            };
            let types = |types: &[i32]| {
                types.iter().map(|t| TaskType::try_from(*t).unwrap_or_default().label()).collect::<Vec<_>>().join(",")
            };
            if json {
                let rows: Vec<_> = miners
                    .iter()
                    .map(|m| {
                        let c = m.capabilities.clone().unwrap_or_default();
                        json!({
                            "miner_id": m.miner_id,
                            "public_key": hex::encode(&m.public_key),
                            "task_types": types(&c.task_types),
                            "max_model_params": c.max_model_params,
                            "gpu": c.gpu,
                            "active_tasks": m.active_tasks,
                            "max_concurrent_tasks": c.max_concurrent_tasks,
                            "last_heartbeat": m.last_heartbeat.map(|t| time_ms(t.unix_ms)),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<42}  {:<22}  {:>12}  {:<4}  {:>6}  LAST HEARTBEAT",
                    "MINER", "TYPES", "MAX PARAMS", "GPU", "LOAD"
                );
                for m in &miners {
                    let c = m.capabilities.clone().unwrap_or_default();
                    println!(
                        "{:<42}  {:<22}  {:>12}  {:<4}  {:>6}  {}",
                        m.miner_id,
                        types(&c.task_types),
                        c.max_model_params,
                        if c.gpu { "yes" } else { "no" },
                        format!("{}/{}", m.active_tasks, c.max_concurrent_tasks),
                        m.last_heartbeat.map(|t| time_ms(t.unix_ms)).unwrap_or_default()
                    );
                }
                println!("{} live miners", miners.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
