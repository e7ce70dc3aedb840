//! The audit API as a NATS micro service (`gradients-audit`, `gradients.api.audit.*`): signed
//! checkpoints, inclusion and consistency proofs, records and checkpoints in pages. Read
//! only, so every replica answers; auditors' NATS identity may call it and nothing else.

use std::sync::Arc;
use std::time::Instant;

use async_nats::service::{error::Error as ServiceError, Request};
use gradients_bus::api::ServiceSpec;
use gradients_bus::subjects::api;
use gradients_bus::BusError;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::document::{ConsistencyProof, InclusionProof, SignedCheckpoint};
use crate::protocol::*;
use crate::store::entity::{checkpoint as checkpoint_row, record};
use crate::tree::{self, TreeError};
use crate::{checkpoint, log, merkle, Context, VERSION};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    Invalid(String),
    /// Nothing matches.
    #[error("{0}")]
    NotFound(String),
    /// The store failed; the detail is logged, not sent.
    #[error("the audit store is unavailable (see the audit's log for {0})")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> usize {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::Unavailable(_) => 503,
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        let id = format!("{:016x}", rand_id());
        tracing::error!(correlation = %id, %error, "audit store failed");
        Self::Unavailable(id)
    }
}

impl From<TreeError> for ApiError {
    fn from(error: TreeError) -> Self {
        match error {
            TreeError::Store(e) => e.into(),
            TreeError::Missing(missing) => {
                tracing::error!(%missing, "the audit store lacks a tree node");
                Self::Unavailable(missing.to_string())
            }
        }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

/// Registers the service and answers until `stop`.
pub async fn serve(ctx: Arc<Context>, stop: CancellationToken) -> Result<(), BusError> {
    let spec = ServiceSpec {
        name: api::AUDIT_SERVICE,
        version: VERSION,
        description: "Gradients audit log: signed checkpoints, inclusion and consistency proofs, records",
        group: api::AUDIT_GROUP,
        endpoints: &[
            api::AUDIT_CHECKPOINT,
            api::AUDIT_PROOF,
            api::AUDIT_CONSISTENCY,
            api::AUDIT_RECORDS,
            api::AUDIT_CHECKPOINTS,
        ],
        max_concurrent: ctx.settings.audit.max_concurrent_requests,
    };
    let client = ctx.bus.client.clone();
    gradients_bus::api::serve(&client, spec, stop, move |endpoint, request| {
        let ctx = ctx.clone();
        async move {
            let started = Instant::now();
            let code = match endpoint {
                api::AUDIT_CHECKPOINT => answer(&request, |r| get_checkpoint(&ctx, r)).await,
                api::AUDIT_PROOF => answer(&request, |r| proof(&ctx, r)).await,
                api::AUDIT_CONSISTENCY => answer(&request, |r| consistency(&ctx, r)).await,
                api::AUDIT_RECORDS => answer(&request, |r| records(&ctx, r)).await,
                _ => answer(&request, |r| checkpoints(&ctx, r)).await,
            };
            ctx.metrics.api_request(endpoint, code, started.elapsed());
        }
    })
    .await
}

async fn answer<Req, Resp, Fut>(request: &Request, query: impl FnOnce(Req) -> Fut) -> &'static str
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: std::future::Future<Output = Result<Resp, ApiError>>,
{
    let result = match serde_json::from_slice::<Req>(&request.message.payload) {
        Ok(decoded) => query(decoded).await,
        Err(e) => Err(ApiError::Invalid(format!("malformed request: {e}"))),
    };
    let (reply, code) = match result {
        Ok(response) => (Ok(serde_json::to_vec(&response).expect("answers serialise").into()), "OK"),
        Err(error) => {
            let code = match error {
                ApiError::Invalid(_) => "INVALID_ARGUMENT",
                ApiError::NotFound(_) => "NOT_FOUND",
                ApiError::Unavailable(_) => "UNAVAILABLE",
            };
            let status = error.to_string().replace(['\r', '\n'], " ");
            (Err(ServiceError { status, code: error.status() }), code)
        }
    };
    if let Err(e) = request.respond(reply).await {
        tracing::warn!(subject = %request.message.subject, error = %e, "could not send the reply");
    }
    code
}

async fn get_checkpoint(ctx: &Context, request: CheckpointRequest) -> Result<SignedCheckpoint, ApiError> {
    if request.fresh {
        return sign_now(ctx).await;
    }
    match request.tree_size {
        Some(size) => checkpoint::at(&ctx.db, size)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no checkpoint of tree size {size}"))),
        None => checkpoint::latest(&ctx.db).await?.ok_or_else(|| ApiError::NotFound("no checkpoint yet".into())),
    }
}

/// Signs the log as it is now, stores and publishes the checkpoint.
async fn sign_now(ctx: &Context) -> Result<SignedCheckpoint, ApiError> {
    let (signed, created) = checkpoint::make(&ctx.db, &ctx.identity).await?;
    if !created {
        return Ok(signed);
    }
    if let Err(e) = checkpoint::publish(&ctx.bus, &signed).await {
        tracing::warn!(error = %e, "publishing a checkpoint; it is stored and served");
    }
    Ok(signed)
}

async fn proof(ctx: &Context, request: ProofRequest) -> Result<InclusionProof, ApiError> {
    let row = match (&request.leaf_index, &request.msg_id) {
        (Some(index), None) => record::Entity::find_by_id(*index as i64).one(&ctx.db).await?,
        (None, Some(id)) if !id.is_empty() => {
            record::Entity::find()
                .filter(record::Column::MsgId.eq(id.as_str()))
                .order_by_asc(record::Column::LeafIndex)
                .one(&ctx.db)
                .await?
        }
        _ => return Err(ApiError::Invalid("name exactly one of leaf_index or msg_id".into())),
    }
    .ok_or_else(|| ApiError::NotFound(format!("no record for {request:?}")))?;
    let record = log::to_document(&row).map_err(ApiError::Invalid)?;
    let signed = match request.tree_size {
        Some(size) => checkpoint::at(&ctx.db, size)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no checkpoint of tree size {size}")))?,
        None => match checkpoint::latest(&ctx.db).await? {
            Some(latest) if latest.checkpoint.tree_size > record.leaf_index => latest,
            _ => sign_now(ctx).await?,
        },
    };
    let size = signed.checkpoint.tree_size;
    if record.leaf_index >= size {
        return Err(ApiError::Invalid(format!("record {} is not in the tree of {size}", record.leaf_index)));
    }
    let hashes = tree::prove(&ctx.db, &merkle::inclusion_ranges(record.leaf_index, size)).await?;
    Ok(InclusionProof { record, checkpoint: signed, proof: hashes.iter().map(hex::encode).collect() })
}

async fn consistency(ctx: &Context, request: ConsistencyRequest) -> Result<ConsistencyProof, ApiError> {
    let (old_size, new_size) = (request.old_size, request.new_size);
    if old_size > new_size {
        return Err(ApiError::Invalid(format!("old size {old_size} is larger than new size {new_size}")));
    }
    let find = |size| async move {
        checkpoint::at(&ctx.db, size)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no checkpoint of tree size {size}")))
    };
    let (old, new) = (find(old_size).await?, find(new_size).await?);
    let hashes = tree::prove(&ctx.db, &merkle::consistency_ranges(old_size, new_size)).await?;
    Ok(ConsistencyProof { old, new, proof: hashes.iter().map(hex::encode).collect() })
}

async fn records(ctx: &Context, request: RecordsRequest) -> Result<RecordsPage, ApiError> {
    let limit = page(request.limit);
    let mut query = record::Entity::find().filter(record::Column::LeafIndex.gte(request.from_leaf as i64));
    if request.since_ms > 0 {
        query = query.filter(record::Column::CapturedAtMs.gte(request.since_ms));
    }
    let rows = query.order_by_asc(record::Column::LeafIndex).limit(limit + 1).all(&ctx.db).await?;
    // The page must fit in one NATS reply (the server's max_payload): records carry their
    // messages (hex), so a page of big ones ends early, always with at least one record.
    let budget = reply_budget(ctx);
    let (mut records, mut used, mut next_leaf) = (Vec::new(), 0, None);
    for (i, row) in rows.iter().enumerate() {
        let stored = StoredRecord {
            record: log::to_document(row).map_err(ApiError::Invalid)?,
            stored_leaf_hash: hex::encode(&row.leaf_hash),
        };
        let size = serde_json::to_vec(&stored).map_or(0, |bytes| bytes.len() + 1);
        if i as u64 == limit || (!records.is_empty() && used + size > budget) {
            next_leaf = Some(row.leaf_index as u64);
            break;
        }
        used += size;
        records.push(stored);
    }
    Ok(RecordsPage { records, next_leaf })
}

/// Bytes of records one reply may carry: most of the server's largest message, the rest
/// left for the page's own fields and encoding.
fn reply_budget(ctx: &Context) -> usize {
    ctx.bus.client.server_info().max_payload * 3 / 4
}

async fn checkpoints(ctx: &Context, request: CheckpointsRequest) -> Result<CheckpointsPage, ApiError> {
    let limit = page(request.limit);
    let mut rows = checkpoint_row::Entity::find()
        .filter(checkpoint_row::Column::TreeSize.gte(request.from_size as i64))
        .order_by_asc(checkpoint_row::Column::TreeSize)
        .limit(limit + 1)
        .all(&ctx.db)
        .await?;
    let next_size = (rows.len() as u64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.tree_size as u64 + 1).unwrap_or(request.from_size)
    });
    Ok(CheckpointsPage { checkpoints: rows.iter().map(checkpoint::from_row).collect(), next_size })
}
