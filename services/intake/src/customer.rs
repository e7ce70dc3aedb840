//! Customer identities and signed requests, both sides.
//!
//! A customer holds an ed25519 key (the same key file format as a miner's, made by
//! `gradients customer keygen`); its id is derived from the public key
//! (`c` + 20 bytes of sha256, hex), so nobody can claim another's id without its key.
//! Every intake request carries, in headers, the public key, the time, a nonce and a
//! signature over the subject, the time, the nonce and the sha256 of the body. The
//! subject is signed so that a captured `get` cannot be replayed as a `cancel`; the time
//! and the nonce so that a captured request cannot be replayed at all (see [`crate::auth`]).

use async_nats::header::HeaderMap;
use gradients_miner::Identity;
use gradients_proto::v1::Timestamp;
use sha2::{Digest, Sha256};

/// Header with the caller's ed25519 public key, hex.
pub const KEY_HEADER: &str = "Gradients-Customer-Key";
/// Header with the request's time, Unix milliseconds.
pub const AT_HEADER: &str = "Gradients-Request-At";
/// Header with a random one-time value, 32 hex digits.
pub const NONCE_HEADER: &str = "Gradients-Request-Nonce";
/// Header with the ed25519 signature, hex.
pub const SIGNATURE_HEADER: &str = "Gradients-Request-Signature";
/// The signature domain of customer requests (never valid for any other purpose).
pub const REQUEST_DOMAIN: &str = "gradients/customer-request/v1";

/// The customer id of the holder of `public_key`.
pub fn customer_id(public_key: &[u8]) -> String {
    format!("c{}", hex::encode(&Sha256::digest(public_key)[..20]))
}

/// Whether `text` is a customer id as [`customer_id`] makes them.
pub fn is_customer_id(text: &str) -> bool {
    text.len() == 41
        && text.starts_with('c')
        && text[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The bytes a request signature covers.
pub fn signed_request(subject: &str, at_ms: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(subject.len() + nonce.len() + 64);
    bytes.extend_from_slice(subject.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(at_ms.to_string().as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(nonce.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&Sha256::digest(body));
    bytes
}

/// A customer's key, used by clients to sign their requests.
#[derive(Clone, Debug)]
pub struct CustomerKey(Identity);

impl CustomerKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(Identity::generate())
    }

    /// Reads a key file (the 32-byte seed in hex).
    pub fn load(path: &std::path::Path) -> Result<Self, gradients_miner::IdentityError> {
        Identity::load(path).map(Self)
    }

    /// Writes the key file, readable by its owner only; never overwrites one.
    pub fn save(&self, path: &std::path::Path) -> Result<(), gradients_miner::IdentityError> {
        self.0.save(path)
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.public_key()
    }

    /// The customer id this key stands for.
    pub fn id(&self) -> String {
        customer_id(&self.public_key())
    }

    /// The headers that sign a request of `body` to `subject` now.
    pub fn sign_request(&self, subject: &str, body: &[u8]) -> HeaderMap {
        self.sign_request_at(subject, body, Timestamp::now().unix_ms, &hex::encode(rand::random::<[u8; 16]>()))
    }

    /// The headers that sign a request with a given time and nonce (tests replay with these).
    pub fn sign_request_at(&self, subject: &str, body: &[u8], at_ms: i64, nonce: &str) -> HeaderMap {
        let signature = self.0.sign(REQUEST_DOMAIN, &signed_request(subject, at_ms, nonce, body));
        let mut headers = HeaderMap::new();
        headers.insert(KEY_HEADER, hex::encode(self.public_key()).as_str());
        headers.insert(AT_HEADER, at_ms.to_string().as_str());
        headers.insert(NONCE_HEADER, nonce);
        headers.insert(SIGNATURE_HEADER, hex::encode(signature).as_str());
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_from_the_key_and_recognised() {
        let key = CustomerKey::generate();
        assert!(is_customer_id(&key.id()), "{}", key.id());
        assert_ne!(key.id(), CustomerKey::generate().id());
        for bad in ["", ".", "c", "m0000000000000000000000000000000000000000", &key.id().to_uppercase()] {
            assert!(!is_customer_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_signature_covers_subject_time_nonce_and_body() {
        let key = CustomerKey::generate();
        let headers = key.sign_request_at("gradients.api.tasks.get", b"body", 1_000, "00ff");
        let signature = hex::decode(headers.get(SIGNATURE_HEADER).unwrap().as_str()).unwrap();
        let verify = |subject: &str, at: i64, nonce: &str, body: &[u8]| {
            gradients_miner::identity::verify(
                &key.public_key(),
                REQUEST_DOMAIN,
                &signed_request(subject, at, nonce, body),
                &signature,
            )
            .is_ok()
        };
        assert!(verify("gradients.api.tasks.get", 1_000, "00ff", b"body"));
        assert!(!verify("gradients.api.tasks.cancel", 1_000, "00ff", b"body"));
        assert!(!verify("gradients.api.tasks.get", 1_001, "00ff", b"body"));
        assert!(!verify("gradients.api.tasks.get", 1_000, "00fe", b"body"));
        assert!(!verify("gradients.api.tasks.get", 1_000, "00ff", b"bodY"));
    }
}
