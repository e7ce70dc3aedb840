//! Who is calling, checked before any request is handled.
//!
//! A request must carry a customer's signature (see [`crate::customer`]) that verifies,
//! dated within `intake.request_max_skew_ms` of intake's clock on either side, with a
//! nonce not seen before. Nonces live in the JetStream key-value bucket
//! `gradients-intake-nonces` (created with `create`, which fails when the key exists), so a
//! replay is refused by every replica, and expire once their request could no longer be
//! fresh. The key decides the role: a key in `intake.operator_keys` is an operator (sees
//! and cancels every task); any other key is a customer, allowed when
//! `intake.customer_keys` is empty or lists it.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::HeaderMap;
use gradients_bus::subjects;
use gradients_bus::{topology, Bus, BusError};
use gradients_config::Settings;
use gradients_proto::v1::Timestamp;

use crate::customer::{self, AT_HEADER, KEY_HEADER, NONCE_HEADER, SIGNATURE_HEADER};
use crate::error::RequestError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sees, submits and cancels its own tasks only.
    Customer,
    /// Sees and cancels every task.
    Operator,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The id derived from the key that signed the request.
    pub customer_id: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Whether this caller may see (and cancel) a task owned by `owner`.
    pub fn sees(&self, owner: &str) -> bool {
        self.role == Role::Operator || self.customer_id == owner
    }

    /// The owner every query of this caller is limited to; `None` for operators.
    pub fn owner_filter(&self) -> Option<&str> {
        match self.role {
            Role::Operator => None,
            Role::Customer => Some(&self.customer_id),
        }
    }
}

/// Checks signatures, freshness and nonces.
pub struct Authenticator {
    operators: HashSet<[u8; 32]>,
    allowed: HashSet<[u8; 32]>,
    max_skew_ms: u64,
    nonces: kv::Store,
}

impl Authenticator {
    /// Opens (or creates) the nonce bucket; its entries live twice the skew window, the
    /// longest a nonce can matter (a request dated the full window ahead, received, then
    /// replayed until it is the full window old).
    pub async fn new(bus: &Bus, settings: &Settings) -> Result<Self, BusError> {
        let intake = &settings.intake;
        let nonces = topology::key_value(
            bus,
            subjects::kv::INTAKE_NONCES,
            "Nonces of signed customer requests within the freshness window",
            intake.request_max_skew() * 2 + Duration::from_secs(1),
            &settings.nats,
        )
        .await?;
        Ok(Self {
            operators: parse_keys(&intake.operator_keys),
            allowed: parse_keys(&intake.customer_keys),
            max_skew_ms: intake.request_max_skew_ms,
            nonces,
        })
    }

    /// The caller of a request on `subject` with `body` and `headers`, or why it is refused.
    pub async fn authenticate(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        body: &[u8],
    ) -> Result<Caller, RequestError> {
        let unauthenticated = |why: &str| RequestError::Unauthenticated(why.to_owned());
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let key = header(KEY_HEADER).ok_or_else(|| {
            unauthenticated("the request is not signed: sign it with your customer key (Gradients-Customer-* headers)")
        })?;
        let public_key: [u8; 32] = hex::decode(&key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| unauthenticated("Gradients-Customer-Key is not a 32-byte key in hex"))?;
        let at_ms: i64 = header(AT_HEADER)
            .and_then(|at| at.parse().ok())
            .ok_or_else(|| unauthenticated("Gradients-Request-At is not a time in Unix milliseconds"))?;
        let nonce = header(NONCE_HEADER)
            .filter(|n| (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| unauthenticated("Gradients-Request-Nonce must be 16 to 64 hex digits"))?
            .to_ascii_lowercase();
        let signature = header(SIGNATURE_HEADER)
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| unauthenticated("Gradients-Request-Signature is not hex"))?;
        gradients_miner::identity::verify(
            &public_key,
            customer::REQUEST_DOMAIN,
            &customer::signed_request(subject, at_ms, &nonce, body),
            &signature,
        )
        .map_err(|_| unauthenticated("the request signature does not verify"))?;

        // i128: any i64 in the header (i64::MIN included) is simply out of the window.
        let skew = i128::from(Timestamp::now().unix_ms) - i128::from(at_ms);
        if skew.unsigned_abs() > u128::from(self.max_skew_ms) {
            return Err(RequestError::Stale(format!(
                "the request is dated {} ms {}; at most {} ms either way is accepted",
                skew.unsigned_abs(),
                if skew > 0 { "ago" } else { "ahead" },
                self.max_skew_ms
            )));
        }

        let role = if self.operators.contains(&public_key) {
            Role::Operator
        } else if self.allowed.is_empty() || self.allowed.contains(&public_key) {
            Role::Customer
        } else {
            return Err(RequestError::Forbidden("this key is not a customer of this market".to_owned()));
        };
        let customer_id = customer::customer_id(&public_key);
        // Last, so that refused requests spend no nonce and leave no state.
        match self.nonces.create(format!("{customer_id}.{nonce}"), at_ms.to_string().into()).await {
            Ok(_) => Ok(Caller { customer_id, role }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(RequestError::Stale("this request was already received (its nonce was used)".to_owned()))
            }
            Err(e) => Err(RequestError::Bus(BusError::Object {
                bucket: subjects::kv::INTAKE_NONCES.to_owned(),
                source: e.into(),
            })),
        }
    }
}

/// Keys validated by the configuration (64 hex digits each).
fn parse_keys(keys: &[String]) -> HashSet<[u8; 32]> {
    keys.iter().filter_map(|k| hex::decode(k).ok()?.try_into().ok()).collect()
}
