//! `gradients ledger ...`: what auditors and customers ask of the reward ledger.

use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use clap::{Subcommand, ValueEnum};
use gradients_bus::Bus;
use gradients_config::Settings;
use gradients_ledger::client::LedgerClient;
use gradients_proto::v1::{LedgerEntriesRequest, LedgerEntry, LedgerEntryKind, TaskResult};
use serde_json::{json, Value};

use crate::output::{refused, time_ms};

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// A finalized task: winner, improvement over the base model and baseline, entries.
    Task {
        /// The task id.
        task_id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One miner's entries, oldest first.
    Miner {
        /// The miner id.
        miner_id: String,
        /// From this moment (RFC 3339 or YYYY-MM-DD, UTC), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// Until this moment (RFC 3339 or YYYY-MM-DD, UTC), exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Miner weights at the end of a period.
    Weights {
        /// `now`, a day (YYYY-MM-DD: weights at its end, UTC) or an RFC 3339 moment.
        #[arg(long, default_value = "now")]
        period: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every entry (optionally of one period), for an audit: CSV or JSON on stdout.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// From this moment, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// Until this moment, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Entries fetched per request.
        #[arg(long, default_value_t = 500)]
        page_size: u32,
    },
}

/// Export formats.
#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One row per entry, with a header.
    Csv,
    /// A JSON array of entries.
    Json,
}

