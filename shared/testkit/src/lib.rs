//! Real infrastructure for tests, never mocks: a private `nats-server` (v2.15, JetStream)
//! per test on a port of its own, and scratch databases on PostgreSQL or SQLite, each
//! removed when the value is dropped, so tests clean up after themselves and run in
//! parallel.

mod db;
mod inspect;
mod nats;

use std::path::PathBuf;

pub use db::{Backend, ScratchDb};
pub use inspect::stream_messages;
pub use nats::NatsServer;

/// The workspace's root folder (where `Cargo.toml`, `.deps/` and `examples/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A TCP port that was free a moment ago (bind to port 0, read it, let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
