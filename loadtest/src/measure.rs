//! What the run did, read back from where the services left it: every event stream read
//! whole (with JetStream's own store times, the clock every service shares) and the audit
//! log through its API. From these, each task's path through the stages, whether it
//! completed, and whether any ledger entry was doubled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use gradients_audit::client::AuditClient;
use gradients_audit::protocol::RecordsRequest;
use gradients_bus::subjects::{self, streams};
use gradients_bus::Bus;
use gradients_proto::v1::{Assignment, EvaluationKind, EvaluationResult, LedgerEntry, Submission, TaskCreated};
use prost::Message;

use crate::drive::Driven;

/// One stored event: its stream, subject, payload size and when JetStream stored it.
pub struct Event {
    pub stream: String,
    pub subject: String,
    pub payload: bytes::Bytes,
    pub published_ms: i64,
}

/// The streams the pipeline's events go through (the audited ones and the audit's own).
pub fn event_streams() -> Vec<&'static str> {
    let mut names: Vec<&str> = streams::AUDITED.iter().map(|(name, _, _)| *name).collect();
    names.push(streams::AUDIT);
    names
}

/// Every message stored in `stream`, oldest first, through a throw-away consumer that
/// acknowledges nothing (the services' own consumers are not disturbed).
pub async fn read_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<Vec<Event>> {
    let mut stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        // A stream nobody declared in this run (no dead letters, say) holds nothing.
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e).with_context(|| format!("stream {name}")),
    };
    let last = stream.info().await?.state.last_sequence;
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < last {
        let mut batch = reader.fetch().max_messages(1000).expires(Duration::from_millis(500)).messages().await?;
        let mut any = false;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            any = true;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            seen = info.stream_sequence;
            events.push(Event {
                stream: name.to_owned(),
                subject: message.subject.to_string(),
                payload: message.payload.clone(),
                published_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            });
        }
        if !any {
            break;
        }
    }
    let _ = stream.delete_consumer(&reader.cached_info().name).await;
    Ok(events)
}

/// One task's way through the pipeline (Unix ms, from JetStream's store times).
#[derive(Debug, Default, Clone)]
pub struct Path {
    pub created_ms: Option<i64>,
    /// Per assigned miner: assignment, submission, evaluation.
    pub assigned_ms: BTreeMap<String, i64>,
    pub submitted_ms: BTreeMap<String, i64>,
    pub evaluated_ms: BTreeMap<String, i64>,
    /// Ledger entries: (miner, kind) -> stored time; more than one per key is a doubling.
    pub entries: HashMap<(String, i32), Vec<i64>>,
    /// When the audit captured each of the task's ledger entries.
    pub audited_ms: Vec<i64>,
}

impl Path {
    pub fn last_assigned(&self) -> Option<i64> {
        self.assigned_ms.values().copied().max()
    }
    pub fn last_submitted(&self) -> Option<i64> {
        self.submitted_ms.values().copied().max()
    }
    pub fn last_evaluated(&self) -> Option<i64> {
        self.evaluated_ms.values().copied().max()
    }
    pub fn finalized(&self) -> Option<i64> {
        self.entries.values().flatten().copied().max()
    }
    pub fn audited(&self) -> Option<i64> {
        self.audited_ms.iter().copied().max()
    }
    /// Ledger entries beyond one per (miner, kind).
    pub fn doubled(&self) -> usize {
        self.entries.values().map(|times| times.len().saturating_sub(1)).sum()
    }
    /// Created, assigned, one ledger entry per assigned miner, every entry in the audit log.
    pub fn complete(&self) -> bool {
        let paid: HashSet<&String> = self.entries.keys().map(|(miner, _)| miner).collect();
        self.created_ms.is_some()
            && !self.assigned_ms.is_empty()
            && self.assigned_ms.keys().all(|miner| paid.contains(miner))
            && self.audited_ms.len() >= self.entries.values().map(Vec::len).sum::<usize>()
    }
}

/// Everything read back after a run.
pub struct Observed {
    pub paths: HashMap<String, Path>,
    /// Event messages stored during the run, and their payload sizes.
    pub messages: usize,
    pub sizes: Vec<usize>,
    /// The last store time of any event of the run.
    pub last_event_ms: i64,
    /// Audit records captured during the run.
    pub audit_records: usize,
}

