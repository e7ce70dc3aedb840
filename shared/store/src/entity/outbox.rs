//! `outbox`: events decided in the same transaction as the state they describe, published
//! afterwards. A crash between commit and publish leaves the row unpublished, and the relay
//! publishes it on restart; the event id as `Nats-Msg-Id` makes a repeat harmless.

use sea_orm::entity::prelude::*;

/// One event awaiting (or past) publication.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// The event id; becomes `Nats-Msg-Id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub subject: String,
    /// The encoded protobuf event.
    pub payload: Vec<u8>,
    /// W3C trace context of the request that decided the event.
    pub traceparent: Option<String>,
    pub created_at_ms: i64,
    /// Set once JetStream acknowledged the publish.
    pub published_at_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
