//! Appending to the log: exactly once, in stream order, one transaction per batch.
//!
//! Every append locks the single `audit_head` row first (an UPDATE: a row lock on
//! PostgreSQL, the write lock on SQLite), so appends from every replica and every stream
//! are serialised: leaf indexes are dense and assigned in one order, and the frontier in
//! the head is always the tree of the rows committed with it. Inside the lock a stream's
//! last captured sequence is read back, so a message already captured (a redelivery, the
//! other replica got there first) is skipped, the next one is appended, and one further
//! ahead either waits (its predecessor is still in the stream and will come) or, when the
//! stream no longer holds the predecessors, is preceded by a gap record.

use std::future::Future;

use bytes::Bytes;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use crate::document::{leaf_hash_of, Record, RecordKind};
use crate::merkle::{Frontier, Hash, NodeId};
use crate::store::entity::{head, node, record, HEAD_ID};

/// Most predecessors one append reads from the stream itself before the rest wait.
const MAX_FILL: u64 = 1000;
/// Rows per INSERT statement (SQLite allows 32766 bound parameters; records have 13).
const ROWS_PER_INSERT: usize = 1000;

/// A message as JetStream delivered it, before it has a place in the log.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Its sequence in the stream.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// `Nats-Msg-Id`, or empty.
    pub msg_id: String,
    /// `traceparent`, or empty.
    pub traceparent: String,
    /// When JetStream stored it (Unix ms).
    pub published_at_ms: i64,
    /// The payload.
    pub payload: Bytes,
    /// `Err(why)` when the payload is not the type its subject carries.
    pub decoded: Result<(), String>,
    /// What the headers say beyond the id and trace (a dead letter's reason and origin).
    pub note: String,
}

/// What became of one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Appended as this leaf.
    Appended(u64),
    /// Already in the log (captured before, by us or another replica).
    AlreadyCaptured,
    /// An earlier message of the stream is still to come: hand this one back for later.
    Wait,
}

/// Where the stream's own record is asked about sequences the log has not seen.
pub trait StreamProbe: Sync {
    /// The message at `sequence` as the stream stores it, or `None` when the stream no
    /// longer holds it.
    fn fetch(&self, sequence: u64) -> impl Future<Output = Result<Option<Incoming>, String>> + Send;

    /// The first sequence in `[from, before)` that the stream still holds, or `before`
    /// when it holds none of them (it may stop early and say where it stopped).
    fn first_present(&self, from: u64, before: u64) -> impl Future<Output = Result<u64, String>> + Send;
}

/// Why an append could not happen; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The database failed.
    #[error("audit store: {0}")]
    Store(#[from] DbErr),
    /// The stream could not be asked about missing sequences.
    #[error("asking stream {stream} about sequences: {reason}")]
    Probe { stream: String, reason: String },
    /// The stored head is not a tree (a corrupt or tampered store): refuse to extend it.
    #[error("the stored tree head is corrupt: {0}")]
    CorruptHead(String),
}

/// Counts of one append, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// What became of each incoming message, in the order given.
    pub placements: Vec<Placement>,
    /// Gap records written.
    pub gaps: u64,
    /// Undecodable messages recorded as alarms.
    pub undecodable: u64,
    /// The tree size after the append.
    pub tree_size: u64,
}

