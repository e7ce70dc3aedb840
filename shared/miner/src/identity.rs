//! Identities: an ed25519 key pair, the id derived from its public key, and signatures
//! over domain-separated bytes. Miners and dispatch both hold one; nothing is hand-rolled
//! (ed25519-dalek does the cryptography).

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

/// Why an identity could not be used or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// A public key is not 32 valid bytes.
    #[error("not an ed25519 public key")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// An ed25519 key pair.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity").field("id", &self.id()).finish()
    }
}

impl Identity {
    /// A new random key.
    pub fn generate() -> Self {
        Self { key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()) }
    }

    /// The key whose secret seed is `seed`: the same identity every time (benchmarks and
    /// tests that must be reproducible; a miner in the market uses [`Identity::generate`]).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(&seed) }
    }

    /// Reads a key file written by [`Identity::save`] (the 32-byte seed in hex).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let fail = |reason: String| IdentityError::KeyFile { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .map_err(|e| fail(format!("not hex: {e}")))?
            .try_into()
            .map_err(|_| fail("the seed must be 32 bytes".into()))?;
        Ok(Self::from_seed(seed))
    }

    /// Reads the key at `path`, or makes one and saves it there when there is none. A
    /// service's replicas share one key file: when another replica writes it between our
    /// check and our write, its key is the one used.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        if path.exists() {
            return Self::load(path);
        }
        let identity = Self::generate();
        match identity.save(path) {
            Ok(()) => Ok(identity),
            Err(_) if path.exists() => Self::load(path),
            Err(e) => Err(e),
        }
    }

    /// Writes the seed in hex, readable by its owner only; refuses to overwrite a key.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        use std::io::Write;
        let fail = |reason: String| IdentityError::KeyFile { path: path.display().to_string(), reason };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| fail(e.to_string()))?;
        writeln!(file, "{}", hex::encode(self.key.to_bytes())).map_err(|e| fail(e.to_string()))
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The id derived from the public key.
    pub fn id(&self) -> String {
        id_for(&self.public_key())
    }

    /// Signs `message` under `domain` (see [`signed_bytes`]).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Vec<u8> {
        self.key.sign(&signed_bytes(domain, message)).to_bytes().to_vec()
    }

    /// Signs a protobuf message whose signature field `clear` empties first.
    pub fn sign_message<M: Message + Clone>(&self, domain: &str, message: &M, clear: impl FnOnce(&mut M)) -> Vec<u8> {
        self.sign(domain, &unsigned_encoding(message, clear))
    }
}

/// The id of the holder of `public_key`: `m` and the first 20 bytes of its sha256 in hex.
pub fn id_for(public_key: &[u8]) -> String {
    format!("m{}", hex::encode(&Sha256::digest(public_key)[..20]))
}

