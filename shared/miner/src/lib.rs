//! The miner side of the market, for our reference trainer and anyone else's miner.
//!
//! - [`identity`]: an ed25519 key, the miner id derived from it, domain-separated signatures.
//! - [`freshness`]: the time window every signed miner message must fall in.
//! - [`submission`]: what a reader checks before trusting a submission.
//! - [`MinerClient`]: register (signing dispatch's challenge), heartbeat, answer offers on
//!   the miner's own subject, receive signed assignments, read the granted train split, and
//!   submit an artifact (to the miner's own bucket, named by content) with a signed
//!   submission.

mod client;
pub mod freshness;
pub mod identity;
mod lease;
pub mod submission;

pub use client::{Decision, MinerClient, MinerError, OfferHandler};
pub use identity::{id_for, is_miner_id, Identity, IdentityError};
pub use lease::AssignmentLease;
pub use submission::{verify_submission, SubmissionError};
