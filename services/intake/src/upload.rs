//! Customers' uploads: each customer has its own bucket, `gradients-uploads-<customer id>`,
//! created by intake on the customer's first `upload` request (customers may not create
//! streams: one that could would capture another bucket's subjects). The deploy
//! permissions let only that customer's NATS user read, write or purge it, and intake reads
//! a data set only from the bucket of the customer that signed the submit, only as a plain
//! object (never a link: following one would hand a customer's task bytes the customer
//! cannot read, such as another task's hidden test split), and with a deadline on every
//! wait (metadata naming chunks never written cannot hold a submit slot for ever).

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{object_store, stream, ErrorCode};
use gradients_bus::objects::{self, ChunkSink};
use gradients_bus::subjects::buckets;
use gradients_bus::BusError;
use gradients_proto::v1::{ObjectRef, PrepareUploadRequest, PrepareUploadResponse};

use crate::auth::Caller;
use crate::error::RequestError;
use crate::Context;

/// How long an abandoned upload stays before JetStream removes it.
const UPLOAD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// `upload`: names the caller's bucket, creating it when missing.
pub async fn prepare(
    ctx: &Context,
    caller: &Caller,
    _request: PrepareUploadRequest,
) -> Result<PrepareUploadResponse, RequestError> {
    let bucket = ensure_bucket(ctx, &caller.customer_id).await?;
    Ok(PrepareUploadResponse {
        bucket,
        max_bytes: ctx.settings.intake.limits.max_bytes,
        customer_id: caller.customer_id.clone(),
    })
}

/// Creates the customer's uploads bucket unless it exists; returns its name. Creating an
/// identical bucket twice (two replicas at once) is accepted by the server.
async fn ensure_bucket(ctx: &Context, customer_id: &str) -> Result<String, RequestError> {
    let bucket = buckets::uploads(customer_id);
    if ctx.bus.jetstream.get_object_store(&bucket).await.is_ok() {
        return Ok(bucket);
    }
    // Keys cost nothing to make: in an open market (no `intake.customer_keys`) each new key
    // would otherwise be a new stream on the server, without end.
    let limit = ctx.settings.intake.max_customer_buckets;
    if count_customer_buckets(ctx).await? >= limit {
        return Err(RequestError::Busy(format!(
            "intake holds the most customer upload buckets it may ({limit}); ask the operator"
        )));
    }
    let config = object_store::Config {
        bucket: bucket.clone(),
        description: Some(format!("Data sets uploaded by customer {customer_id}, until intake reads them")),
        max_age: UPLOAD_MAX_AGE,
        max_bytes: ctx.settings.intake.upload_bucket_max_bytes as i64,
        num_replicas: ctx.settings.nats.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    ctx.bus.jetstream.create_object_store(config).await.map_err(|e| {
        RequestError::Bus(BusError::Declare { what: format!("object store {bucket}"), source: e.into() })
    })?;
    tracing::info!(customer_id, bucket, "customer uploads bucket created");
    Ok(bucket)
}

/// How many customer upload buckets exist now.
async fn count_customer_buckets(ctx: &Context) -> Result<usize, RequestError> {
    use futures::TryStreamExt;
    let prefix = format!("OBJ_{}", buckets::UPLOADS_PREFIX);
    let names: Vec<String> = ctx.bus.jetstream.stream_names().try_collect().await.map_err(|e| {
        RequestError::Bus(BusError::Declare { what: "the list of streams".to_owned(), source: e.into() })
    })?;
    Ok(names.iter().filter(|name| name.starts_with(&prefix)).count())
}

/// Refuses a data set reference outside the caller's own bucket.
pub fn check_own(caller: &Caller, dataset: &ObjectRef) -> Result<(), RequestError> {
    let own = buckets::uploads(&caller.customer_id);
    if dataset.bucket != own {
        return Err(RequestError::Forbidden(format!(
            "dataset must be uploaded to your own bucket {own}, not {:?}",
            dataset.bucket.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// Streams the caller's upload as `dataset` declares it (checked by [`check_own`] first)
/// into `sink`, which checks its sha256 (see [`objects::stream_plain_within`]).
pub async fn stream(ctx: &Context, dataset: &ObjectRef, sink: &mut impl ChunkSink) -> Result<(), RequestError> {
    let intake = &ctx.settings.intake;
    let store = match ctx.bus.jetstream.get_object_store(&dataset.bucket).await {
        Ok(store) => store,
        Err(e) => {
            // No bucket: this customer never asked for one, so nothing was uploaded (the
            // caller's mistake). Anything else is ours: the upload stays for a retry.
            let stream = ctx.bus.jetstream.get_stream(format!("OBJ_{}", dataset.bucket)).await;
            let missing = matches!(&stream, Err(g) if matches!(g.kind(),
                GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND));
            if missing {
                let name = dataset.name.clone();
                return Err(objects::ObjectError::NotFound { bucket: dataset.bucket.clone(), name }.into());
            }
            return Err(RequestError::Bus(BusError::Object { bucket: dataset.bucket.clone(), source: e.into() }));
        }
    };
    Ok(objects::stream_plain_within(&store, dataset, intake.limits.max_bytes, intake.upload_stall(), sink).await?)
}

/// Removes a settled upload from the caller's own bucket (never from anyone else's: the
/// reference was checked by [`check_own`]). A failure is logged: the upload expires anyway.
pub async fn remove(ctx: &Context, caller: &Caller, dataset: &ObjectRef) {
    if check_own(caller, dataset).is_err() || dataset.name.is_empty() {
        return;
    }
    let removed = async {
        let store = objects::bucket(&ctx.bus, &dataset.bucket).await?;
        objects::delete(&store, &dataset.bucket, &dataset.name).await
    };
    match tokio::time::timeout(ctx.settings.intake.upload_stall(), removed).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, object = %dataset.name, "could not remove the upload; it expires"),
        Err(_) => tracing::warn!(object = %dataset.name, "removing the upload timed out; it expires"),
    }
}
