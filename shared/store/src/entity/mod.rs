//! Tables, one module each. Only the owning service writes its tables.

pub mod outbox;
pub mod task;
