//! Large payloads in JetStream object stores, pinned by sha256.
//!
//! Messages never carry data sets or models, only an [`ObjectRef`] naming the bucket, the
//! object, its size and its sha256; readers check both before trusting a byte.

use async_nats::jetstream::object_store::{self, ObjectStore};
use bytes::Bytes;
use gradients_proto::v1::ObjectRef;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::{Bus, BusError};

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
        .map_err(|e| BusError::Object { bucket: name.to_owned(), reason: e.to_string() })
}

/// Stores `data` as `name` (chunked by the object store) and returns its reference.
pub async fn put_bytes(store: &ObjectStore, bucket: &str, name: &str, data: &[u8]) -> Result<ObjectRef, BusError> {
    let meta = object_store::ObjectMetadata { name: name.to_owned(), ..Default::default() };
    let mut reader = data;
    store
        .put(meta, &mut reader)
        .await
        .map_err(|e| BusError::Object { bucket: bucket.to_owned(), reason: format!("put {name}: {e}") })?;
    Ok(ObjectRef {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        sha256: sha256_hex(data),
        size: data.len() as u64,
    })
}

/// Reads the object `reference` names, refusing it unless its size and sha256 match and it
/// is at most `limit` bytes. Size is checked before any byte is read.
pub async fn read_verified(store: &ObjectStore, reference: &ObjectRef, limit: u64) -> Result<Bytes, ObjectError> {
    let not_found = || ObjectError::NotFound { bucket: reference.bucket.clone(), name: reference.name.clone() };
    let bus_error = |reason: String| ObjectError::Bus(BusError::Object { bucket: reference.bucket.clone(), reason });
    let info = match store.info(&reference.name).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Err(not_found()),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(bus_error(e.to_string())),
    };
    let size = info.size as u64;
    if size > limit {
        return Err(ObjectError::TooLarge { size, limit });
    }
    if size != reference.size {
        return Err(ObjectError::Incomplete { expected: reference.size, actual: size });
    }
    let mut object = store.get(&reference.name).await.map_err(|e| bus_error(e.to_string()))?;
    let mut data = Vec::with_capacity(size as usize);
    object.read_to_end(&mut data).await.map_err(|e| bus_error(e.to_string()))?;
    if data.len() as u64 != reference.size {
        return Err(ObjectError::Incomplete { expected: reference.size, actual: data.len() as u64 });
    }
    let actual = sha256_hex(&data);
    if !actual.eq_ignore_ascii_case(&reference.sha256) {
        return Err(ObjectError::ChecksumMismatch { expected: reference.sha256.clone(), actual });
    }
    Ok(data.into())
}

/// Removes an object; a missing one is not an error (deletes are retried).
pub async fn delete(store: &ObjectStore, bucket: &str, name: &str) -> Result<(), BusError> {
    match store.delete(name).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
        Err(e) => Err(BusError::Object { bucket: bucket.to_owned(), reason: format!("delete {name}: {e}") }),
    }
}