/// Reads every event stream and the audit log, keeping what belongs to `driven`'s tasks
/// (and counting every event stored since `since_ms`).
pub async fn observe(bus: &Bus, driven: &[Driven], since_ms: i64) -> anyhow::Result<Observed> {
    let ours: HashSet<&str> = driven.iter().map(|d| d.task_id.as_str()).filter(|t| !t.is_empty()).collect();
    let mut paths: HashMap<String, Path> = ours.iter().map(|t| ((*t).to_owned(), Path::default())).collect();
    let (mut messages, mut sizes, mut last_event_ms) = (0, Vec::new(), since_ms);
    for name in event_streams() {
        for event in read_stream(&bus.jetstream, name).await? {
            if event.published_ms < since_ms {
                continue;
            }
            messages += 1;
            sizes.push(event.payload.len());
            last_event_ms = last_event_ms.max(event.published_ms);
            record(&mut paths, &event);
        }
    }
    let audit_records = read_audit(bus, &mut paths, since_ms).await?;
    Ok(Observed { paths, messages, sizes, last_event_ms, audit_records })
}

/// Files one event under its task.
fn record(paths: &mut HashMap<String, Path>, event: &Event) {
    let at = event.published_ms;
    let payload = event.payload.as_ref();
    if event.subject == subjects::TASK_CREATED {
        if let Some(path) = TaskCreated::decode(payload).ok().and_then(|c| paths.get_mut(&c.task?.id)) {
            path.created_ms = Some(at);
        }
    } else if event.stream == streams::ASSIGNMENTS {
        if let Ok(a) = Assignment::decode(payload) {
            if let Some(path) = paths.get_mut(&a.task_id) {
                path.assigned_ms.entry(a.miner_id).or_insert(at);
            }
        }
    } else if event.stream == streams::SUBMISSIONS {
        if let Ok(s) = Submission::decode(payload) {
            if let Some(path) = paths.get_mut(&s.task_id) {
                path.submitted_ms.entry(s.miner_id).or_insert(at);
            }
        }
    } else if event.stream == streams::EVALUATIONS {
        if let Ok(e) = EvaluationResult::decode(payload) {
            if e.kind == EvaluationKind::MinerSubmission as i32 {
                if let Some(path) = paths.get_mut(&e.task_id) {
                    path.evaluated_ms.entry(e.miner_id).or_insert(at);
                }
            }
        }
    } else if event.subject == subjects::LEDGER_ENTRIES {
        if let Ok(entry) = LedgerEntry::decode(payload) {
            if let Some(path) = paths.get_mut(&entry.task_id) {
                path.entries.entry((entry.miner_id, entry.kind)).or_default().push(at);
            }
        }
    }
}

/// Reads the whole audit log; files the capture time of each of our ledger entries.
async fn read_audit(bus: &Bus, paths: &mut HashMap<String, Path>, since_ms: i64) -> anyhow::Result<usize> {
    let client = AuditClient::new(bus.client.clone(), Duration::from_secs(60));
    let (mut from_leaf, mut count) = (0, 0);
    loop {
        // Small pages: a page is one NATS reply, and records carry their payloads in hex (a
        // page of 1000 of the market's records outgrows the server's 1 MB max_payload, and
        // the audit's reply is then lost: the request times out).
        let request = RecordsRequest { from_leaf, since_ms, limit: 100 };
        let mut tries = 0;
        let page = loop {
            match client.records(&request).await {
                Ok(page) => break page,
                Err(e) if tries < 3 => {
                    tries += 1;
                    tracing::warn!(error = %e, "reading the audit log; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        };
        for stored in &page.records {
            let record = &stored.record;
            count += 1;
            if record.subject != subjects::LEDGER_ENTRIES {
                continue;
            }
            let Ok(entry) = hex::decode(&record.payload_hex)
                .map_err(|e| e.to_string())
                .and_then(|bytes| LedgerEntry::decode(bytes.as_slice()).map_err(|e| e.to_string()))
            else {
                continue;
            };
            if let Some(path) = paths.get_mut(&entry.task_id) {
                path.audited_ms.push(record.captured_at_ms);
            }
        }
        match page.next_leaf {
            Some(next) if !page.records.is_empty() => from_leaf = next,
            _ => return Ok(count),
        }
    }
}

/// Messages stored in every stream of the server (events, object-store chunks of data sets,
/// splits and models, key-value entries): what JetStream holds beyond the events.
pub async fn all_stored_messages(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut infos = js.streams();
    let mut total = 0;
    while let Some(info) = infos.next().await {
        total += info.map_err(|e| anyhow::anyhow!("listing streams: {e}"))?.state.messages;
    }
    Ok(total)
}

/// `Ok` once the audit's durable consumers have taken and acknowledged every event (each
/// is acknowledged after its record is stored); otherwise what is left. Asks JetStream,
/// not the audit, so waiting puts no load on the service being measured.
pub async fn audit_caught_up(js: &jetstream::Context) -> Result<(), String> {
    for (stream, _, consumer) in streams::AUDITED {
        match gradients_testkit::consumer_settled(js, stream, consumer).await {
            Ok(()) => {}
            // A stream nobody published to has no audit consumer to wait for.
            Err(e) if e.contains("not found") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
