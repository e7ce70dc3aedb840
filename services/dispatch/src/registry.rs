//! The miner registry: a JetStream key-value bucket (miner id -> `Miner`) shared by every
//! dispatch replica. Registration proves possession of the key by signing a one-time
//! challenge (stateless until used, see [`crate::challenge`]); the challenge becomes the
//! registration's nonce, which every later signed message of the miner must name.
//! Heartbeats are signed, fresh (within `max_clock_skew_ms` of now, on both sides) and,
//! after the first, strictly later than the last one accepted, so a captured heartbeat
//! replayed or one dated ahead is refused; an entry expires (the bucket's max age) when a miner goes silent.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use gradients_miner::freshness;
use gradients_miner::identity::{domains, id_for, is_miner_id, verify_message};
use gradients_proto::v1::{
    ChallengeRequest, ChallengeResponse, DeregisterMinerRequest, DeregisterMinerResponse, ErrorCode, Heartbeat,
    HeartbeatResponse, ListMinersRequest, ListMinersResponse, Miner, RegisterMinerRequest, RegisterMinerResponse,
    Timestamp,
};
use prost::Message;

use crate::challenge::{self, ChallengeError};
use crate::error::Refusal;
use crate::Context;

/// The registry's two buckets.
#[derive(Clone)]
pub struct Registry {
    /// miner id -> `Miner`.
    pub miners: kv::Store,
    /// Challenges already used by a registration (hex of their random part); entries expire
    /// with the challenge.
    pub challenges: kv::Store,
}

/// Hands out a one-time challenge for a registration to sign; creates no state.
pub async fn challenge(ctx: &Context, _request: ChallengeRequest) -> Result<ChallengeResponse, Refusal> {
    if !ctx.challenge_limit.try_take() {
        return Err(Refusal::new(ErrorCode::RateLimited, "too many challenge requests; retry in a moment"));
    }
    let expires = Timestamp::now().unix_ms.saturating_add(ctx.settings.dispatch.challenge_ttl_ms as i64);
    Ok(ChallengeResponse {
        nonce: challenge::issue(&ctx.identity, expires),
        expires_at: Some(Timestamp { unix_ms: expires }),
    })
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
    // One use per challenge: the first registration to remember it wins, on any replica.
    let stale = |why: &str| Refusal::new(ErrorCode::ChallengeInvalid, format!("the challenge {why}"));
    let (used_key, expires) = challenge::check(&ctx.identity.public_key(), &request.nonce, Timestamp::now().unix_ms)
        .map_err(|e| match e {
            ChallengeError::Forged => stale("was not issued by this dispatch"),
            ChallengeError::Expired => stale("expired"),
        })?;
    match ctx.registry.challenges.create(&used_key, expires.to_string().into()).await {
        Ok(_) => {}
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Err(stale("was already used")),
        Err(e) => return Err(Refusal::unavailable(e)),
    }

    let miner_id = id_for(&request.public_key);
    let now = Timestamp::now();
    let miner = Miner {
        miner_id,
        public_key: request.public_key.clone(),
        capabilities: request.capabilities.clone(),
        registered_at: Some(now),
        last_heartbeat: Some(now),
        active_tasks: 0,
        registration: request.nonce.clone(),
        heartbeats: 0,
    };
    ctx.registry.miners.put(&miner.miner_id, miner.encode_to_vec().into()).await.map_err(Refusal::unavailable)?;
    tracing::info!(miner_id = %miner.miner_id, "miner registered");
    Ok(RegisterMinerResponse { miner: Some(miner), heartbeat_ttl_ms: ctx.settings.dispatch.heartbeat_ttl_ms })
}

/// Refuses a miner id that is not one (`m` + 40 hex) before it reaches a key or subject.
pub fn check_miner_id(miner_id: &str) -> Result<(), Refusal> {
    if is_miner_id(miner_id) {
        return Ok(());
    }
    let shown: String = miner_id.chars().take(64).collect();
    Err(Refusal::new(ErrorCode::InvalidArgument, format!("miner_id {shown:?} is not a miner id (m + 40 hex digits)")))
}

