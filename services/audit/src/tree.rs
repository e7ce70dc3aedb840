//! Proofs from the store: which complete subtrees a proof needs, fetched in one query,
//! then the pure RFC 6962 code in [`crate::merkle`]. O(log n) rows whatever the log's size.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::merkle::{self, Hash, NodeId};
use crate::store::entity::{node, record};

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The database failed.
    #[error("audit store: {0}")]
    Store(#[from] DbErr),
    /// A node the tree must have is missing (a damaged store).
    #[error(transparent)]
    Missing(#[from] merkle::MissingNode),
}

/// Reads the complete subtrees `ids` from the store: leaves from the records, the
/// subtrees above them from the node table.
pub async fn load_nodes(db: &impl ConnectionTrait, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, DbErr> {
    let mut found = HashMap::with_capacity(ids.len());
    let leaves: Vec<i64> = ids.iter().filter(|id| id.level == 0).map(|id| id.index as i64).collect();
    for chunk in leaves.chunks(200) {
        let rows: Vec<(i64, Vec<u8>)> = record::Entity::find()
            .select_only()
            .column(record::Column::LeafIndex)
            .column(record::Column::LeafHash)
            .filter(record::Column::LeafIndex.is_in(chunk.to_vec()))
            .into_tuple()
            .all(db)
            .await?;
        for (index, hash) in rows {
            if let Ok(hash) = <Hash>::try_from(hash.as_slice()) {
                found.insert(NodeId { level: 0, index: index as u64 }, hash);
            }
        }
    }
    let above: Vec<NodeId> = ids.iter().filter(|id| id.level > 0).copied().collect();
    for chunk in above.chunks(200) {
        let mut wanted = Condition::any();
        for id in chunk {
            wanted = wanted.add(
                Condition::all()
                    .add(node::Column::Level.eq(id.level as i32))
                    .add(node::Column::NodeIndex.eq(id.index as i64)),
            );
        }
        for row in node::Entity::find().filter(wanted).all(db).await? {
            if let Ok(hash) = <Hash>::try_from(row.hash.as_slice()) {
                found.insert(NodeId { level: row.level as u32, index: row.node_index as u64 }, hash);
            }
        }
    }
    Ok(found)
}

/// Hashes the subtree `ranges` (as a proof lists them) from the store.
pub async fn prove(db: &impl ConnectionTrait, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, TreeError> {
    let mut ids = Vec::new();
    for &(start, end) in ranges {
        merkle::subtree_nodes(start, end, &mut ids);
    }
    let nodes = load_nodes(db, &ids).await?;
    Ok(merkle::hash_ranges(&nodes, ranges)?)
}

/// The root of the first `size` leaves, from the store.
pub async fn root_at(db: &impl ConnectionTrait, size: u64) -> Result<Hash, TreeError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    Ok(prove(db, &[(0, size)]).await?[0])
}
