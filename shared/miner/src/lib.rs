//! The miner side of the market, for our reference trainer and anyone else's miner.
//!
//! - [`identity`]: an ed25519 key, the miner id derived from it, domain-separated signatures.
//! - [`MinerClient`]: register (signing dispatch's challenge), heartbeat, answer offers on
//!   the miner's own subject, receive signed assignments, read the granted train split, and
//!   submit an artifact with a signed submission.

mod client;
pub mod identity;

pub use client::{Decision, MinerClient, MinerError, OfferHandler};
pub use identity::{id_for, Identity, IdentityError};
