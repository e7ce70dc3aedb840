//! The customer's side of a task after submitting: `gradients task watch` follows it
//! through its states, `gradients task result` shows the ranking and rewards, and
//! `--download DIR` fetches the winning model, every file checked against its sha256.
//!
//! A customer's NATS user may not read the status stream or the ledger (see
//! `deploy/nats/gradients.conf`), so everything comes through intake: `watch` asks intake
//! for the task, whose status intake projects from the status events
//! (`gradients.tasks.status.<task>`); `result` asks intake, which asks the ledger on the
//! owner's behalf and copies the winner's files into the customer's own bucket.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gradients_intake::client::IntakeClient;
use gradients_proto::v1::{EvaluationStatus, MinerStanding, Task, TaskResult, TaskStatus, TaskType as WireTaskType};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::output::{self, refused};

/// Exit code of `watch` and `result` for a task that ended without a winner.
pub const EXIT_TASK_FAILED: u8 = 2;
/// The path of every step a task goes through, in order; the bar counts them.
const STEPS: [TaskStatus; 5] =
    [TaskStatus::Accepted, TaskStatus::Dispatching, TaskStatus::Training, TaskStatus::Evaluating, TaskStatus::Scored];

/// Follows `task_id` until it is final: a progress bar over its steps, a line per change.
/// Exit 0 when scored, [`EXIT_TASK_FAILED`] when failed, rejected or cancelled.
pub async fn watch(client: &IntakeClient, task_id: &str, poll: Duration, json_lines: bool) -> anyhow::Result<ExitCode> {
    let bar = if json_lines { ProgressBar::hidden() } else { ProgressBar::new(STEPS.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let mut last: Option<(TaskStatus, String)> = None;
    loop {
        let task = match client.get(task_id).await {
            Ok(answer) => answer.task.context("intake answered without a task")?,
            Err(e) => {
                bar.finish_and_clear();
                return refused(e, json_lines);
            }
        };
        let status = TaskStatus::try_from(task.status).unwrap_or_default();
        let now = (status, task.status_reason.clone());
        if last.as_ref() != Some(&now) {
            let step = STEPS.iter().position(|s| *s == status).map_or(0, |i| i + 1);
            bar.set_position(step as u64);
            bar.set_message(status_line(&task));
            if json_lines {
                println!(
                    "{}",
                    json!({ "task_id": task.id, "status": status.label(), "reason": task.status_reason,
                            "seconds": started.elapsed().as_secs_f64() })
                );
            } else {
                let line = format!("{:>7.1}s  {}", started.elapsed().as_secs_f64(), status_line(&task));
                // Without a terminal the bar is hidden, and so is what it prints: say it plainly.
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
            }
            last = Some(now);
        }
        if status.is_terminal() {
            bar.finish_and_clear();
            return Ok(if status == TaskStatus::Scored { ExitCode::SUCCESS } else { ExitCode::from(EXIT_TASK_FAILED) });
        }
        if status == TaskStatus::Training {
            bar.set_message(format!("{} — {}", status_line(&task), time_left(&task)));
        }
        tokio::time::sleep(poll).await;
    }
}

fn status_line(task: &Task) -> String {
    let status = TaskStatus::try_from(task.status).unwrap_or_default().label();
    if task.status_reason.is_empty() {
        status
    } else {
        format!("{status}: {}", task.status_reason)
    }
}

fn time_left(task: &Task) -> String {
    let deadline = task.deadline.map_or(0, |d| d.unix_ms);
    let left = (deadline - gradients_proto::v1::Timestamp::now().unix_ms).max(0) / 1000;
    format!("{}m{:02}s to the deadline", left / 60, left % 60)
}

/// Prints the task's result; with `download`, also fetches the winning model into it.
pub async fn result(
    client: &IntakeClient,
    task_id: &str,
    download: Option<PathBuf>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let answer = match client.result(task_id, download.is_some()).await {
        Ok(answer) => answer,
        Err(e) => return refused(e, as_json),
    };
    let task = answer.task.context("intake answered without a task")?;
    let Some(result) = answer.result else {
        let status = TaskStatus::try_from(task.status).unwrap_or_default();
        if as_json {
            println!("{}", serde_json::to_string_pretty(&json!({ "task": output::task_json(&task), "result": null }))?);
        } else {
            println!(
                "task {} is {}: no result yet (follow it with `gradients task watch {}`)",
                task.id,
                status_line(&task),
                task.id
            );
        }
        return Ok(if status.is_terminal() && status != TaskStatus::Scored {
            ExitCode::from(EXIT_TASK_FAILED)
        } else {
            ExitCode::SUCCESS
        });
    };
    let mut downloaded = Vec::new();
    if let Some(dir) = &download {
        downloaded = fetch(client, &result, &answer.files, dir).await?;
    }
    if as_json {
        let mut value = result_json(&task, &result);
        if download.is_some() {
            value["downloaded"] = json!(downloaded
                .iter()
                .map(|(path, sha, bytes)| json!({ "path": path, "sha256": sha, "bytes": bytes }))
                .collect::<Vec<_>>());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", result_text(&task, &result));
        if let Some(dir) = &download {
            println!("\nwinning model in {} (every file matches its sha256):", dir.display());
            for (path, sha, bytes) in &downloaded {
                println!("  {path:<28} {bytes:>10} bytes  sha256 {sha}");
            }
        }
    }
    Ok(if result.winner_miner_id.is_empty() { ExitCode::from(EXIT_TASK_FAILED) } else { ExitCode::SUCCESS })
}

/// Labels of an evaluation status for people and JSON.
fn status_label(standing: &MinerStanding) -> &'static str {
    match EvaluationStatus::try_from(standing.status).unwrap_or_default() {
        EvaluationStatus::Valid => "valid",
        EvaluationStatus::Invalid => "invalid",
        EvaluationStatus::Late => "late",
        EvaluationStatus::Duplicate => "duplicate",
        EvaluationStatus::EvaluationFailed => "failed",
        EvaluationStatus::Unspecified => "missing",
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{:+.1}%", v * 100.0))
}

fn loss(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.4}"))
}

/// What a task's values are: a loss (lower is better) or, for GRPO, a mean reward (higher).
fn value_name(task: &Task) -> &'static str {
    if task.r#type == WireTaskType::Grpo as i32 {
        "reward"
    } else {
        "loss"
    }
}

