//! Intake end to end against a real nats-server and real PostgreSQL and SQLite databases.
//! One test binary (faster to build); one module per story.

mod common;

mod api;
mod bad_input;
mod crash;
mod published_models;
mod race;
mod rewards;
mod security;
mod submit;
