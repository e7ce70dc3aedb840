//! Tables, one module each. Only the owning service writes its tables.

pub mod dispatch;
pub mod ledger;
pub mod outbox;
pub mod task;
pub mod task_type;
