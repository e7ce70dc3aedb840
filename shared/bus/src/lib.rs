//! The NATS JetStream bus every Gradients service speaks.
//!
//! - [`subjects`]: the one list of subject, stream, consumer and bucket names.
//! - [`Bus`]: a connection with enterprise options (URL list, token, user/password, nkey,
//!   creds file, TLS, client name); [`topology::declare`] sets up streams and buckets.
//! - [`event`]: publish a fact with its id as `Nats-Msg-Id` and the trace in `traceparent`.
//! - [`worker`]: the durable pull-consumer loop (ack, nak with back-off, term, dead letters).
//! - [`api`]: request/reply on the NATS micro service protocol, typed errors both ways.
//! - [`objects`]: data sets and models in object stores, checked by size and sha256.
//! - [`service_loops`]: a service's loops, stopped and drained together.
//! - [`lifecycle`]: how every service process starts (health, NATS, topology), runs its
//!   loops and stops (drain, flush).

pub mod api;
pub mod batch_worker;
mod connect;
mod error;
pub mod event;
pub mod lifecycle;
pub mod objects;
pub mod service_loops;
pub mod subjects;
pub mod topology;
pub mod worker;

pub use connect::Bus;
pub use error::{error_chain, BusError, Cause};
