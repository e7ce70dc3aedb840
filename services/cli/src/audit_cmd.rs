//! `gradients audit ...`: what an auditor runs. `verify-proof` works offline with nothing but
//! a proof file and the audit's public key; the rest asks the audit service over NATS
//! (an auditor's read-only identity is enough, see deploy/nats); `reconcile` also asks the
//! ledger's query API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use gradients_audit::client::AuditClient;
use gradients_audit::document::ProofFile;
use gradients_audit::offline;
use gradients_audit::protocol::{CheckpointRequest, ProofRequest};
use gradients_bus::Bus;
use gradients_config::Settings;

use crate::ledger_cmd::parse_moment;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// A signed checkpoint (tree head): the latest, one of a size, or a fresh one.
    Checkpoint {
        /// Ask the service to sign the log as it is now.
        #[arg(long)]
        fresh: bool,
        /// The stored checkpoint of this tree size.
        #[arg(long, conflicts_with = "fresh")]
        size: Option<u64>,
    },
    /// A record and its inclusion proof, as a file `verify-proof` checks offline.
    Proof {
        /// The event id (`Nats-Msg-Id`): an entry id, a submission id, a task id...
        #[arg(long, conflicts_with = "leaf", required_unless_present = "leaf")]
        event_id: Option<String>,
        /// The record's leaf index.
        #[arg(long)]
        leaf: Option<u64>,
        /// Prove against the stored checkpoint of this size (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// Write the proof here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checks a proof file (inclusion or consistency) offline: no connection at all.
    VerifyProof {
        /// The proof file (`gradients audit proof` or `consistency` wrote it).
        file: PathBuf,
        /// The audit's public key: 64 hex characters, or a file holding them.
        #[arg(long)]
        public_key: String,
    },
    /// The proof that the checkpoint of NEW records extends the one of OLD records.
    Consistency {
        /// The older checkpoint's tree size.
        old: u64,
        /// The newer checkpoint's tree size.
        new: u64,
        /// Write the proof here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also check it at once with this public key (hex or a file).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Walks the whole log and every checkpoint; names the first record that does not match.
    Verify {
        /// The audit's public key (hex or a file).
        #[arg(long)]
        public_key: String,
    },
    /// Recomputes every reward from the captured evaluations (`gradients_scoring`) and
    /// compares with the ledger's captured entries, its API's answers and its published
    /// weights; every difference is printed with both values and the events behind it.
    Reconcile {
        /// Only this task.
        #[arg(long, conflicts_with = "since")]
        task: Option<String>,
        /// Only tasks paid from this moment (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Compare with the captured events only (no call to the ledger's API).
        #[arg(long)]
        offline_ledger: bool,
    },
    /// Every record since a moment, each with its inclusion proof, one JSON document a line.
    Export {
        /// From this moment (RFC 3339 or YYYY-MM-DD, UTC), inclusive; default: everything.
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints the public half of this installation's audit key (`audit.key_file`).
    PublicKey,
}

/// Export formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One `ProofFile` JSON document a line.
    Jsonl,
}

pub async fn run(settings: &Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    if let AuditCommand::Reconcile { task, since, offline_ledger } = command {
        return reconcile(settings, task, since, offline_ledger).await;
    }
    match command {
        AuditCommand::VerifyProof { file, public_key } => {
            let key = read_public_key(&public_key)?;
            let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let proof: ProofFile =
                serde_json::from_slice(&text).with_context(|| format!("{} is not a proof file", file.display()))?;
            report(offline::verify_file(&proof, &key))
        }
        AuditCommand::PublicKey => {
            let identity = gradients_miner::Identity::load(&settings.audit.key_file)?;
            println!("{}", hex::encode(identity.public_key()));
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let bus = Bus::connect(&settings.nats, "gradients-cli").await?;
            let client = AuditClient::new(bus.client, settings.nats.request_timeout());
            online(&client, command).await
        }
    }
}

async fn online(client: &AuditClient, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Checkpoint { fresh, size } => {
            let signed = client.checkpoint(&CheckpointRequest { tree_size: size, fresh }).await?;
            println!("{}", serde_json::to_string_pretty(&signed)?);
        }
        AuditCommand::Proof { event_id, leaf, size, out } => {
            let proof = client.proof(&ProofRequest { leaf_index: leaf, msg_id: event_id, tree_size: size }).await?;
            write_document(out.as_deref(), &ProofFile::Inclusion(proof))?;
        }
        AuditCommand::Consistency { old, new, out, public_key } => {
            let proof = ProofFile::Consistency(client.consistency(old, new).await?);
            write_document(out.as_deref(), &proof)?;
            if let Some(key) = public_key {
                return report(offline::verify_file(&proof, &read_public_key(&key)?));
            }
        }
        AuditCommand::Verify { public_key } => {
            let key = read_public_key(&public_key)?;
            match gradients_audit::verify::verify_log(client, key).await {
                Ok(report) => println!(
                    "ok: {} records rehashed, {} signed checkpoints match, {} alarm records",
                    report.records, report.checkpoints, report.alarms
                ),
                Err(gradients_audit::verify::VerifyRunError::Finding(finding)) => {
                    eprintln!("MISMATCH: {finding}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(e) => return Err(e.into()),
            }
        }
        AuditCommand::Export { since, format: ExportFormat::Jsonl, out } => {
            let since_ms = parse_moment(since.as_deref(), false)?.unwrap_or(0);
            let exported = export(client, since_ms, out.as_deref()).await?;
            eprintln!("exported {exported} records with their proofs");
        }
        AuditCommand::VerifyProof { .. } | AuditCommand::PublicKey | AuditCommand::Reconcile { .. } => {
            unreachable!("handled in run")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(
    settings: &Settings,
    task_id: Option<String>,
    since: Option<String>,
    offline_ledger: bool,
) -> anyhow::Result<ExitCode> {
    use gradients_audit::reconcile::{reconcile, Scope};
    let bus = Bus::connect(&settings.nats, "gradients-cli").await?;
    let timeout = settings.nats.request_timeout();
    let client = AuditClient::new(bus.client.clone(), timeout);
    let scope = Scope { task_id, since_ms: parse_moment(since.as_deref(), false)?.unwrap_or(0) };
    let ledger = (!offline_ledger).then_some((&bus.client, timeout));
    let report = reconcile(&client, ledger, &scope, &settings.ledger.scoring, &settings.models).await?;
    for difference in &report.differences {
        println!("DIFFERENCE: {difference}");
    }
    println!(
        "checked {} tasks, {} ledger entries, {} weights publications: {} differences",
        report.tasks,
        report.entries,
        report.weights,
        report.differences.len()
    );
    Ok(if report.differences.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Writes the export to `out` (or stdout).
async fn export(client: &AuditClient, since_ms: i64, out: Option<&Path>) -> anyhow::Result<u64> {
    let mut sink: Box<dyn std::io::Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    Ok(gradients_audit::export::export_jsonl(client, since_ms, &mut sink).await?)
}

fn write_document(out: Option<&Path>, proof: &ProofFile) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(proof)?;
    match out {
        Some(path) => std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn report(result: Result<offline::Verified, offline::VerifyError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(verified) => {
            println!("ok: {verified}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A public key given inline (64 hex characters) or as a file holding them.
fn read_public_key(given: &str) -> anyhow::Result<[u8; 32]> {
    if let Ok(key) = offline::parse_public_key(given) {
        return Ok(key);
    }
    let text = std::fs::read_to_string(given)
        .with_context(|| format!("{given:?} is neither 64 hex characters nor a readable key file"))?;
    offline::parse_public_key(&text).with_context(|| format!("{given} does not hold a public key"))
}
