//! Registration challenges that cost dispatch nothing to hand out.
//!
//! An anonymous caller may ask for any number of challenges, so a challenge is stateless:
//! 16 random bytes, its expiry and dispatch's signature over both. Registration checks the
//! signature and the expiry, then remembers the challenge as used (a key-value entry that
//! expires with it), so each is answered once and only registrations (signed by the key
//! they register) create state. Handing them out is rate limited per process, which bounds
//! the signing work an anonymous flood can cause.

use std::sync::Mutex;
use std::time::Instant;

use gradients_miner::Identity;

/// Signature domain of a challenge: dispatch signs it, dispatch verifies it.
const DOMAIN: &str = "gradients/challenge/v1";
/// Random bytes of a challenge.
const RANDOM_LEN: usize = 16;
/// Random bytes, expiry (big-endian ms), signature.
const NONCE_LEN: usize = RANDOM_LEN + 8 + 64;

/// A new challenge expiring at `expires_ms`.
pub fn issue(identity: &Identity, expires_ms: i64) -> Vec<u8> {
    let mut nonce = rand::random::<[u8; RANDOM_LEN]>().to_vec();
    nonce.extend_from_slice(&expires_ms.to_be_bytes());
    let signature = identity.sign(DOMAIN, &nonce);
    nonce.extend_from_slice(&signature);
    nonce
}

/// Why a challenge was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not one dispatch made (wrong length or signature).
    #[error("the challenge was not issued by this market's dispatch")]
    Forged,
    /// Past its expiry.
    #[error("the challenge expired")]
    Expired,
}

/// Checks that dispatch (`public_key`) issued `nonce` and it has not expired at `now_ms`;
/// returns the key under which its use is remembered and its expiry.
pub fn check(public_key: &[u8], nonce: &[u8], now_ms: i64) -> Result<(String, i64), ChallengeError> {
    if nonce.len() != NONCE_LEN {
        return Err(ChallengeError::Forged);
    }
    let (signed, signature) = nonce.split_at(RANDOM_LEN + 8);
    gradients_miner::identity::verify(public_key, DOMAIN, signed, signature).map_err(|_| ChallengeError::Forged)?;
    let expires_ms = i64::from_be_bytes(signed[RANDOM_LEN..].try_into().map_err(|_| ChallengeError::Forged)?);
    if expires_ms < now_ms {
        return Err(ChallengeError::Expired);
    }
    Ok((hex::encode(&signed[..RANDOM_LEN]), expires_ms))
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(rate_per_s: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes a token if one is there.
    pub fn try_take(&self) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A challenge verifies until it expires; an edited or foreign one never does.
    #[test]
    fn challenges_are_dispatchs_own_and_expire() {
        let dispatch = Identity::generate();
        let nonce = issue(&dispatch, 1_000);
        let (key, expires) = check(&dispatch.public_key(), &nonce, 999).unwrap();
        assert_eq!((key.len(), expires), (32, 1_000));
        assert_eq!(check(&dispatch.public_key(), &nonce, 1_001), Err(ChallengeError::Expired));
        let mut extended = nonce.clone();
        extended[RANDOM_LEN..RANDOM_LEN + 8].copy_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(check(&dispatch.public_key(), &extended, 0), Err(ChallengeError::Forged));
        assert_eq!(check(&Identity::generate().public_key(), &nonce, 0), Err(ChallengeError::Forged));
        assert_eq!(check(&dispatch.public_key(), &[0; 32], 0), Err(ChallengeError::Forged));
    }

    /// The bucket gives its burst, then refuses.
    #[test]
    fn the_rate_limit_refuses_beyond_the_burst() {
        let limit = RateLimit::new(1, 5);
        assert_eq!((0..10).filter(|_| limit.try_take()).count(), 5);
    }
}