fn result_text(task: &Task, result: &TaskResult) -> String {
    let value = value_name(task);
    let mut out = String::new();
    let winner = if result.winner_miner_id.is_empty() { "none".to_owned() } else { result.winner_miner_id.clone() };
    out.push_str(&format!("task      {} ({})\n", task.id, status_line(task)));
    out.push_str(&format!(
        "winner    {winner}  test {value} {}  (finalized: {})\n",
        loss(result.winner_loss),
        result.finalized_because
    ));
    out.push_str(&format!(
        "base model {value} {}  -> improvement {}\n",
        loss(result.base_model_loss),
        percent(result.improvement_over_base)
    ));
    let baseline = if result.baseline_miner_id.is_empty() { "not in this task" } else { &result.baseline_miner_id };
    out.push_str(&format!(
        "fixed baseline ({baseline}) {value} {}  -> improvement {}\n",
        loss(result.baseline_loss),
        percent(result.improvement_over_baseline)
    ));
    let confidence = |c: Option<f64>| c.map_or("-".into(), |c| format!("{c:.3}"));
    out.push_str(&format!(
        "confidence the winner beats the runner-up {}: {}; beats the baseline: {}  (paired bootstrap, test rows)\n",
        if result.runner_up_miner_id.is_empty() { "-" } else { &result.runner_up_miner_id },
        confidence(result.confidence_over_runner_up),
        confidence(result.confidence_over_baseline)
    ));
    if result.min_winner_confidence > 0.0 {
        out.push_str(&format!("first place is shared below a confidence of {}\n", result.min_winner_confidence));
    }
    out.push_str(&format!(
        "\n{:>4}  {:<41}  {:<9}  {:>8}  {:>8}  {:>6}  {:>7}  {:>6}  {}\n",
        "RANK", "MINER", "STATUS", "TEST", "SYNTH", "SCORE", "REWARD", "CONF", "NOTE"
    ));
    for s in &result.standings {
        let mut note = if s.baseline { "fixed baseline".to_owned() } else { String::new() };
        if !s.reason.is_empty() {
            note = if note.is_empty() { s.reason.clone() } else { format!("{note}; {}", s.reason) };
        } else if !s.score_reason.is_empty() && s.score_reason != "first" && s.score_reason != "ranked" {
            note = if note.is_empty() { s.score_reason.clone() } else { format!("{note}; {}", s.score_reason) };
        }
        out.push_str(&format!(
            "{:>4}  {:<41}  {:<9}  {:>8}  {:>8}  {:>6.2}  {:>6.1}%  {:>6}  {}\n",
            if s.rank == 0 { "-".to_owned() } else { s.rank.to_string() },
            s.miner_id,
            status_label(s),
            loss(s.test_loss),
            loss(s.synth_loss),
            s.score,
            s.reward_share * 100.0,
            s.winner_confidence.map_or("-".into(), |c| format!("{c:.3}")),
            note
        ));
    }
    out
}

