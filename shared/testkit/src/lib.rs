//! Real infrastructure for tests, never mocks: a private `nats-server` (v2.15, JetStream)
//! per test on a port of its own, and scratch databases on PostgreSQL or SQLite, each
//! removed when the value is dropped, so tests clean up after themselves and run in
//! parallel. [`Sandbox`] puts them together for every suite, [`Services`] runs the
//! services under test, and [`eventually`] waits on what they did instead of sleeping.

mod base_model;
mod db;
mod eventually;
mod http;
mod inspect;
mod nats;
mod ports;
mod sandbox;
mod services;

use std::path::PathBuf;

pub use base_model::{base_model_config, base_model_files, publish_base_model, write_base_model_dir, write_model_dir};
pub use db::{Backend, ScratchDb};
pub use eventually::{eventually, eventually_blocking, Outcome};
pub use http::http_get;
pub use inspect::{consumer_settled, stream_messages};
pub use nats::NatsServer;
pub use ports::free_port;
pub use sandbox::{Sandbox, SandboxBuilder};
pub use services::Services;

/// The workspace's root folder (where `Cargo.toml`, `.deps/` and `examples/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
