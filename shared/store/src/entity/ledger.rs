//! The reward ledger's tables, all append-only (see the migration's triggers).

use gradients_proto::v1;

pub use super::task_type::TaskType;
use crate::label::{stored_label, Unspecified};

stored_label! {
    /// What an evaluation measured (`ledger_evaluations.kind`).
    pub enum EvaluationKind {
        MinerSubmission => "miner_submission",
        BaseModel => "base_model",
        FixedBaseline => "fixed_baseline",
    }
}

impl From<EvaluationKind> for v1::EvaluationKind {
    fn from(stored: EvaluationKind) -> Self {
        match stored {
            EvaluationKind::MinerSubmission => Self::MinerSubmission,
            EvaluationKind::BaseModel => Self::BaseModel,
            EvaluationKind::FixedBaseline => Self::FixedBaseline,
        }
    }
}

impl From<v1::EvaluationKind> for EvaluationKind {
    fn from(wire: v1::EvaluationKind) -> Self {
        match wire {
            v1::EvaluationKind::MinerSubmission => Self::MinerSubmission,
            v1::EvaluationKind::BaseModel => Self::BaseModel,
            v1::EvaluationKind::FixedBaseline => Self::FixedBaseline,
        }
    }
}

stored_label! {
    /// What an entry records (`ledger_entries.kind`).
    pub enum EntryKind {
        TaskScore => "task_score",
        Penalty => "penalty",
        Correction => "correction",
    }
}

impl From<EntryKind> for v1::LedgerEntryKind {
    fn from(stored: EntryKind) -> Self {
        match stored {
            EntryKind::TaskScore => Self::TaskScore,
            EntryKind::Penalty => Self::Penalty,
            EntryKind::Correction => Self::Correction,
        }
    }
}

impl EntryKind {
    /// The stored value of a wire value; unspecified is never stored.
    pub fn from_proto(wire: v1::LedgerEntryKind) -> Result<Self, Unspecified> {
        match wire {
            v1::LedgerEntryKind::TaskScore => Ok(Self::TaskScore),
            v1::LedgerEntryKind::Penalty => Ok(Self::Penalty),
            v1::LedgerEntryKind::Correction => Ok(Self::Correction),
            v1::LedgerEntryKind::Unspecified => Err(Unspecified { kind: "LedgerEntryKind", value: wire as i32 }),
        }
    }
}

stored_label! {
    /// Why a task was finalized (`ledger_task_results.finalized_because`).
    pub enum FinalizedBecause {
        /// Every assigned miner was evaluated.
        AllEvaluated => "all_evaluated",
        /// The deadline and its grace passed first.
        Deadline => "deadline",
    }
}

/// `ledger_tasks`: what the ledger needs to know of each created task.
pub mod task {
    use sea_orm::entity::prelude::*;

    /// One task, as announced by intake.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub task_id: String,
        pub task_type: super::TaskType,
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
        pub kind: super::EvaluationKind,
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
        pub kind: super::EntryKind,
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
        pub task_type: super::TaskType,
        /// "" when no submission was valid.
        pub winner_miner_id: String,
        pub finalized_because: super::FinalizedBecause,
        pub finalized_at_ms: i64,
        /// The winner's test loss.
        pub winner_loss: Option<f64>,
        pub task_weight: f64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