fn result_json(task: &Task, result: &TaskResult) -> Value {
    let standings: Vec<Value> = result
        .standings
        .iter()
        .map(|s| {
            json!({
                "miner_id": s.miner_id, "status": status_label(s), "reason": s.reason,
                "test_loss": s.test_loss, "synth_loss": s.synth_loss, "rank": s.rank, "score": s.score,
                "score_reason": s.score_reason, "reward_share": s.reward_share, "baseline": s.baseline,
                "winner_confidence": s.winner_confidence, "submission_id": s.submission_id,
                "artifact_sha256": s.artifact.as_ref().map(|a| a.sha256.clone()),
                "manifest_sha256": s.manifest.as_ref().map(|m| m.sha256.clone()),
            })
        })
        .collect();
    json!({
        "task": output::task_json(task),
        "result": {
            "winner_miner_id": result.winner_miner_id,
            "finalized_because": result.finalized_because,
            "winner_loss": result.winner_loss,
            "base_model_loss": result.base_model_loss,
            "baseline_miner_id": result.baseline_miner_id,
            "baseline_loss": result.baseline_loss,
            "improvement_over_base": result.improvement_over_base,
            "improvement_over_baseline": result.improvement_over_baseline,
            "runner_up_miner_id": result.runner_up_miner_id,
            "confidence_over_runner_up": result.confidence_over_runner_up,
            "confidence_over_baseline": result.confidence_over_baseline,
            "min_winner_confidence": result.min_winner_confidence,
            "task_weight": result.task_weight,
            "standings": standings,
        }
    })
}

/// Downloads the staged files into `dir` and checks the chain of digests: the manifest is
/// the one the winner's evaluated submission named, the ONNX file and every listed file
/// hash to what the manifest says. Returns (path, sha256, bytes) per file written.
async fn fetch(
    client: &IntakeClient,
    result: &TaskResult,
    files: &[gradients_proto::v1::DownloadFile],
    dir: &Path,
) -> anyhow::Result<Vec<(String, String, u64)>> {
    let winner = result
        .standings
        .iter()
        .find(|s| s.miner_id == result.winner_miner_id)
        .context("the result names no winner to download")?;
    let mut contents = Vec::with_capacity(files.len());
    for file in files {
        anyhow::ensure!(safe_relative(&file.path), "refusing the unsafe path {:?}", file.path);
        let object = file.object.as_ref().with_context(|| format!("{} has no object", file.path))?;
        let data = client.read_download(object).await.with_context(|| format!("downloading {}", file.path))?;
        contents.push((file.path.clone(), data));
    }
    let find = |path: &str| contents.iter().find(|(p, _)| p == path).map(|(_, d)| d);
    let manifest = find("manifest.json").context("the download has no manifest.json")?;
    let expected_manifest = winner.manifest.as_ref().map(|m| m.sha256.clone()).unwrap_or_default();
    anyhow::ensure!(
        sha256_hex(manifest) == expected_manifest,
        "manifest.json does not hash to the {expected_manifest} the winner's submission named"
    );
    let parsed: Value = serde_json::from_slice(manifest).context("manifest.json does not parse")?;
    let mut expected: Vec<(String, String)> =
        vec![("model.onnx".into(), parsed["onnx_sha256"].as_str().unwrap_or_default().to_owned())];
    for listed in parsed["files"].as_array().into_iter().flatten() {
        let path = listed["path"].as_str().unwrap_or_default().to_owned();
        expected.push((path, listed["sha256"].as_str().unwrap_or_default().to_owned()));
    }
    let mut written = Vec::with_capacity(contents.len());
    for (path, data) in &contents {
        let digest = sha256_hex(data);
        if let Some((_, want)) = expected.iter().find(|(p, _)| p == path) {
            anyhow::ensure!(&digest == want, "{path} hashes to {digest}, the manifest says {want}");
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, data).with_context(|| format!("writing {}", target.display()))?;
        written.push((path.clone(), digest, data.len() as u64));
    }
    for (path, _) in &expected {
        anyhow::ensure!(find(path).is_some(), "the manifest lists {path}, which was not delivered");
    }
    Ok(written)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn safe_relative(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}
