//! Large payloads in JetStream object stores, pinned by sha256.
//!
//! Messages never carry data sets or models, only an [`ObjectRef`] naming the bucket, the
//! object, its size and its sha256; readers check both before trusting a byte.

use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use bytes::Bytes;
use gradients_proto::v1::ObjectRef;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::During;
use crate::{Bus, BusError, Cause};

/// Why an object could not be read as the reference describes it.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// No such object (never uploaded, expired, or its upload did not finish).
    #[error("object {name} not found in {bucket}")]
    NotFound { bucket: String, name: String },
    /// The object is larger than the reader accepts.
    #[error("object is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    /// The stored object is not as long as the reference says: a truncated upload.
    #[error("object is {actual} bytes but {expected} were declared: the upload is incomplete")]
    Incomplete { expected: u64, actual: u64 },
    /// The content does not hash to the declared sha256.
    #[error("sha256 of the object is {actual}, not the declared {expected}")]
    ChecksumMismatch { expected: String, actual: String },
    /// The name is not a plain object of the bucket: a link (to another object or bucket,
    /// which the reader must never follow) or metadata claiming another bucket.
    #[error("object {name} in {bucket} is not a plain object: {reason}")]
    NotPlain { bucket: String, name: String, reason: String },
    /// The object's bytes stopped arriving: metadata naming chunks that were never
    /// written, or a server that stopped answering.
    #[error("object {name} in {bucket}: no data arrived for {waited_ms} ms")]
    Stalled { bucket: String, name: String, waited_ms: u64 },
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Opens a bucket declared by [`crate::topology::declare`].
pub async fn bucket(bus: &Bus, name: &str) -> Result<ObjectStore, BusError> {
    bus.jetstream
        .get_object_store(name)
        .await
        .map_err(|e| BusError::Object { bucket: name.to_owned(), source: e.into() })
}

/// Stores `data` as `name` (chunked by the object store) and returns its reference.
pub async fn put_bytes(store: &ObjectStore, bucket: &str, name: &str, data: &[u8]) -> Result<ObjectRef, BusError> {
    put_hashed(store, bucket, name, data, sha256_hex(data)).await
}

/// [`put_bytes`] for data whose sha256 the caller already computed (off the async
/// runtime: hashing hundreds of megabytes would hold a worker thread for seconds).
pub async fn put_hashed(
    store: &ObjectStore,
    bucket: &str,
    name: &str,
    data: &[u8],
    sha256: String,
) -> Result<ObjectRef, BusError> {
    let meta = object_store::ObjectMetadata { name: name.to_owned(), ..Default::default() };
    let mut reader = data;
    store.put(meta, &mut reader).await.map_err(|e| BusError::Object {
        bucket: bucket.to_owned(),
        source: During::new(format!("put {name}"), e).into(),
    })?;
    Ok(ObjectRef { bucket: bucket.to_owned(), name: name.to_owned(), sha256, size: data.len() as u64 })
}

/// How long [`read_verified`] waits for the next piece of an object (its metadata, or the
/// next chunk) before giving up with [`ObjectError::Stalled`].
pub const READ_STALL: Duration = Duration::from_secs(30);

/// [`read_verified_within`] with the default [`READ_STALL`].
pub async fn read_verified(store: &ObjectStore, reference: &ObjectRef, limit: u64) -> Result<Bytes, ObjectError> {
    read_verified_within(store, reference, limit, READ_STALL).await
}

/// Reads the object `reference` names, refusing it unless it is a plain object of that
/// bucket (never a link: following one would hand the reader bytes from a bucket its
/// writer cannot read), its size and sha256 match and it is at most `limit` bytes. Size
/// is checked before any byte is read; every wait (metadata, each chunk) is bounded by
/// `stall`, so metadata naming chunks that never arrive cannot hang the reader.
pub async fn read_verified_within(
    store: &ObjectStore,
    reference: &ObjectRef,
    limit: u64,
    stall: Duration,
) -> Result<Bytes, ObjectError> {
    let mut data = Vec::with_capacity(reference.size.min(limit) as usize);
    stream_plain_within(store, reference, limit, stall, &mut data).await?;
    let actual = sha256_hex(&data);
    if !actual.eq_ignore_ascii_case(&reference.sha256) {
        return Err(ObjectError::ChecksumMismatch { expected: reference.sha256.clone(), actual });
    }
    Ok(data.into())
}

