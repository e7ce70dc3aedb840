//! The audit's tables as sea-orm entities.

/// `audit_records`: the log. Append-only in the database.
pub mod record {
    use sea_orm::entity::prelude::*;

    /// One leaf of the Merkle tree (see `document::Record` for each field's meaning).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub leaf_index: i64,
        pub stream: String,
        pub first_sequence: i64,
        pub last_sequence: i64,
        pub kind: String,
        pub subject: String,
        pub msg_id: String,
        pub traceparent: String,
        pub published_at_ms: i64,
        pub captured_at_ms: i64,
        pub note: String,
        pub payload: Vec<u8>,
        /// The leaf hash as appended (`verify` recomputes it from the fields).
        pub leaf_hash: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `audit_nodes`: every complete subtree above the leaves, written when its last leaf
/// arrives, so a proof is O(log n) lookups (leaves are `audit_records.leaf_hash`).
/// Append-only in the database.
pub mod node {
    use sea_orm::entity::prelude::*;

    /// The hash of leaves `[index·2^level, (index+1)·2^level)`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_nodes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub level: i32,
        #[sea_orm(primary_key, auto_increment = false)]
        pub node_index: i64,
        pub hash: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `audit_head`: one row, the tree's size and right edge after the last append. The one
/// mutable table: every append locks and rewrites it, which is what serialises writers.
pub mod head {
    use sea_orm::entity::prelude::*;

    /// The current tree.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_head")]
    pub struct Model {
        /// Always [`super::HEAD_ID`].
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub tree_size: i64,
        /// The frontier's peak hashes, 32 bytes each, largest subtree first.
        pub peaks: Vec<u8>,
        pub root_hash: Vec<u8>,
        pub updated_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `audit_checkpoints`: every signed tree head. Append-only in the database.
pub mod checkpoint {
    use sea_orm::entity::prelude::*;

    /// One signed tree head (see `document::SignedCheckpoint`).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tree_size: i64,
        pub root_hash: String,
        pub timestamp_ms: i64,
        pub public_key: String,
        pub signature: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The id of the single row of `audit_head`.
pub const HEAD_ID: i32 = 1;
