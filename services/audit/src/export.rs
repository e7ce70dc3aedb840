//! `gradients audit export`: every record captured since a moment, each with its inclusion
//! proof against one checkpoint signed for the export, one `ProofFile` JSON document a line,
//! so an auditor can archive the log and re-verify any line alone.

use std::io::Write;

use crate::client::{AuditClient, ClientError};
use crate::document::ProofFile;
use crate::protocol::{CheckpointRequest, ProofRequest, RecordsRequest};

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The audit API failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The output could not be written.
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes the records captured at or after `since_ms` (0: all) to `sink`; returns how many.
pub async fn export_jsonl(client: &AuditClient, since_ms: i64, sink: &mut impl Write) -> Result<u64, ExportError> {
    let checkpoint = client.checkpoint(&CheckpointRequest { fresh: true, ..Default::default() }).await?;
    let size = checkpoint.checkpoint.tree_size;
    let (mut from_leaf, mut exported) = (0, 0u64);
    'pages: loop {
        let page = client.records(&RecordsRequest { from_leaf, since_ms, limit: 0 }).await?;
        for stored in &page.records {
            if stored.record.leaf_index >= size {
                break 'pages;
            }
            let request =
                ProofRequest { leaf_index: Some(stored.record.leaf_index), tree_size: Some(size), msg_id: None };
            let proof = client.proof(&request).await?;
            serde_json::to_writer(&mut *sink, &ProofFile::Inclusion(proof)).map_err(std::io::Error::from)?;
            sink.write_all(b"\n")?;
            exported += 1;
        }
        match page.next_leaf {
            Some(next) => from_leaf = next,
            None => break,
        }
    }
    sink.flush()?;
    Ok(exported)
}
