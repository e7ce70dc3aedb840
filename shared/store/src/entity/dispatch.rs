//! Dispatch's tables.

use crate::label::stored_label;

stored_label! {
    /// Where dispatch stands with a task (`dispatch_tasks.state`).
    pub enum TaskState {
        /// Offers are being made.
        Offering => "offering",
        /// Assigned; miners are training.
        Training => "training",
        /// Too few miners accepted.
        Failed => "failed",
        /// The deadline passed; no more submissions.
        Closed => "closed",
        /// The customer cancelled it: no (more) offers or assignments.
        Cancelled => "cancelled",
    }
}

impl TaskState {
    /// Whether dispatch is done with the task: nothing will change its state again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Closed | Self::Cancelled)
    }
}

stored_label! {
    /// How a miner answered an offer (`dispatch_offers.outcome`).
    pub enum OfferOutcome {
        /// Sent, not answered yet.
        Sent => "sent",
        Accepted => "accepted",
        Declined => "declined",
        /// Not answered in time.
        Timeout => "timeout",
        /// Answered with something that does not verify.
        Invalid => "invalid",
    }
}

/// `dispatch_tasks`: the tasks dispatch is placing and where each stands.
pub mod task {
    use sea_orm::entity::prelude::*;

    /// One task.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dispatch_tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        /// The `Task` as announced, protobuf encoded (assignments carry it).
        pub task_proto: Vec<u8>,
        pub state: super::TaskState,
        pub reason: String,
        pub deadline_ms: i64,
        pub updated_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `dispatch_offers`: one offer per (task, miner), with how it was answered.
pub mod offer {
    use sea_orm::entity::prelude::*;

    /// One offer.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dispatch_offers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub miner_id: String,
        pub offer_id: String,
        pub round: i32,
        pub outcome: super::OfferOutcome,
        pub reason: String,
        pub estimated_seconds: f64,
        pub sent_at_ms: i64,
        pub answered_at_ms: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `dispatch_assignments`: one assignment per (task, miner).
pub mod assignment {
    use sea_orm::entity::prelude::*;

    /// One assignment.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dispatch_assignments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub miner_id: String,
        pub assignment_id: String,
        pub created_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
