//! The customers' side of the load: at a set rate, each task's data set is uploaded to the
//! customer's own bucket and submitted through intake's signed API, as `gradients task
//! submit` does. Customers take turns (intake bounds the submits one customer may have in
//! progress), and every data set is different (intake splits each by its task id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gradients_bus::Bus;
use gradients_intake::client::IntakeClient;
use gradients_intake::customer::CustomerKey;
use gradients_proto::v1::{LedgerEntry, SubmitTaskRequest, TaskType};
use indicatif::ProgressBar;
use prost::Message;
use tokio::task::JoinSet;

use crate::miners::BASE_MODEL;

/// How long a customer keeps retrying an upload or a submit that failed (intake busy).
const RETRY_LIMIT: Duration = Duration::from_secs(60);

/// One task as the customer saw it.
#[derive(Debug, Clone, Default)]
pub struct Driven {
    pub task_id: String,
    /// When the upload started and the submit was sent / answered (Unix ms).
    pub upload_started_ms: i64,
    pub submit_sent_ms: i64,
    pub submit_answered_ms: i64,
    /// Why it never became a task, if it did not.
    pub error: Option<String>,
}

/// What the customers are asked to do.
pub struct DriveOptions {
    pub seconds: f64,
    pub rate: f64,
    pub rows: usize,
    pub hours: f64,
    pub customers: usize,
    pub run_label: String,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A data set of `rows` instruct rows (reverse a word), distinct per task and row.
pub fn dataset(task: usize, rows: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for row in 0..rows {
        let word: String = format!("t{task}r{row}")
            .chars()
            .chain((0..6).map(|k| (b'a' + ((task * 7 + row * 13 + k * 5) % 26) as u8) as char))
            .collect();
        let reversed: String = word.chars().rev().collect();
        let line = serde_json::json!({ "instruction": "Reverse the word.", "input": word, "output": reversed });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Counts ledger entries per task as they are published, for progress and for knowing
/// when every task has been paid.
#[derive(Clone, Default)]
pub struct Paid(Arc<Mutex<HashMap<String, usize>>>);

impl Paid {
    /// Listens on the ledger's entry subject until the connection closes.
    pub async fn listen(bus: &Bus) -> anyhow::Result<Self> {
        let paid = Self::default();
        let mut entries = bus.client.subscribe(gradients_bus::subjects::LEDGER_ENTRIES).await?;
        let counts = paid.0.clone();
        tokio::spawn(async move {
            while let Some(message) = entries.next().await {
                if let Ok(entry) = LedgerEntry::decode(message.payload.as_ref()) {
                    *counts.lock().expect("paid lock").entry(entry.task_id).or_default() += 1;
                }
            }
        });
        bus.client.flush().await?;
        Ok(paid)
    }

    /// How many of `tasks` have at least `entries` ledger entries.
    pub fn complete(&self, tasks: &[String], entries: usize) -> usize {
        let counts = self.0.lock().expect("paid lock");
        tasks.iter().filter(|t| counts.get(*t).copied().unwrap_or(0) >= entries).count()
    }

    /// How many tasks seen so far have at least `entries` ledger entries.
    pub fn complete_any(&self, entries: usize) -> usize {
        self.0.lock().expect("paid lock").values().filter(|n| **n >= entries).count()
    }
}

/// Submits tasks at `rate` per second for `seconds`; returns each task as the customer saw
/// it once every submit has been answered.
pub async fn drive(bus: &Bus, options: &DriveOptions, bar: &ProgressBar) -> Vec<Driven> {
    let customers: Vec<IntakeClient> = (0..options.customers.max(1))
        .map(|_| IntakeClient::new(bus.clone(), CustomerKey::generate(), Duration::from_secs(30)))
        .collect();
    let total = (options.seconds * options.rate).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(1e-3));
    let started = Instant::now();
    let mut submits = JoinSet::new();
    for index in 0..total {
        let due = started + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due.into()).await;
        let client = customers[index % customers.len()].clone();
        let request = SubmitTaskRequest {
            idempotency_key: format!("{}-{index}", options.run_label),
            name: format!("load-{index}"),
            r#type: TaskType::Instruct as i32,
            base_model: BASE_MODEL.to_owned(),
            hours_to_complete: options.hours,
            ..Default::default()
        };
        let data = dataset(index, options.rows);
        submits.spawn(async move { (index, submit_one(&client, request, &data).await) });
        bar.set_length(index as u64 + 1);
    }
    let mut driven = vec![Driven::default(); total];
    while let Some(done) = submits.join_next().await {
        if let Ok((index, outcome)) = done {
            driven[index] = outcome;
        }
    }
    driven
}

/// Uploads and submits one task, retrying what intake refuses for now.
async fn submit_one(client: &IntakeClient, mut request: SubmitTaskRequest, data: &[u8]) -> Driven {
    let mut driven = Driven { upload_started_ms: now_ms(), ..Default::default() };
    let started = Instant::now();
    let dataset = loop {
        match client.upload_dataset(data).await {
            Ok(dataset) => break dataset,
            Err(e) if started.elapsed() < RETRY_LIMIT => {
                tracing::debug!(error = %e, "upload failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                driven.error = Some(format!("upload: {e}"));
                return driven;
            }
        }
    };
    request.dataset = Some(dataset);
    driven.submit_sent_ms = now_ms();
    loop {
        match client.submit(&request).await {
            Ok(response) => {
                driven.submit_answered_ms = now_ms();
                driven.task_id = response.task.map(|t| t.id).unwrap_or_default();
                return driven;
            }
            Err(e) if started.elapsed() < RETRY_LIMIT => {
                tracing::debug!(error = %e, "submit failed; retrying with the same idempotency key");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                driven.error = Some(format!("submit: {e}"));
                return driven;
            }
        }
    }
}
