//! `gradients-loadtest` run briefly, as an operator would: a few tasks at a low rate through
//! every service as a process of its own (the workspace's `gradients` binary, built by
//! `cargo test --workspace` / `make test`) on a private NATS server. Every driven task must
//! complete (paid, one ledger entry per assigned miner, each in the audit log), no ledger
//! entry may be doubled, and report.json must carry the figures the README quotes.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const TASKS: u64 = 3;

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_else(|| panic!("report.json has no number {key}: {report:#}"))
}

#[test]
fn a_short_run_completes_every_task_once_and_reports_its_figures() {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_gradients-loadtest"));
    let services = binary.with_file_name("gradients");
    assert!(
        services.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --bins, or cargo test --workspace)",
        services.display()
    );
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(&binary)
        .args(["--seconds", "3", "--rate", "1", "--replicas", "1", "--miners", "2", "--miners-per-task", "2"])
        .args(["--raw-seconds", "0.5", "--drain-seconds", "240", "--out"])
        .arg(out.path())
        .output()
        .expect("run gradients-loadtest");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(output.status.success(), "gradients-loadtest failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));

    let report: Value = serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["tasks_driven"].as_u64(), Some(TASKS), "{report:#}");
    assert_eq!(report["tasks_completed"].as_u64(), Some(TASKS), "every driven task completes: {report:#}");
    assert_eq!(report["doubled_ledger_entries"].as_u64(), Some(0), "{report:#}");
    let (mps, raw) = (number(&report, "messages_per_second"), number(&report, "raw_jetstream_messages_per_second"));
    assert!(mps > 0.0 && raw > 0.0, "{report:#}");
    let ratio = number(&report, "ratio_to_raw_jetstream");
    assert!((ratio - mps / raw).abs() <= 1e-9 * ratio.max(1.0), "ratio {ratio} is not {mps} / {raw}");
    for stage in [
        "submit_to_created",
        "created_to_assigned",
        "assigned_to_submitted",
        "submitted_to_evaluated",
        "evaluated_to_finalized",
        "finalized_to_audited",
        "end_to_end",
    ] {
        let figures = &report["stages"][stage];
        let (p50, p99) = (number(figures, "p50_ms"), number(figures, "p99_ms"));
        assert!(p50 >= 1.0 && p99 >= p50, "{stage}: p50 {p50} p99 {p99}");
        let expected = if stage == "submitted_to_evaluated" { TASKS * 2 } else { TASKS };
        assert_eq!(figures["count"].as_u64(), Some(expected), "{stage}: {figures:#}");
    }
    // End to end covers every stage after it, so it is never shorter than the longest.
    assert!(
        number(&report["stages"]["end_to_end"], "p50_ms") >= number(&report["stages"]["submit_to_created"], "p50_ms")
    );
    let runs = report["replica_runs"].as_array().expect("a per-replica section");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["replicas"].as_u64(), Some(1));
    assert!(out.path().join("scaling.svg").exists() && out.path().join("report.md").exists());
    // Issue 17 §5: every service exports consumer lag, handler latency and outcomes.
    let exported = report["metrics_exported"]["replicas_1"].as_object().expect("metrics per process");
    assert_eq!(exported.len(), 5, "{exported:?}");
    for (process, families) in exported {
        for family in ["consumer_lag", "handler_latency", "outcomes"] {
            assert_eq!(families[family].as_bool(), Some(true), "{process} does not export {family}");
        }
    }
}
