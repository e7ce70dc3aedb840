//! What a reader of submissions (the evaluator, the audit) checks before trusting one:
//! the subject it came on names the miner and task it claims, the miner's key signed it,
//! and its artifact and manifest are the objects [`buckets::artifact`] names for that
//! miner and their content, in the miner's own bucket. A copied submission (another
//! miner's artifact under one's own name) or one naming a shared or foreign bucket is
//! refused before a byte of the model is read.

use gradients_bus::subjects::{self, buckets};
use gradients_proto::v1::{ObjectRef, Submission};

use crate::identity::{domains, id_for, verify_message};

/// The extension of a submitted model's object name.
pub const MODEL_EXTENSION: &str = "onnx";
/// The extension of a submitted manifest's object name.
pub const MANIFEST_EXTENSION: &str = "json";

/// Why a submission is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// The subject it came on is not `submissions(<its task>, <its miner>)`.
    #[error("submission came on {subject} but names task {task_id} and miner {miner_id}")]
    WrongSubject { subject: String, task_id: String, miner_id: String },
    /// The public key given is not the named miner's.
    #[error("the key given is not miner {0}'s")]
    WrongKey(String),
    /// The signature does not verify.
    #[error("the submission is not signed by miner {0}")]
    BadSignature(String),
    /// An artifact reference is missing or not where the miner's own, content-named object
    /// must be.
    #[error("{what} must be {bucket}/{name}, not {given_bucket}/{given_name}")]
    WrongObject { what: &'static str, bucket: String, name: String, given_bucket: String, given_name: String },
}

/// The reference a miner's upload of content `sha256` must carry.
pub fn expected_object(miner_id: &str, sha256: &str, extension: &str) -> (String, String) {
    buckets::artifact(miner_id, sha256, extension)
}

/// Checks `submission`, received on `subject`, against the named miner's `public_key`.
pub fn verify_submission(subject: &str, submission: &Submission, public_key: &[u8]) -> Result<(), SubmissionError> {
    let miner_id = &submission.miner_id;
    if subject != subjects::submissions(&submission.task_id, miner_id) {
        return Err(SubmissionError::WrongSubject {
            subject: subject.to_owned(),
            task_id: submission.task_id.clone(),
            miner_id: miner_id.clone(),
        });
    }
    if id_for(public_key) != *miner_id {
        return Err(SubmissionError::WrongKey(miner_id.clone()));
    }
    verify_message(public_key, domains::SUBMISSION, submission, &submission.signature, |s| s.signature.clear())
        .map_err(|_| SubmissionError::BadSignature(miner_id.clone()))?;
    check_object("artifact", miner_id, submission.artifact.as_ref(), MODEL_EXTENSION)?;
    check_object("manifest", miner_id, submission.manifest.as_ref(), MANIFEST_EXTENSION)
}

fn check_object(
    what: &'static str,
    miner_id: &str,
    given: Option<&ObjectRef>,
    extension: &str,
) -> Result<(), SubmissionError> {
    let given = given.cloned().unwrap_or_default();
    let (bucket, name) = expected_object(miner_id, &given.sha256, extension);
    // The name is derived from the declared sha256, which readers verify on read.
    if given.sha256.len() != 64 || given.bucket != bucket || given.name != name {
        return Err(SubmissionError::WrongObject {
            what,
            bucket,
            name,
            given_bucket: given.bucket,
            given_name: given.name,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gradients_bus::objects::sha256_hex;

    use super::*;
    use crate::Identity;

    fn signed(identity: &Identity, artifact: ObjectRef) -> Submission {
        let miner_id = identity.id();
        let manifest_sha = sha256_hex(b"{}");
        let (bucket, name) = expected_object(&miner_id, &manifest_sha, MANIFEST_EXTENSION);
        let mut submission = Submission {
            submission_id: "s".into(),
            task_id: "t".into(),
            miner_id,
            artifact: Some(artifact),
            manifest: Some(ObjectRef { bucket, name, sha256: manifest_sha, size: 2 }),
            ..Default::default()
        };
        submission.signature = identity.sign_message(domains::SUBMISSION, &submission, |s| s.signature.clear());
        submission
    }

    fn own_artifact(miner_id: &str, data: &[u8]) -> ObjectRef {
        let sha256 = sha256_hex(data);
        let (bucket, name) = expected_object(miner_id, &sha256, MODEL_EXTENSION);
        ObjectRef { bucket, name, sha256, size: data.len() as u64 }
    }

    /// An honest submission passes; a copied artifact, a foreign subject or key fail.
    #[test]
    fn only_a_miners_own_signed_content_named_objects_pass() {
        let (alice, bob) = (Identity::generate(), Identity::generate());
        let honest = signed(&alice, own_artifact(&alice.id(), b"model"));
        let subject = subjects::submissions("t", &alice.id());
        assert_eq!(verify_submission(&subject, &honest, &alice.public_key()), Ok(()));

        // Bob points his signed submission at Alice's object: refused.
        let copied = signed(&bob, own_artifact(&alice.id(), b"model"));
        let bob_subject = subjects::submissions("t", &bob.id());
        assert!(matches!(
            verify_submission(&bob_subject, &copied, &bob.public_key()),
            Err(SubmissionError::WrongObject { .. })
        ));
        // Alice's submission replayed on Bob's subject, or checked with Bob's key: refused.
        assert!(matches!(
            verify_submission(&bob_subject, &honest, &alice.public_key()),
            Err(SubmissionError::WrongSubject { .. })
        ));
        assert!(matches!(verify_submission(&subject, &honest, &bob.public_key()), Err(SubmissionError::WrongKey(_))));
        // Edited after signing: refused.
        let mut edited = honest.clone();
        edited.task_id = "t".into();
        edited.submission_id = "other".into();
        assert!(matches!(
            verify_submission(&subject, &edited, &alice.public_key()),
            Err(SubmissionError::BadSignature(_))
        ));
    }
}