/// Appends `incoming` (messages of `stream`, any order) to the log in one transaction.
pub async fn append(
    db: &DatabaseConnection,
    stream: &str,
    incoming: &[Incoming],
    probe: &impl StreamProbe,
    now_ms: i64,
) -> Result<Appended, AppendError> {
    let txn = db.begin().await?;
    // Take the lock before reading anything, so no other writer slips in between.
    head::Entity::update_many()
        .col_expr(head::Column::UpdatedAtMs, Expr::value(now_ms))
        .filter(head::Column::Id.eq(HEAD_ID))
        .exec(&txn)
        .await?;
    let stored = head::Entity::find_by_id(HEAD_ID)
        .one(&txn)
        .await?
        .ok_or_else(|| AppendError::CorruptHead("no head row".into()))?;
    let mut frontier = restore_frontier(&stored)?;
    let mut last = last_sequence(&txn, stream).await?;

    let mut order: Vec<usize> = (0..incoming.len()).collect();
    order.sort_by_key(|&i| incoming[i].sequence);
    let mut result = Appended { placements: vec![Placement::Wait; incoming.len()], ..Default::default() };
    let (mut records, mut nodes) = (Vec::new(), Vec::new());
    let mut push = |record: Record, payload: &[u8], frontier: &mut Frontier| {
        let leaf = leaf_hash_of(&record, payload);
        nodes.extend(frontier.push(leaf));
        records.push(to_row(&record, payload, &leaf));
    };
    for i in order {
        let message = &incoming[i];
        if message.sequence <= last {
            result.placements[i] = Placement::AlreadyCaptured;
            continue;
        }
        // Predecessors the log has not seen: read them from the stream itself (they were
        // delivered elsewhere, or acknowledged and then lost with a restored store), or
        // record the run the stream no longer holds as a gap.
        let mut filled = 0;
        while last + 1 < message.sequence && filled < MAX_FILL {
            let probe_error = |reason| AppendError::Probe { stream: stream.to_owned(), reason };
            match probe.fetch(last + 1).await.map_err(probe_error)? {
                Some(earlier) => {
                    let record = message_record(frontier.size(), stream, &earlier, now_ms);
                    if record.kind == RecordKind::Undecodable {
                        result.undecodable += 1;
                    }
                    push(record, &earlier.payload, &mut frontier);
                    last += 1;
                    filled += 1;
                }
                None => {
                    let present =
                        probe.first_present(last + 1, message.sequence).await.map_err(probe_error)?.max(last + 2);
                    let gap = gap_record(frontier.size(), stream, last + 1, present - 1, now_ms);
                    push(gap, &[], &mut frontier);
                    result.gaps += 1;
                    last = present - 1;
                }
            }
        }
        if last + 1 < message.sequence {
            // Too far behind for one transaction: this one and the rest wait.
            break;
        }
        let record = message_record(frontier.size(), stream, message, now_ms);
        if record.kind == RecordKind::Undecodable {
            result.undecodable += 1;
        }
        result.placements[i] = Placement::Appended(frontier.size());
        push(record, &message.payload, &mut frontier);
        last = message.sequence;
    }

    if !records.is_empty() {
        for chunk in records.chunks(ROWS_PER_INSERT) {
            record::Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
        }
        // Leaves are the records' own `leaf_hash`; the node table keeps the subtrees above.
        let node_rows: Vec<node::ActiveModel> =
            nodes.iter().filter(|(id, _)| id.level > 0).map(|(id, hash)| node_row(*id, hash)).collect();
        for chunk in node_rows.chunks(ROWS_PER_INSERT * 3) {
            node::Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
        }
        head::Entity::update_many()
            .col_expr(head::Column::TreeSize, Expr::value(frontier.size() as i64))
            .col_expr(head::Column::Peaks, Expr::value(frontier.peak_hashes().concat()))
            .col_expr(head::Column::RootHash, Expr::value(frontier.root().to_vec()))
            .filter(head::Column::Id.eq(HEAD_ID))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    result.tree_size = frontier.size();
    Ok(result)
}

/// The tree as the head row stores it.
pub fn restore_frontier(stored: &head::Model) -> Result<Frontier, AppendError> {
    let corrupt =
        || AppendError::CorruptHead(format!("size {} with {} peak bytes", stored.tree_size, stored.peaks.len()));
    if !stored.peaks.len().is_multiple_of(32) || stored.tree_size < 0 {
        return Err(corrupt());
    }
    let peaks: Vec<Hash> = stored.peaks.chunks(32).map(|c| c.try_into().expect("32-byte chunks")).collect();
    Frontier::from_parts(stored.tree_size as u64, &peaks).ok_or_else(corrupt)
}

/// The highest stream sequence the log covers for `stream` (0 before the first): the last
/// sequence of its record that starts latest (records of a stream never overlap), read
/// through the unique (stream, first_sequence) index.
async fn last_sequence(txn: &impl ConnectionTrait, stream: &str) -> Result<u64, DbErr> {
    let last: Option<i64> = record::Entity::find()
        .select_only()
        .column(record::Column::LastSequence)
        .filter(record::Column::Stream.eq(stream))
        .order_by_desc(record::Column::FirstSequence)
        .limit(1)
        .into_tuple()
        .one(txn)
        .await?;
    Ok(last.unwrap_or(0).max(0) as u64)
}

fn message_record(leaf_index: u64, stream: &str, message: &Incoming, now_ms: i64) -> Record {
    let (kind, note) = match &message.decoded {
        Ok(()) => (RecordKind::Message, message.note.clone()),
        Err(why) => (RecordKind::Undecodable, why.clone()),
    };
    Record {
        leaf_index,
        stream: stream.to_owned(),
        first_sequence: message.sequence,
        last_sequence: message.sequence,
        kind,
        subject: message.subject.clone(),
        msg_id: message.msg_id.clone(),
        traceparent: message.traceparent.clone(),
        published_at_ms: message.published_at_ms,
        captured_at_ms: now_ms,
        note,
        payload_hex: String::new(),
    }
}

fn gap_record(leaf_index: u64, stream: &str, first: u64, last: u64, now_ms: i64) -> Record {
    Record {
        leaf_index,
        stream: stream.to_owned(),
        first_sequence: first,
        last_sequence: last,
        kind: RecordKind::Gap,
        subject: String::new(),
        msg_id: String::new(),
        traceparent: String::new(),
        published_at_ms: 0,
        captured_at_ms: now_ms,
        note: format!("stream {stream} no longer holds sequences {first}..={last}; the log never saw them"),
        payload_hex: String::new(),
    }
}

fn to_row(record: &Record, payload: &[u8], leaf: &Hash) -> record::ActiveModel {
    record::ActiveModel {
        leaf_index: Set(record.leaf_index as i64),
        stream: Set(record.stream.clone()),
        first_sequence: Set(record.first_sequence as i64),
        last_sequence: Set(record.last_sequence as i64),
        kind: Set(record.kind.label().to_owned()),
        subject: Set(record.subject.clone()),
        msg_id: Set(record.msg_id.clone()),
        traceparent: Set(record.traceparent.clone()),
        published_at_ms: Set(record.published_at_ms),
        captured_at_ms: Set(record.captured_at_ms),
        note: Set(record.note.clone()),
        payload: Set(payload.to_vec()),
        leaf_hash: Set(leaf.to_vec()),
    }
}

fn node_row(id: NodeId, hash: &Hash) -> node::ActiveModel {
    node::ActiveModel { level: Set(id.level as i32), node_index: Set(id.index as i64), hash: Set(hash.to_vec()) }
}

/// A stored row as the document an auditor gets; an unknown kind label is an error.
pub fn to_document(row: &record::Model) -> Result<Record, String> {
    let kind = RecordKind::from_label(&row.kind)
        .ok_or_else(|| format!("record {} has unknown kind {:?}", row.leaf_index, row.kind))?;
    Ok(Record {
        leaf_index: row.leaf_index as u64,
        stream: row.stream.clone(),
        first_sequence: row.first_sequence as u64,
        last_sequence: row.last_sequence as u64,
        kind,
        subject: row.subject.clone(),
        msg_id: row.msg_id.clone(),
        traceparent: row.traceparent.clone(),
        published_at_ms: row.published_at_ms,
        captured_at_ms: row.captured_at_ms,
        note: row.note.clone(),
        payload_hex: hex::encode(&row.payload),
    })
}
