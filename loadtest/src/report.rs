//! The figures of one run: per stage latency percentiles (HDR histograms, 3 significant
//! digits, 1 ms to 1 hour) and throughput, tasks completed, doubled ledger entries,
//! messages per second beside the raw JetStream ceiling; as JSON and as a table.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::drive::Driven;
use crate::measure::Observed;
use crate::raw::Ceiling;

/// The stages, in the order a task goes through them, with what each measures.
pub const STAGES: [(&str, &str); 7] = [
    ("submit_to_created", "intake: signed submit sent -> tasks.created stored"),
    ("created_to_assigned", "dispatch: tasks.created -> last assignment stored (offers, replies, signatures)"),
    ("assigned_to_submitted", "load miner: assignment -> signed submission (train split fetched, uploads)"),
    ("submitted_to_evaluated", "evaluator: submission -> its evaluation (checks, ONNX on the hidden splits)"),
    ("evaluated_to_finalized", "ledger: last evaluation -> last ledger entry of the task"),
    ("finalized_to_audited", "audit: last ledger entry -> captured in the hash-chained log"),
    ("end_to_end", "submit sent -> every ledger entry of the task in the audit log"),
];

/// One stage's figures.
#[derive(Debug, Clone, Serialize)]
pub struct StageFigures {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Completions of this stage per second, from the first submit to its last completion.
    pub throughput_per_second: f64,
}

/// One run's figures (one replica count of the scaled service).
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub replicas: usize,
    pub processes: Vec<String>,
    pub tasks_driven: usize,
    pub tasks_not_accepted: usize,
    pub tasks_completed: usize,
    pub doubled_ledger_entries: usize,
    /// Seconds from the first upload to the last event of the run.
    pub active_seconds: f64,
    pub tasks_per_second: f64,
    pub messages: usize,
    pub messages_per_second: f64,
    pub audit_records: usize,
    /// Messages stored in every stream during the run (object-store chunks and key-value
    /// entries included), per second: not the ratio's numerator, which counts events.
    pub all_stream_messages_per_second: f64,
    pub raw_jetstream_messages_per_second: f64,
    pub raw_jetstream_windowed_messages_per_second: f64,
    pub raw_mean_payload_bytes: f64,
    pub ratio_to_raw_jetstream: f64,
    pub stages: BTreeMap<String, StageFigures>,
    pub not_accepted_reasons: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds")
}

