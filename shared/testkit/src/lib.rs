//! Real infrastructure for tests, never mocks: a private `nats-server` (v2.15, JetStream)
//! per test on a port of its own, and scratch databases on PostgreSQL or SQLite, each
//! removed when the value is dropped, so tests clean up after themselves and run in
//! parallel.

mod db;
mod eventually;
mod http;
mod inspect;
mod nats;
mod ports;

use std::path::PathBuf;

pub use db::{Backend, ScratchDb};
pub use eventually::eventually;
pub use http::http_get;
pub use inspect::stream_messages;
pub use nats::NatsServer;
pub use ports::free_port;

/// The workspace's root folder (where `Cargo.toml`, `.deps/` and `examples/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