/// Checks that a signed message of `miner` is fresh and names its current registration.
pub fn check_fresh(ctx: &Context, miner: &Miner, at: Option<&Timestamp>, registration: &[u8]) -> Result<(), Refusal> {
    freshness::check(at, Timestamp::now().unix_ms, ctx.settings.dispatch.max_clock_skew_ms)
        .map_err(|e| Refusal::new(ErrorCode::StaleMessage, e.to_string()))?;
    if registration != miner.registration.as_slice() {
        return Err(Refusal::new(
            ErrorCode::StaleMessage,
            "the message names another registration of this miner (a replay from before it registered again)",
        ));
    }
    Ok(())
}

/// The registered miner `miner_id`, if it is still live.
pub async fn find(ctx: &Context, miner_id: &str) -> Result<Option<Miner>, Refusal> {
    check_miner_id(miner_id)?;
    let Some(bytes) = ctx.registry.miners.get(miner_id).await.map_err(Refusal::unavailable)? else {
        return Ok(None);
    };
    let miner = Miner::decode(bytes.as_ref()).map_err(Refusal::internal)?;
    Ok(is_live(ctx, &miner, Timestamp::now().unix_ms).then_some(miner))
}

fn is_live(ctx: &Context, miner: &Miner, now_ms: i64) -> bool {
    let last = miner.last_heartbeat.map(|t| t.unix_ms).unwrap_or(i64::MIN);
    now_ms.saturating_sub(last) <= ctx.settings.dispatch.heartbeat_ttl_ms as i64
}

/// Refreshes a registered miner's entry from its signed, fresh heartbeat. The entry is
/// written at the revision read, so two heartbeats racing cannot move `last_heartbeat` back.
pub async fn heartbeat(ctx: &Context, beat: Heartbeat) -> Result<HeartbeatResponse, Refusal> {
    check_miner_id(&beat.miner_id)?;
    let unknown = || {
        Refusal::new(
            ErrorCode::UnknownMiner,
            format!("miner {} is not registered (or expired): register again", beat.miner_id),
        )
    };
    let entry = ctx.registry.miners.entry(&beat.miner_id).await.map_err(Refusal::unavailable)?;
    let entry = entry.filter(|e| e.operation == kv::Operation::Put).ok_or_else(unknown)?;
    let mut miner = Miner::decode(entry.value.as_ref()).map_err(Refusal::internal)?;
    if !is_live(ctx, &miner, Timestamp::now().unix_ms) {
        return Err(unknown());
    }
    verify_message(&miner.public_key, domains::HEARTBEAT, &beat, &beat.signature, |b| b.signature.clear())
        .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the heartbeat is not signed by the miner's key"))?;
    check_fresh(ctx, &miner, beat.at.as_ref(), &beat.registration)?;
    let at = beat.at.map(|t| t.unix_ms).unwrap_or_default();
    let last = miner.last_heartbeat.map(|t| t.unix_ms).unwrap_or(i64::MIN);
    if miner.heartbeats > 0 && at <= last {
        return Err(Refusal::new(
            ErrorCode::StaleMessage,
            format!("a heartbeat dated {at} is not later than the last one accepted ({last}): a replay"),
        ));
    }
    miner.last_heartbeat = Some(Timestamp { unix_ms: at });
    miner.heartbeats = miner.heartbeats.saturating_add(1);
    miner.active_tasks = beat.active_tasks;
    ctx.registry.miners.update(&miner.miner_id, miner.encode_to_vec().into(), entry.revision).await.map_err(
        |e| match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => {
                Refusal::new(ErrorCode::StaleMessage, "another heartbeat of this miner was accepted meanwhile")
            }
            _ => Refusal::unavailable(e),
        },
    )?;
    Ok(HeartbeatResponse {
        expires_at: Some(Timestamp { unix_ms: at.saturating_add(ctx.settings.dispatch.heartbeat_ttl_ms as i64) }),
    })
}

/// Removes a miner that asks to leave (signed by its key, fresh, naming its current
/// registration).
pub async fn deregister(ctx: &Context, request: DeregisterMinerRequest) -> Result<DeregisterMinerResponse, Refusal> {
    let miner = find(ctx, &request.miner_id).await?.ok_or_else(|| {
        Refusal::new(ErrorCode::UnknownMiner, format!("miner {} is not registered", request.miner_id))
    })?;
    verify_message(&miner.public_key, domains::DEREGISTER, &request, &request.signature, |r| r.signature.clear())
        .map_err(|_| Refusal::new(ErrorCode::InvalidSignature, "the request is not signed by the miner's key"))?;
    check_fresh(ctx, &miner, request.at.as_ref(), &request.registration)?;
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
