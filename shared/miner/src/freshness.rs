//! Freshness of signed messages. A signature proves who wrote a message, not when: a
//! captured heartbeat, deregistration or data request would verify forever. So every
//! signed miner message carries `at`, and its receiver accepts it only within a window on
//! both sides of its own clock (a message dated ahead could otherwise be held back and
//! replayed later, or lock its author out). Replays inside the window are stopped by what
//! each message is bound to: the registration nonce, a heartbeat's increasing `at`, an
//! offer's id.

use gradients_proto::v1::Timestamp;

/// Why a signed message's time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Staleness {
    /// The message carries no time.
    #[error("the signed message carries no time (`at`)")]
    Missing,
    /// Older than the window allows: a delayed or replayed message.
    #[error("the signed message is dated {age_ms} ms ago, more than the {max_skew_ms} ms allowed")]
    TooOld { age_ms: i128, max_skew_ms: u64 },
    /// Dated in the future beyond the window.
    #[error("the signed message is dated {ahead_ms} ms ahead, more than the {max_skew_ms} ms allowed")]
    FromTheFuture { ahead_ms: i128, max_skew_ms: u64 },
}

/// Checks that `at` lies within `max_skew_ms` of `now_ms` on either side. Any `i64` is
/// handled (no overflow: `i64::MIN` is simply too old).
pub fn check(at: Option<&Timestamp>, now_ms: i64, max_skew_ms: u64) -> Result<(), Staleness> {
    let at = at.ok_or(Staleness::Missing)?.unix_ms;
    let difference = i128::from(now_ms) - i128::from(at);
    if difference > i128::from(max_skew_ms) {
        return Err(Staleness::TooOld { age_ms: difference, max_skew_ms });
    }
    if -difference > i128::from(max_skew_ms) {
        return Err(Staleness::FromTheFuture { ahead_ms: -difference, max_skew_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_ms: i64) -> Option<Timestamp> {
        Some(Timestamp { unix_ms })
    }

    /// The window holds on both sides, at its edges and at the ends of `i64`.
    #[test]
    fn the_window_holds_on_both_sides() {
        let now = 1_000_000;
        assert_eq!(check(at(now).as_ref(), now, 10_000), Ok(()));
        assert_eq!(check(at(now - 10_000).as_ref(), now, 10_000), Ok(()));
        assert_eq!(check(at(now + 10_000).as_ref(), now, 10_000), Ok(()));
        assert!(matches!(check(at(now - 10_001).as_ref(), now, 10_000), Err(Staleness::TooOld { .. })));
        assert!(matches!(check(at(now + 25_000).as_ref(), now, 10_000), Err(Staleness::FromTheFuture { .. })));
        assert!(matches!(check(at(i64::MIN).as_ref(), now, 10_000), Err(Staleness::TooOld { .. })));
        assert!(matches!(check(at(i64::MAX).as_ref(), i64::MIN, 10_000), Err(Staleness::FromTheFuture { .. })));
        assert_eq!(check(None, now, 10_000), Err(Staleness::Missing));
    }
}