/// Runs a ledger command; the exit code is 1 when the service refused the request.
pub async fn run(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let bus = Bus::connect(&settings.nats, "gradients-cli").await?;
    let client = LedgerClient::new(bus, settings.nats.request_timeout());
    match command {
        LedgerCommand::Task { task_id, json } => match client.task(&task_id).await {
            Ok(response) => {
                let result = response.result.context("the ledger answered without a result")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&result_json(&result))?);
                } else {
                    print!("{}", result_text(&result));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => refused(e, json),
        },
        LedgerCommand::Miner { miner_id, since, until, json } => {
            let request = LedgerEntriesRequest {
                miner_id,
                since_ms: parse_moment(since.as_deref(), false)?.unwrap_or(0),
                until_ms: parse_moment(until.as_deref(), false)?.unwrap_or(0),
                page_size: 500,
                page_token: String::new(),
            };
            match client.all_entries(&request).await {
                Ok(entries) if json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&Value::Array(entries.iter().map(entry_json).collect()))?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(entries) => {
                    print!("{}", entries_table(&entries));
                    let total: f64 = entries.iter().map(|e| e.score * e.task_weight).sum();
                    println!("{} entries, weighted score {total:.3}", entries.len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, json),
            }
        }
        LedgerCommand::Weights { period, json } => {
            let at_ms = parse_moment(Some(&period), true)?.unwrap_or(0);
            match client.weights(at_ms).await {
                Ok(weights) if json => {
                    let rows: Vec<Value> =
                        weights.weights.iter().map(|w| json!({ "miner_id": w.miner_id, "weight": w.weight })).collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({ "at": time_ms(weights.at_ms), "weights": rows }))?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Ok(weights) => {
                    println!("weights at {}", time_ms(weights.at_ms));
                    println!("{:<44}  {:>8}", "MINER", "WEIGHT");
                    for w in &weights.weights {
                        println!("{:<44}  {:>8.4}", w.miner_id, w.weight);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => refused(e, json),
            }
        }
        LedgerCommand::Export { format, since, until, page_size } => {
            let request = LedgerEntriesRequest {
                miner_id: String::new(),
                since_ms: parse_moment(since.as_deref(), false)?.unwrap_or(0),
                until_ms: parse_moment(until.as_deref(), false)?.unwrap_or(0),
                page_size,
                page_token: String::new(),
            };
            let entries = match client.all_entries(&request).await {
                Ok(entries) => entries,
                Err(e) => return refused(e, matches!(format, ExportFormat::Json)),
            };
            match format {
                ExportFormat::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&Value::Array(entries.iter().map(entry_json).collect()))?
                    )
                }
                ExportFormat::Csv => write_csv(&entries)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads `now`, `YYYY-MM-DD` (its start, or its end when `end_of_day`) or RFC 3339.
pub(crate) fn parse_moment(text: Option<&str>, end_of_day: bool) -> anyhow::Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    if text == "now" {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day { day.succ_opt().context("date out of range")? } else { day };
        return Ok(Some(Utc.from_utc_datetime(&day.and_time(NaiveTime::MIN)).timestamp_millis()));
    }
    let moment = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{text:?} is not `now`, YYYY-MM-DD or an RFC 3339 moment"))?;
    Ok(Some(moment.timestamp_millis()))
}

fn kind_label(entry: &LedgerEntry) -> String {
    LedgerEntryKind::try_from(entry.kind).unwrap_or_default().as_str_name().to_ascii_lowercase()
}

fn entry_json(entry: &LedgerEntry) -> Value {
    json!({
        "entry_id": entry.entry_id,
        "task_id": entry.task_id,
        "miner_id": entry.miner_id,
        "kind": kind_label(entry),
        "score": entry.score,
        "task_weight": entry.task_weight,
        "rank": if entry.rank == 0 { Value::Null } else { json!(entry.rank) },
        "ranking_loss": entry.ranking_loss,
        "reason": entry.reason,
        "corrects_entry_id": entry.corrects_entry_id,
        "recorded_at": entry.recorded_at.map(|t| time_ms(t.unix_ms)),
        "source_event_ids": entry.source_event_ids,
        "source_sha256": entry.source_sha256,
    })
}

fn result_json(result: &TaskResult) -> Value {
    json!({
        "task_id": result.task_id,
        "winner": result.winner_miner_id,
        "finalized_because": result.finalized_because,
        "finalized_at": result.finalized_at.map(|t| time_ms(t.unix_ms)),
        "winner_loss": result.winner_loss,
        "base_model_loss": result.base_model_loss,
        "baseline_loss": result.baseline_loss,
        "improvement_over_base": result.improvement_over_base,
        "improvement_over_baseline": result.improvement_over_baseline,
        "task_weight": result.task_weight,
        "entries": result.entries.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

fn percent(value: Option<f64>) -> String {
    value.map(|v| format!("{:+.1}%", v * 100.0)).unwrap_or_else(|| "-".into())
}

fn result_text(result: &TaskResult) -> String {
    let loss = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "task {}\nwinner {} (test loss {})\nbase model {}  ->  {} improvement\nfixed baseline {}  ->  {} improvement\nfinalized {} ({}), task weight {:.3}\n\n",
        result.task_id,
        if result.winner_miner_id.is_empty() { "none" } else { &result.winner_miner_id },
        loss(result.winner_loss),
        loss(result.base_model_loss),
        percent(result.improvement_over_base),
        loss(result.baseline_loss),
        percent(result.improvement_over_baseline),
        result.finalized_at.map(|t| time_ms(t.unix_ms)).unwrap_or_default(),
        result.finalized_because,
        result.task_weight,
    );
    out.push_str(&entries_table(&result.entries));
    out
}

fn entries_table(entries: &[LedgerEntry]) -> String {
    let mut out = format!(
        "{:<20}  {:<24}  {:>4}  {:>7}  {:<10}  {:<15}  {}\n",
        "RECORDED", "MINER", "RANK", "SCORE", "KIND", "REASON", "TASK"
    );
    for e in entries {
        out.push_str(&format!(
            "{:<20}  {:<24}  {:>4}  {:>7.2}  {:<10}  {:<15}  {}\n",
            e.recorded_at.map(|t| time_ms(t.unix_ms)).unwrap_or_default(),
            e.miner_id,
            if e.rank == 0 { "-".to_owned() } else { e.rank.to_string() },
            e.score,
            kind_label(e),
            e.reason,
            e.task_id
        ));
    }
    out
}

fn write_csv(entries: &[LedgerEntry]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(std::io::stdout());
    writer.write_record([
        "entry_id",
        "task_id",
        "miner_id",
        "kind",
        "score",
        "task_weight",
        "rank",
        "ranking_loss",
        "reason",
        "corrects_entry_id",
        "recorded_at_ms",
        "source_event_ids",
        "source_sha256",
    ])?;
    for e in entries {
        writer.write_record([
            e.entry_id.clone(),
            e.task_id.clone(),
            e.miner_id.clone(),
            kind_label(e),
            e.score.to_string(),
            e.task_weight.to_string(),
            if e.rank == 0 { String::new() } else { e.rank.to_string() },
            e.ranking_loss.map(|l| l.to_string()).unwrap_or_default(),
            e.reason.clone(),
            e.corrects_entry_id.clone(),
            e.recorded_at.map(|t| t.unix_ms.to_string()).unwrap_or_default(),
            e.source_event_ids.join(";"),
            e.source_sha256.join(";"),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days, RFC 3339 moments and `now` are read as documented.
    #[test]
    fn moments_parse() {
        assert_eq!(parse_moment(Some("now"), true).unwrap(), None);
        assert_eq!(parse_moment(Some("1970-01-02"), false).unwrap(), Some(86_400_000));
        assert_eq!(parse_moment(Some("1970-01-01"), true).unwrap(), Some(86_400_000));
        assert_eq!(parse_moment(Some("1970-01-01T00:00:01Z"), false).unwrap(), Some(1_000));
        assert!(parse_moment(Some("yesterday"), false).is_err());
    }
}