/// Where [`stream_plain_within`] delivers an object, chunk by chunk, as it arrives.
pub trait ChunkSink: Send {
    /// Takes the next chunk; `false` when the receiver is gone and reading should stop.
    fn accept(&mut self, chunk: &[u8]) -> impl std::future::Future<Output = bool> + Send;
}

impl ChunkSink for Vec<u8> {
    async fn accept(&mut self, chunk: &[u8]) -> bool {
        self.extend_from_slice(chunk);
        true
    }
}

/// A channel to a consumer elsewhere (a blocking thread that hashes and parses): the
/// object is never buffered whole here, and a slow consumer slows the read down.
impl ChunkSink for tokio::sync::mpsc::Sender<Bytes> {
    async fn accept(&mut self, chunk: &[u8]) -> bool {
        self.send(Bytes::copy_from_slice(chunk)).await.is_ok()
    }
}

/// Streams the object `reference` names into `sink` with every check of
/// [`read_verified_within`] but the last: the sha256 of the bytes is the sink's to compute
/// (so that hashing can happen off the async runtime) and to compare with
/// `reference.sha256` before anything is trusted. The sink never receives more bytes than
/// `reference.size`; when this returns an error, what it received is to be discarded.
pub async fn stream_plain_within(
    store: &ObjectStore,
    reference: &ObjectRef,
    limit: u64,
    stall: Duration,
    sink: &mut impl ChunkSink,
) -> Result<(), ObjectError> {
    let not_found = || ObjectError::NotFound { bucket: reference.bucket.clone(), name: reference.name.clone() };
    let bus_error = |source: Cause| ObjectError::Bus(BusError::Object { bucket: reference.bucket.clone(), source });
    let stalled = || ObjectError::Stalled {
        bucket: reference.bucket.clone(),
        name: reference.name.clone(),
        waited_ms: stall.as_millis() as u64,
    };
    let info = match tokio::time::timeout(stall, store.info(&reference.name)).await.map_err(|_| stalled())? {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Err(not_found()),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(bus_error(e.into())),
    };
    check_plain(&info, reference)?;
    let size = info.size as u64;
    if size > limit {
        return Err(ObjectError::TooLarge { size, limit });
    }
    if size != reference.size {
        return Err(ObjectError::Incomplete { expected: reference.size, actual: size });
    }
    let mut object = match tokio::time::timeout(stall, store.get(&reference.name)).await.map_err(|_| stalled())? {
        Ok(object) => object,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(bus_error(e.into())),
    };
    // `get` reads the metadata again and follows links: the object may have been replaced
    // by a link since it was checked, so what was opened is checked once more.
    check_plain(&object.info, reference)?;
    if object.info.size as u64 != size {
        return Err(ObjectError::Incomplete { expected: reference.size, actual: object.info.size as u64 });
    }
    let mut received = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout(stall, object.read(&mut buffer)).await.map_err(|_| stalled())?;
        let n = read.map_err(|e| bus_error(e.into()))?;
        if n == 0 {
            break;
        }
        received += n as u64;
        if received > reference.size {
            // More chunks than the metadata declares: never pass on beyond what was promised.
            return Err(ObjectError::Incomplete { expected: reference.size, actual: received });
        }
        if !sink.accept(&buffer[..n]).await {
            // The consumer is gone and will say why; nothing more to read for it.
            return Ok(());
        }
    }
    if received != reference.size {
        return Err(ObjectError::Incomplete { expected: reference.size, actual: received });
    }
    Ok(())
}

/// Refuses links and metadata that names another bucket or object than the one asked for.
fn check_plain(info: &object_store::ObjectInfo, reference: &ObjectRef) -> Result<(), ObjectError> {
    let refuse = |reason: String| ObjectError::NotPlain {
        bucket: reference.bucket.clone(),
        name: reference.name.clone(),
        reason,
    };
    if let Some(link) = info.options.as_ref().and_then(|o| o.link.as_ref()) {
        return Err(refuse(format!(
            "a link to {} in {}",
            link.name.as_deref().unwrap_or("the whole bucket"),
            link.bucket
        )));
    }
    if info.bucket != reference.bucket {
        return Err(refuse(format!("its metadata names the bucket {}", info.bucket)));
    }
    if info.name != reference.name {
        return Err(refuse(format!("its metadata names the object {}", info.name)));
    }
    Ok(())
}

/// Removes an object; a missing one is not an error (deletes are retried).
pub async fn delete(store: &ObjectStore, bucket: &str, name: &str) -> Result<(), BusError> {
    match store.delete(name).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(BusError::Object { bucket: bucket.to_owned(), source: During::new(format!("delete {name}"), e).into() })
        }
    }
}
