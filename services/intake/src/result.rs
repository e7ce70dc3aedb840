//! `gradients.api.tasks.result`: a customer's view of how its task ended, and the model it
//! paid for.
//!
//! The customer may not call the ledger's queries (they answer for any task, see
//! `deploy/nats/gradients.conf`); intake, which authenticates the customer and knows who owns
//! each task, asks the ledger on the owner's behalf (`gradients.api.ledger.task`) and returns
//! the ledger's result unchanged: the ranking with each miner's losses, status, reward and
//! the confidences. Another customer's task is answered like a missing one.
//!
//! With `stage_download`, intake copies the winner's files out of the winning miner's own
//! bucket (which no customer may read) into the caller's uploads bucket, where the caller's
//! user may read them: the ONNX model and the manifest the miner signed into its submission,
//! then every file the manifest lists (the HF folder the model was exported from and the
//! training report). Each file is read by its content name and checked against the sha256
//! the manifest (or the submission) gives before it is copied, and the reader checks it again.

use std::path::{Component, Path};
use std::time::Duration;

use gradients_bus::api::call;
use gradients_bus::objects::{self, ObjectError};
use gradients_bus::subjects::{api, buckets};
use gradients_proto::v1::{
    DownloadFile, ErrorCode, EvaluationStatus, LedgerTaskRequest, LedgerTaskResponse, MinerStanding, ObjectRef,
    TaskResult, TaskResultRequest, TaskResultResponse,
};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::RequestError;
use crate::{tasks, Context};

/// The largest manifest intake reads.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// The largest single model file intake copies.
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Where a staged file goes in the caller's bucket: `results/<task>/<path>`.
const RESULTS_PREFIX: &str = "results";

/// The part of a submission's manifest that lists its files.
#[derive(Deserialize)]
struct ManifestFiles {
    #[serde(default)]
    files: Vec<ListedFile>,
}

#[derive(Deserialize)]
struct ListedFile {
    path: String,
    sha256: String,
    bytes: u64,
}

/// Answers a `result` request for the caller's own task.
pub async fn result(
    ctx: &Context,
    caller: &Caller,
    request: TaskResultRequest,
) -> Result<TaskResultResponse, RequestError> {
    let row = tasks::find_visible(&ctx.db, caller, &request.task_id).await?;
    let task = tasks::to_proto(&row)?;
    let Some(result) = ledger_result(ctx, &request.task_id).await? else {
        return Ok(TaskResultResponse { task: Some(task), result: None, files: Vec::new() });
    };
    let files = if request.stage_download { stage(ctx, caller, &result).await? } else { Vec::new() };
    Ok(TaskResultResponse { task: Some(task), result: Some(result), files })
}

/// The ledger's result for `task_id`, or `None` while it has not finalized the task.
async fn ledger_result(ctx: &Context, task_id: &str) -> Result<Option<TaskResult>, RequestError> {
    let request = LedgerTaskRequest { task_id: task_id.to_owned() };
    let timeout = ctx.settings.nats.request_timeout().max(Duration::from_secs(1));
    match call::<LedgerTaskResponse>(&ctx.bus.client, api::ledger(api::LEDGER_TASK), &request, timeout).await {
        Ok(answer) => Ok(answer.result),
        Err(e) if e.code() == Some(ErrorCode::TaskNotFound) => Ok(None),
        Err(e) => Err(RequestError::Ledger(e)),
    }
}

/// Copies the winner's files into the caller's uploads bucket; returns where each went.
async fn stage(ctx: &Context, caller: &Caller, result: &TaskResult) -> Result<Vec<DownloadFile>, RequestError> {
    let not_downloadable = |why: String| RequestError::bad(ErrorCode::InvalidStateTransition, why);
    let winner = result
        .standings
        .iter()
        .find(|s| s.miner_id == result.winner_miner_id && !s.miner_id.is_empty())
        .ok_or_else(|| not_downloadable(format!("task {} has no winner to download", result.task_id)))?;
    if winner.status != EvaluationStatus::Valid as i32 {
        return Err(not_downloadable(format!("the winner of task {} has no valid submission", result.task_id)));
    }
    let artifact = own_object(winner, winner.artifact.as_ref(), "model.onnx")?;
    let manifest_ref = own_object(winner, winner.manifest.as_ref(), "manifest.json")?;
    let source = objects::bucket(&ctx.bus, &buckets::artifacts(&winner.miner_id)).await?;
    let target_bucket = buckets::uploads(&caller.customer_id);
    let target = objects::bucket(&ctx.bus, &target_bucket).await?;

    let manifest = read(&source, &manifest_ref, MAX_MANIFEST_BYTES).await?;
    let listed: ManifestFiles = serde_json::from_slice(&manifest)
        .map_err(|e| RequestError::Staging { path: "manifest.json".into(), reason: e.to_string() })?;
    let mut wanted: Vec<(String, ObjectRef)> =
        vec![("model.onnx".into(), artifact), ("manifest.json".into(), manifest_ref)];
    for file in listed.files {
        if !is_safe_relative(&file.path) {
            return Err(RequestError::Staging { path: file.path, reason: "not a plain relative path".into() });
        }
        let (bucket, name) = buckets::artifact_file(&winner.miner_id, &file.sha256, &file.path);
        wanted.push((file.path, ObjectRef { bucket, name, sha256: file.sha256, size: file.bytes }));
    }
    let mut staged = Vec::with_capacity(wanted.len());
    for (path, reference) in wanted {
        let data = read(&source, &reference, MAX_FILE_BYTES).await?;
        let name = format!("{RESULTS_PREFIX}/{}/{path}", result.task_id);
        let object = objects::put_bytes(&target, &target_bucket, &name, &data).await?;
        staged.push(DownloadFile { path, object: Some(object) });
    }
    tracing::info!(task_id = %result.task_id, files = staged.len(), "winning model staged for download");
    Ok(staged)
}

/// The reference, if it is the winner's own content-named object (anything else is not
/// followed: a reference into another bucket could name data the caller may not read).
fn own_object(winner: &MinerStanding, reference: Option<&ObjectRef>, path: &str) -> Result<ObjectRef, RequestError> {
    let reference = reference.cloned().ok_or_else(|| RequestError::Staging {
        path: path.into(),
        reason: "the winner's submission names no such file".into(),
    })?;
    let (bucket, name) = buckets::artifact_file(&winner.miner_id, &reference.sha256, path);
    if reference.bucket != bucket || reference.name != name {
        return Err(RequestError::Staging {
            path: path.into(),
            reason: format!("{}/{} is not the winner's content-named object", reference.bucket, reference.name),
        });
    }
    Ok(reference)
}

async fn read(
    store: &async_nats::jetstream::object_store::ObjectStore,
    reference: &ObjectRef,
    limit: u64,
) -> Result<bytes::Bytes, RequestError> {
    objects::read_verified(store, reference, limit).await.map_err(|e| match e {
        ObjectError::Bus(bus) => RequestError::Bus(bus),
        other => RequestError::Staging { path: reference.name.clone(), reason: other.to_string() },
    })
}

/// A path of plain names below the download folder (no root, no `..`, no `.`).
fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(name) if !name.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listed paths may not climb out of the download folder.
    #[test]
    fn only_plain_relative_paths() {
        assert!(is_safe_relative("model/config.json"));
        assert!(is_safe_relative("report.json"));
        for bad in ["", "/etc/passwd", "../x", "model/../../x", "./x", "a\\b"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}
