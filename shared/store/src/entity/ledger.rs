//! The reward ledger's tables, all append-only (see the migration's triggers).

/// `ledger_tasks`: what the ledger needs to know of each created task.
pub mod task {
    use sea_orm::entity::prelude::*;

    /// One task, as announced by intake.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        pub task_type: String,
        pub base_model: String,
        pub hours_to_complete: f64,
        pub deadline_ms: i64,
        pub recorded_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `ledger_assignments`: which miners were assigned which task.
pub mod assignment {
    use sea_orm::entity::prelude::*;

    /// One (task, miner) assignment.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_assignments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub miner_id: String,
        pub assignment_id: String,
        /// How many miners the task was assigned to in all.
        pub cohort_size: i64,
        pub recorded_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `ledger_evaluations`: every evaluation event as received, the evidence entries cite.
pub mod evaluation {
    use sea_orm::entity::prelude::*;

    /// One evaluation event, byte for byte.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_evaluations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub evaluation_id: String,
        pub task_id: String,
        pub miner_id: String,
        /// `miner_submission`, `base_model` or `fixed_baseline`.
        pub kind: String,
        /// The protobuf `EvaluationResult` as published.
        pub payload: Vec<u8>,
        pub payload_sha256: String,
        pub received_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `ledger_entries`: the rewards.
pub mod entry {
    use sea_orm::entity::prelude::*;

    /// One entry: a miner's score on a task, or a correction of an earlier entry.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        /// Derived from (task, miner, kind, corrects): a repeat computes the same id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub entry_id: String,
        pub task_id: String,
        pub miner_id: String,
        /// `task_score`, `penalty` or `correction`.
        pub kind: String,
        pub score: f64,
        pub task_weight: f64,
        pub rank: Option<i32>,
        pub ranking_loss: Option<f64>,
        pub reason: String,
        /// JSON array of the evaluation ids the entry derives from.
        pub source_event_ids: String,
        /// JSON array of the sha256 of each of those events' payloads.
        pub source_sha256: String,
        /// The entry this one corrects, or "".
        pub corrects_entry_id: String,
        pub recorded_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `ledger_task_results`: one row per finalized task; its key makes finalizing happen once.
pub mod task_result {
    use sea_orm::entity::prelude::*;

    /// How one task ended.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_task_results")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        pub task_type: String,
        /// "" when no submission was valid.
        pub winner_miner_id: String,
        /// `all_evaluated` or `deadline`.
        pub finalized_because: String,
        pub finalized_at_ms: i64,
        /// The winner's test loss.
        pub winner_loss: Option<f64>,
        pub task_weight: f64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
