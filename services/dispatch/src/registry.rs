//! The miner registry: a JetStream key-value bucket (miner id -> `Miner`) shared by every
//! dispatch replica. Registration proves possession of the key by signing a one-time
//! challenge; heartbeats are signed and refresh the entry, which expires (the bucket's max
//! age) when a miner goes silent, so a silent miner is simply no longer there.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use gradients_miner::identity::{domains, id_for, verify_message};
use gradients_proto::v1::{
    ChallengeRequest, ChallengeResponse, DeregisterMinerRequest, DeregisterMinerResponse, ErrorCode, Heartbeat,
    HeartbeatResponse, ListMinersRequest, ListMinersResponse, Miner, RegisterMinerRequest, RegisterMinerResponse,
    Timestamp,
};
use prost::Message;

use crate::error::Refusal;
use crate::Context;

/// The registry's two buckets.
#[derive(Clone)]
pub struct Registry {
    /// miner id -> `Miner`.
    pub miners: kv::Store,
    /// hex nonce -> expiry, one-time.
    pub challenges: kv::Store,
}

/// Hands out a one-time nonce for a registration to sign.
pub async fn challenge(ctx: &Context, _request: ChallengeRequest) -> Result<ChallengeResponse, Refusal> {
    let nonce: [u8; 32] = rand::random();
    let expires = Timestamp::now().unix_ms + ctx.settings.dispatch.challenge_ttl_ms as i64;
    ctx.registry
        .challenges
        .create(hex::encode(nonce), expires.to_string().into())
        .await
        .map_err(Refusal::unavailable)?;
    Ok(ChallengeResponse { nonce: nonce.to_vec(), expires_at: Some(Timestamp { unix_ms: expires }) })
}

/// Registers a miner that signed a live challenge with the key it presents.
pub async fn register(ctx: &Context, request: RegisterMinerRequest) -> Result<RegisterMinerResponse, Refusal> {
    let allowed = &ctx.settings.dispatch.allowed_miner_keys;
    let key_hex = hex::encode(&request.public_key);
    if request.public_key.len() != 32 {
        return Err(Refusal::new(ErrorCode::InvalidArgument, "public_key must be 32 bytes (ed25519)"));
    }
    if !allowed.is_empty() && !allowed.iter().any(|k| k.eq_ignore_ascii_case(&key_hex)) {
        return Err(Refusal::new(ErrorCode::UnknownMiner, format!("key {key_hex} is not admitted to this market")));
    }
    verify_message(&request.public_key, domains::REGISTER, &request, &request.signature, |r| r.signature.clear())
        .map_err(|_| {
            Refusal::new(ErrorCode::InvalidSignature, "the registration is not signed by the key it presents")
        })?;
    // One use per challenge: delete it at the revision we read, or someone else did first.
    let nonce = hex::encode(&request.nonce);
    let stale = || Refusal::new(ErrorCode::ChallengeInvalid, "the challenge is unknown, expired or already used");
    let entry = ctx.registry.challenges.entry(nonce.clone()).await.map_err(Refusal::unavailable)?;
    let entry = entry.filter(|e| e.operation == kv::Operation::Put).ok_or_else(stale)?;
    let expires: i64 = std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if expires < Timestamp::now().unix_ms {
        return Err(stale());
    }
    ctx.registry.challenges.delete_expect_revision(&nonce, Some(entry.revision)).await.map_err(|_| stale())?;

    let now = Timestamp::now();
    let miner = Miner {
        miner_id: id_for(&request.public_key),
        public_key: request.public_key.clone(),
        capabilities: request.capabilities.clone(),
        registered_at: Some(now),
        last_heartbeat: Some(now),
        active_tasks: 0,
    };
    ctx.registry.miners.put(&miner.miner_id, miner.encode_to_vec().into()).await.map_err(Refusal::unavailable)?;
    tracing::info!(miner_id = %miner.miner_id, "miner registered");
    Ok(RegisterMinerResponse { miner: Some(miner), heartbeat_ttl_ms: ctx.settings.dispatch.heartbeat_ttl_ms })
}

