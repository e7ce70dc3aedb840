//! Granted data: a miner reads the train split of a task it was assigned, and nothing else.
//! Every request carries the assignment (signed by dispatch: the grant) and is signed by
//! the miner it names, dated within dispatch's clock-skew window and naming the miner's
//! current registration (a captured request cannot be replayed later for its reply); the
//! object asked for must be the one the grant names, before the grant's expiry. Synthetic
//! and test splits are never named by a grant.

use gradients_bus::objects;
use gradients_miner::identity::{domains, verify_message};
use gradients_proto::v1::{ErrorCode, Timestamp, TrainDataRequest, TrainDataResponse};

use crate::data_cache::{self, DataCache};
use crate::error::Refusal;
use crate::{registry, Context};

/// Answers one chunk of granted data.
pub async fn train(ctx: &Context, request: TrainDataRequest) -> Result<TrainDataResponse, Refusal> {
    let denied = |why: &str| Refusal::new(ErrorCode::AccessDenied, why.to_owned());
    let assignment = request.assignment.clone().ok_or_else(|| denied("no assignment (grant) given"))?;
    verify_message(&ctx.identity.public_key(), domains::ASSIGNMENT, &assignment, &assignment.signature, |a| {
        a.signature.clear()
    })
    .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the assignment is not signed by dispatch"))?;
    let miner = registry::find(ctx, &assignment.miner_id).await?.ok_or_else(|| {
        Refusal::new(ErrorCode::UnknownMiner, format!("miner {} is not registered", assignment.miner_id))
    })?;
    verify_message(&miner.public_key, domains::DATA_REQUEST, &request, &request.signature, |r| r.signature.clear())
        .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the request is not signed by the assigned miner"))?;
    registry::check_fresh(ctx, &miner, request.at.as_ref(), &request.registration)?;
    let now = Timestamp::now().unix_ms;
    let grant = assignment.grant.clone().ok_or_else(|| denied("the assignment carries no grant"))?;
    if grant.expires_at.map(|t| t.unix_ms).unwrap_or(0) < now {
        return Err(denied("the grant has expired"));
    }
    let granted = grant.train.clone().ok_or_else(|| denied("the grant names no data"))?;
    let asked = request.object.clone().unwrap_or_default();
    if asked.bucket != granted.bucket || asked.name != granted.name || grant.task_id != assignment.task_id {
        return Err(denied(&format!("{}/{} is not granted by this assignment", asked.bucket, asked.name)));
    }
    let key = DataCache::key(&granted.bucket, &granted.name, &granted.sha256);
    let data = match ctx.data_cache.get(&key) {
        Some(data) => data,
        None => {
            let store = objects::bucket(&ctx.bus, &granted.bucket).await.map_err(Refusal::unavailable)?;
            let data = objects::read_verified(&store, &granted, u64::MAX).await.map_err(Refusal::unavailable)?;
            ctx.data_cache.put(key, data.clone(), data_cache::BUDGET_BYTES);
            data
        }
    };
    let chunk = ctx.settings.dispatch.data_chunk_bytes as u64;
    let length = if request.length == 0 { chunk } else { u64::from(request.length).min(chunk) };
    let start = request.offset.min(data.len() as u64) as usize;
    let end = (start as u64 + length).min(data.len() as u64) as usize;
    Ok(TrainDataResponse {
        data: data.slice(start..end).to_vec(),
        total_size: data.len() as u64,
        last: end == data.len(),
    })
}
