//! How the CLI shows tasks: a readable block or table for people, JSON with `--json`.

use std::process::ExitCode;

use gradients_bus::api::CallError;
use gradients_proto::v1::{DatasetRef, Task, TaskStatus, TaskType, Timestamp};
use serde_json::{json, Value};

/// A task as JSON (stable field names, enums as lower-case labels).
pub fn task_json(task: &Task) -> Value {
    let split = |part: &Option<DatasetRef>| match part {
        Some(DatasetRef { object: Some(object), rows }) => json!({
            "bucket": object.bucket, "object": object.name, "sha256": object.sha256, "bytes": object.size, "rows": rows,
        }),
        _ => Value::Null,
    };
    let splits = task.splits.clone().unwrap_or_default();
    json!({
        "id": task.id,
        "name": task.name,
        "type": type_label(task),
        "base_model": task.base_model,
        "status": status_label(task),
        "status_reason": task.status_reason,
        "hours_to_complete": task.hours_to_complete,
        "reward_functions": task.reward_functions,
        "columns": task.columns,
        "dataset": { "sha256": task.dataset.as_ref().map(|d| d.sha256.clone()), "bytes": task.dataset.as_ref().map(|d| d.size), "rows": task.dataset_rows },
        "splits": { "train": split(&splits.train), "synth": split(&splits.synth), "test": split(&splits.test) },
        "created_at": time(task.created_at),
        "deadline": time(task.deadline),
        "idempotency_key": task.idempotency_key,
    })
}

/// A task as a block of `key: value` lines.
pub fn task_block(task: &Task) -> String {
    let splits = task.splits.clone().unwrap_or_default();
    let rows = |part: &Option<DatasetRef>| part.as_ref().map(|p| p.rows).unwrap_or(0);
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:>12}  {value}\n"));
    line("task", task.id.clone());
    line("name", task.name.clone());
    line("type", type_label(task));
    line("base model", task.base_model.clone());
    line(
        "status",
        if task.status_reason.is_empty() {
            status_label(task)
        } else {
            format!("{} ({})", status_label(task), task.status_reason)
        },
    );
    line(
        "rows",
        format!(
            "{} = train {} + synth {} + test {} (hidden)",
            task.dataset_rows,
            rows(&splits.train),
            rows(&splits.synth),
            rows(&splits.test)
        ),
    );
    line("created", time(task.created_at));
    line("deadline", time(task.deadline));
    out
}

/// Tasks as a table, one line each.
pub fn task_table(tasks: &[Task]) -> String {
    let mut out = format!(
        "{:<36}  {:<10}  {:<9}  {:<10}  {:>7}  {:<20}  {}\n",
        "TASK", "STATUS", "TYPE", "MODEL", "ROWS", "CREATED", "NAME"
    );
    for task in tasks {
        out.push_str(&format!(
            "{:<36}  {:<10}  {:<9}  {:<10}  {:>7}  {:<20}  {}\n",
            task.id,
            status_label(task),
            type_label(task),
            task.base_model,
            task.dataset_rows,
            time(task.created_at),
            task.name
        ));
    }
    out
}

fn status_label(task: &Task) -> String {
    TaskStatus::try_from(task.status).unwrap_or_default().label()
}

fn type_label(task: &Task) -> String {
    TaskType::try_from(task.r#type).unwrap_or_default().label()
}

fn time(at: Option<Timestamp>) -> String {
    at.and_then(|t| chrono::DateTime::from_timestamp_millis(t.unix_ms))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Prints a service's refusal (typed errors keep their code, row and column) and gives
/// the exit code; other failures are returned as errors.
pub fn refused(error: CallError, json: bool) -> anyhow::Result<ExitCode> {
    let CallError::Service(api_error) = &error else { return Err(error.into()) };
    if json {
        let code = error.code().map(|c| c.as_str_name()).unwrap_or("INTERNAL");
        let detail = json!({ "error": { "code": code, "message": api_error.message, "row": api_error.row, "column": api_error.column } });
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        eprintln!("refused: {error}");
    }
    Ok(ExitCode::FAILURE)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time_ms(unix_ms: i64) -> String {
    time(Some(Timestamp { unix_ms }))
}