/// Builds the figures of a run from what the customers saw and what was read back.
pub fn figures(
    replicas: usize,
    processes: Vec<String>,
    driven: &[Driven],
    observed: &Observed,
    all_stream_messages: u64,
    ceiling: &Ceiling,
) -> RunFigures {
    let mut histograms: BTreeMap<&str, (Histogram<u64>, i64)> =
        STAGES.iter().map(|(name, _)| (*name, (histogram(), i64::MIN))).collect();
    let mut add = |stage: &str, from: Option<i64>, to: Option<i64>| {
        if let (Some(from), Some(to)) = (from, to) {
            let (h, last) = histograms.get_mut(stage).expect("a known stage");
            h.saturating_record((to - from).max(1) as u64);
            *last = (*last).max(to);
        }
    };
    let first_ms = driven.iter().map(|d| d.upload_started_ms).filter(|t| *t > 0).min().unwrap_or(0);
    let (mut completed, mut doubled) = (0, 0);
    for d in driven.iter().filter(|d| !d.task_id.is_empty()) {
        let Some(path) = observed.paths.get(&d.task_id) else { continue };
        doubled += path.doubled();
        add("submit_to_created", Some(d.submit_sent_ms), path.created_ms);
        add("created_to_assigned", path.created_ms, path.last_assigned());
        add("assigned_to_submitted", path.last_assigned(), path.last_submitted());
        for (miner, submitted) in &path.submitted_ms {
            add("submitted_to_evaluated", Some(*submitted), path.evaluated_ms.get(miner).copied());
        }
        add("evaluated_to_finalized", path.last_evaluated(), path.finalized());
        add("finalized_to_audited", path.finalized(), path.audited());
        if path.complete() {
            completed += 1;
            add("end_to_end", Some(d.submit_sent_ms), path.audited());
        }
    }
    let stages = histograms
        .into_iter()
        .map(|(name, (h, last))| {
            let span = if h.is_empty() { 1.0 } else { (last - first_ms).max(1) as f64 / 1000.0 };
            let figures = StageFigures {
                count: h.len(),
                p50_ms: h.value_at_quantile(0.50) as f64,
                p90_ms: h.value_at_quantile(0.90) as f64,
                p99_ms: h.value_at_quantile(0.99) as f64,
                max_ms: h.max() as f64,
                throughput_per_second: if h.is_empty() { 0.0 } else { h.len() as f64 / span },
            };
            (name.to_owned(), figures)
        })
        .collect();
    let active_seconds = ((observed.last_event_ms - first_ms).max(1) as f64) / 1000.0;
    let messages_per_second = observed.messages as f64 / active_seconds;
    let not_accepted: Vec<String> = driven.iter().filter_map(|d| d.error.clone()).collect();
    RunFigures {
        replicas,
        processes,
        tasks_driven: driven.len(),
        tasks_not_accepted: not_accepted.len(),
        tasks_completed: completed,
        doubled_ledger_entries: doubled,
        active_seconds,
        tasks_per_second: completed as f64 / active_seconds,
        messages: observed.messages,
        messages_per_second,
        audit_records: observed.audit_records,
        all_stream_messages_per_second: all_stream_messages as f64 / active_seconds,
        raw_jetstream_messages_per_second: ceiling.sequential_messages_per_second,
        raw_jetstream_windowed_messages_per_second: ceiling.windowed_messages_per_second,
        raw_mean_payload_bytes: ceiling.mean_payload_bytes,
        ratio_to_raw_jetstream: messages_per_second / ceiling.sequential_messages_per_second.max(1e-9),
        stages,
        not_accepted_reasons: not_accepted.into_iter().take(5).collect(),
    }
}

/// The run's figures as a table for the terminal (and the README).
pub fn table(run: &RunFigures) -> String {
    let mut out = format!(
        "replicas {}: {} of {} tasks completed in {:.1} s ({:.2} tasks/s), {} doubled ledger entries\n\
         pipeline {:.1} event msg/s ({} events; {:.1} msg/s in all streams, data and models included); raw JetStream publish+ack {:.0} msg/s sequential, \
         {:.0} msg/s windowed ({:.0} B mean); ratio {:.4} (goal >= 0.5)\n",
        run.replicas,
        run.tasks_completed,
        run.tasks_driven,
        run.active_seconds,
        run.tasks_per_second,
        run.doubled_ledger_entries,
        run.messages_per_second,
        run.messages,
        run.all_stream_messages_per_second,
        run.raw_jetstream_messages_per_second,
        run.raw_jetstream_windowed_messages_per_second,
        run.raw_mean_payload_bytes,
        run.ratio_to_raw_jetstream,
    );
    out.push_str(
        "| stage | count | p50 ms | p90 ms | p99 ms | max ms | per s |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, _) in STAGES {
        if let Some(s) = run.stages.get(name) {
            out.push_str(&format!(
                "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
                s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.throughput_per_second
            ));
        }
    }
    out
}

/// The whole report: the first run's figures at the top (the fields every reader looks
/// for), each replica count's run under `replicas`.
pub fn report_json(runs: &[RunFigures], config: serde_json::Value, metrics: serde_json::Value) -> serde_json::Value {
    let first = runs.first().expect("at least one run");
    let mut top = serde_json::to_value(first).expect("figures serialise");
    let object = top.as_object_mut().expect("an object");
    object.insert("config".into(), config);
    object.insert("ratio_goal".into(), serde_json::json!(0.5));
    object.insert(
        "stage_definitions".into(),
        serde_json::json!(STAGES.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
    );
    object.insert("replica_runs".into(), serde_json::to_value(runs).expect("figures serialise"));
    object.insert("metrics_exported".into(), metrics);
    top
}