/// Whether `text` is a miner id as [`id_for`] makes them (`m` and 40 lower-case hex
/// digits). Anything else is refused before it reaches a subject, a key or a bucket name.
pub fn is_miner_id(text: &str) -> bool {
    text.len() == 41
        && text.starts_with('m')
        && text[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What is really signed: the domain (so a signature for one purpose never passes for
/// another), a zero byte, the message.
pub fn signed_bytes(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(domain.len() + 1 + message.len());
    bytes.extend_from_slice(domain.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(message);
    bytes
}

/// The message's encoding with its signature field emptied by `clear`. prost encodes
/// fields in tag order, so equal messages (without maps) encode to equal bytes.
pub fn unsigned_encoding<M: Message + Clone>(message: &M, clear: impl FnOnce(&mut M)) -> Vec<u8> {
    let mut unsigned = message.clone();
    clear(&mut unsigned);
    unsigned.encode_to_vec()
}

/// Checks `signature` over `message` under `domain` by the holder of `public_key`.
pub fn verify(public_key: &[u8], domain: &str, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
    PublicKey::from_bytes(public_key)?.verify(domain, message, signature)
}

/// A public key decoded once, for a reader that checks many signatures of one signer (the
/// ledger checks dispatch's on every assignment and the evaluator's on every evaluation):
/// decoding is a curve point decompression, a good part of what one verification costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key whose 32-byte encoding is `public_key`.
    pub fn from_bytes(public_key: &[u8]) -> Result<Self, IdentityError> {
        let key: [u8; 32] = public_key.try_into().map_err(|_| IdentityError::BadPublicKey)?;
        VerifyingKey::from_bytes(&key).map(Self).map_err(|_| IdentityError::BadPublicKey)
    }

    /// [`verify`] with this key.
    pub fn verify(&self, domain: &str, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let signature = Signature::from_slice(signature).map_err(|_| IdentityError::BadSignature)?;
        self.0.verify_strict(&signed_bytes(domain, message), &signature).map_err(|_| IdentityError::BadSignature)
    }

    /// [`verify_message`] with this key.
    pub fn verify_message<M: Message + Clone>(
        &self,
        domain: &str,
        message: &M,
        signature: &[u8],
        clear: impl FnOnce(&mut M),
    ) -> Result<(), IdentityError> {
        self.verify(domain, &unsigned_encoding(message, clear), signature)
    }
}

/// Checks a protobuf message's signature (see [`Identity::sign_message`]).
pub fn verify_message<M: Message + Clone>(
    public_key: &[u8],
    domain: &str,
    message: &M,
    signature: &[u8],
    clear: impl FnOnce(&mut M),
) -> Result<(), IdentityError> {
    verify(public_key, domain, &unsigned_encoding(message, clear), signature)
}

/// Signature domains, one per purpose.
pub mod domains {
    /// A registration: the challenge nonce, the public key and the capabilities.
    pub const REGISTER: &str = "gradients/register/v1";
    /// A heartbeat.
    pub const HEARTBEAT: &str = "gradients/heartbeat/v1";
    /// A reply to an offer.
    pub const OFFER_REPLY: &str = "gradients/offer-reply/v1";
    /// An assignment, signed by dispatch.
    pub const ASSIGNMENT: &str = "gradients/assignment/v1";
    /// A request for granted data, signed by the miner.
    pub const DATA_REQUEST: &str = "gradients/data-request/v1";
    /// A submission.
    pub const SUBMISSION: &str = "gradients/submission/v1";
    /// Deregistration.
    pub const DEREGISTER: &str = "gradients/deregister/v1";
    /// An evaluation result, signed by the evaluator.
    pub const EVALUATION: &str = "gradients/evaluation/v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key survives save and load; the file is private; a second save does not overwrite.
    #[test]
    fn keys_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("miner.key");
        let identity = Identity::generate();
        identity.save(&path).unwrap();
        let loaded = Identity::load(&path).unwrap();
        assert_eq!(loaded.public_key(), identity.public_key());
        assert_eq!(loaded.id(), identity.id());
        assert!(identity.id().starts_with('m') && identity.id().len() == 41);
        assert!(is_miner_id(&identity.id()));
        for bad in [".", "", "m", "M0000000000000000000000000000000000000000", identity.id().to_uppercase().as_str()] {
            assert!(!is_miner_id(bad), "{bad:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(Identity::generate().save(&path).is_err(), "an existing key is never overwritten");
        std::fs::write(dir.path().join("bad.key"), "zz").unwrap();
        assert!(Identity::load(&dir.path().join("bad.key")).is_err());
    }

    /// A signature verifies for its domain, key and bytes only.
    #[test]
    fn signatures_bind_domain_key_and_message() {
        let identity = Identity::generate();
        let signature = identity.sign(domains::HEARTBEAT, b"hello");
        verify(&identity.public_key(), domains::HEARTBEAT, b"hello", &signature).unwrap();
        assert!(verify(&identity.public_key(), domains::REGISTER, b"hello", &signature).is_err());
        assert!(verify(&identity.public_key(), domains::HEARTBEAT, b"hellO", &signature).is_err());
        assert!(verify(&Identity::generate().public_key(), domains::HEARTBEAT, b"hello", &signature).is_err());
        assert!(verify(b"short", domains::HEARTBEAT, b"hello", &signature).is_err());
        // A key decoded once checks exactly as the bytes do.
        let key = PublicKey::from_bytes(&identity.public_key()).unwrap();
        key.verify(domains::HEARTBEAT, b"hello", &signature).unwrap();
        assert!(key.verify(domains::REGISTER, b"hello", &signature).is_err());
        assert!(key.verify(domains::HEARTBEAT, b"hellO", &signature).is_err());
        assert!(PublicKey::from_bytes(b"short").is_err());
    }

    /// A signed message with map fields still verifies after a trip over the wire: the
    /// contract encodes maps in key order (a hash map's order would differ per instance).
    #[test]
    fn signatures_survive_decoding_messages_with_maps() {
        use gradients_proto::v1::{Assignment, Task};
        let identity = Identity::generate();
        let columns = (0..16).map(|i| (format!("role{i}"), format!("column{i}"))).collect();
        let task = Task { id: "t".into(), columns, ..Default::default() };
        let mut assignment = Assignment { assignment_id: "a".into(), task: Some(task), ..Default::default() };
        assignment.signature = identity.sign_message(domains::ASSIGNMENT, &assignment, |a| a.signature.clear());
        let received = Assignment::decode(assignment.encode_to_vec().as_slice()).unwrap();
        verify_message(&identity.public_key(), domains::ASSIGNMENT, &received, &received.signature, |a| {
            a.signature.clear()
        })
        .expect("the signature holds after decoding");
    }
}
