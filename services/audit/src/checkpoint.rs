//! Signed tree heads: made periodically and on demand, stored (append-only) and published
//! on `gradients.audit.checkpoints`. One per tree size: replicas that sign the same size
//! at once keep the first stored and publish it under one `Nats-Msg-Id`.

use gradients_bus::event::{publish_event, OutgoingEvent};
use gradients_bus::{subjects, Bus};
use gradients_miner::Identity;
use gradients_proto::v1::Timestamp;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder, Set, TryInsertResult};

use crate::document::{Checkpoint, SignedCheckpoint, ORIGIN};
use crate::store::entity::{checkpoint, head, HEAD_ID};
use crate::tree::TreeError;

/// Signs and stores a checkpoint of the tree as it is now, or returns the stored one when
/// the tree has not grown since; `true` when this call stored it (then publish it).
pub async fn make(db: &DatabaseConnection, identity: &Identity) -> Result<(SignedCheckpoint, bool), TreeError> {
    let head =
        head::Entity::find_by_id(HEAD_ID).one(db).await?.ok_or(sea_orm::DbErr::RecordNotFound("audit_head".into()))?;
    if let Some(existing) = checkpoint::Entity::find_by_id(head.tree_size).one(db).await? {
        return Ok((from_row(&existing), false));
    }
    let signed = crate::offline::sign(
        identity,
        Checkpoint {
            origin: ORIGIN.to_owned(),
            tree_size: head.tree_size as u64,
            root_hash: hex::encode(&head.root_hash),
            timestamp_ms: Timestamp::now().unix_ms,
        },
    );
    let inserted = checkpoint::Entity::insert(to_row(&signed))
        .on_conflict_do_nothing_on([checkpoint::Column::TreeSize])
        .exec_without_returning(db)
        .await?;
    // Another replica may have stored its own signature of this size first: serve that one.
    let stored = checkpoint::Entity::find_by_id(head.tree_size)
        .one(db)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotFound("checkpoint".into()))?;
    Ok((from_row(&stored), matches!(inserted, TryInsertResult::Inserted(1))))
}

/// Publishes a checkpoint; its tree size is its id, so a repeat is stored once.
pub async fn publish(bus: &Bus, signed: &SignedCheckpoint) -> Result<(), gradients_bus::BusError> {
    let payload = serde_json::to_vec(signed).expect("a checkpoint serialises");
    publish_event(
        &bus.jetstream,
        OutgoingEvent {
            subject: subjects::AUDIT_CHECKPOINTS.to_owned(),
            id: format!("checkpoint:{}", signed.checkpoint.tree_size),
            payload: payload.into(),
            traceparent: None,
        },
    )
    .await
    .map(|_| ())
}

/// The stored checkpoint of exactly `tree_size` records.
pub async fn at(db: &DatabaseConnection, tree_size: u64) -> Result<Option<SignedCheckpoint>, sea_orm::DbErr> {
    Ok(checkpoint::Entity::find_by_id(tree_size as i64).one(db).await?.map(|row| from_row(&row)))
}

/// The largest stored checkpoint.
pub async fn latest(db: &DatabaseConnection) -> Result<Option<SignedCheckpoint>, sea_orm::DbErr> {
    Ok(checkpoint::Entity::find().order_by_desc(checkpoint::Column::TreeSize).one(db).await?.map(|row| from_row(&row)))
}

fn to_row(signed: &SignedCheckpoint) -> checkpoint::ActiveModel {
    checkpoint::ActiveModel {
        tree_size: Set(signed.checkpoint.tree_size as i64),
        root_hash: Set(signed.checkpoint.root_hash.clone()),
        timestamp_ms: Set(signed.checkpoint.timestamp_ms),
        public_key: Set(signed.public_key.clone()),
        signature: Set(signed.signature.clone()),
    }
}

/// A stored checkpoint as its document.
pub(crate) fn from_row(row: &checkpoint::Model) -> SignedCheckpoint {
    SignedCheckpoint {
        checkpoint: Checkpoint {
            origin: ORIGIN.to_owned(),
            tree_size: row.tree_size as u64,
            root_hash: row.root_hash.clone(),
            timestamp_ms: row.timestamp_ms,
        },
        public_key: row.public_key.clone(),
        signature: row.signature.clone(),
    }
}