/// The registered miner `miner_id`, if it is still live.
pub async fn find(ctx: &Context, miner_id: &str) -> Result<Option<Miner>, Refusal> {
    let Some(bytes) = ctx.registry.miners.get(miner_id).await.map_err(Refusal::unavailable)? else {
        return Ok(None);
    };
    let miner = Miner::decode(bytes.as_ref()).map_err(Refusal::unavailable)?;
    Ok(is_live(ctx, &miner, Timestamp::now().unix_ms).then_some(miner))
}

fn is_live(ctx: &Context, miner: &Miner, now_ms: i64) -> bool {
    let last = miner.last_heartbeat.map(|t| t.unix_ms).unwrap_or(0);
    now_ms - last <= ctx.settings.dispatch.heartbeat_ttl_ms as i64
}

/// Refreshes a registered miner's entry from its signed heartbeat.
pub async fn heartbeat(ctx: &Context, beat: Heartbeat) -> Result<HeartbeatResponse, Refusal> {
    let mut miner = find(ctx, &beat.miner_id).await?.ok_or_else(|| {
        Refusal::new(
            ErrorCode::UnknownMiner,
            format!("miner {} is not registered (or expired): register again", beat.miner_id),
        )
    })?;
    verify_message(&miner.public_key, domains::HEARTBEAT, &beat, &beat.signature, |b| b.signature.clear())
        .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the heartbeat is not signed by the miner's key"))?;
    let at = beat.at.map(|t| t.unix_ms).unwrap_or(0);
    let now = Timestamp::now().unix_ms;
    let last = miner.last_heartbeat.map(|t| t.unix_ms).unwrap_or(0);
    if at < last || (now - at).abs() > ctx.settings.dispatch.heartbeat_ttl_ms as i64 {
        return Err(Refusal::new(ErrorCode::InvalidSignature, "a stale or replayed heartbeat"));
    }
    miner.last_heartbeat = Some(Timestamp { unix_ms: at });
    miner.active_tasks = beat.active_tasks;
    ctx.registry.miners.put(&miner.miner_id, miner.encode_to_vec().into()).await.map_err(Refusal::unavailable)?;
    Ok(HeartbeatResponse {
        expires_at: Some(Timestamp { unix_ms: at + ctx.settings.dispatch.heartbeat_ttl_ms as i64 }),
    })
}

/// Removes a miner that asks to leave (signed by its key).
pub async fn deregister(ctx: &Context, request: DeregisterMinerRequest) -> Result<DeregisterMinerResponse, Refusal> {
    let miner = find(ctx, &request.miner_id).await?.ok_or_else(|| {
        Refusal::new(ErrorCode::UnknownMiner, format!("miner {} is not registered", request.miner_id))
    })?;
    verify_message(&miner.public_key, domains::DEREGISTER, &request, &request.signature, |r| r.signature.clear())
        .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the request is not signed by the miner's key"))?;
    ctx.registry.miners.purge(&miner.miner_id).await.map_err(Refusal::unavailable)?;
    tracing::info!(miner_id = %miner.miner_id, "miner deregistered");
    Ok(DeregisterMinerResponse {})
}

/// Every live miner, by id.
pub async fn live_miners(ctx: &Context) -> Result<Vec<Miner>, Refusal> {
    let now = Timestamp::now().unix_ms;
    let mut keys = ctx.registry.miners.keys().await.map_err(Refusal::unavailable)?;
    let mut miners = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(Refusal::unavailable)?;
        if let Some(bytes) = ctx.registry.miners.get(&key).await.map_err(Refusal::unavailable)? {
            if let Ok(miner) = Miner::decode(bytes.as_ref()) {
                if is_live(ctx, &miner, now) {
                    miners.push(miner);
                }
            }
        }
    }
    miners.sort_by(|a, b| a.miner_id.cmp(&b.miner_id));
    Ok(miners)
}

/// The `list` endpoint.
pub async fn list(ctx: &Context, _request: ListMinersRequest) -> Result<ListMinersResponse, Refusal> {
    Ok(ListMinersResponse { miners: live_miners(ctx).await? })
}

/// The bucket's max age for a heartbeat TTL: a little longer, so the liveness check (not
/// the expiry's timing) decides, and an expired entry is gone soon after.
pub fn registry_max_age(heartbeat_ttl: Duration) -> Duration {
    heartbeat_ttl + heartbeat_ttl / 2
}
