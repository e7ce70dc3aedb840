//! The evaluator against a real nats-server and real ONNX Runtime.

mod common;
mod grpo;
mod models;
mod once;
mod zoo;
