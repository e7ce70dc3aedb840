//! Every subject, stream, consumer and bucket name of the system, and nothing else.
//!
//! Services never build a subject by hand: they call these functions, so a rename is one
//! edit here and the deploy permissions (deploy/nats) can be checked against one list.

/// Streams: name and the subjects each one captures.
pub mod streams {
    /// Task lifecycle events: `gradients.tasks.created`, `gradients.tasks.status.<task>`.
    pub const TASKS: &str = "GRADIENTS_TASKS";
    /// Subjects of [`TASKS`].
    pub const TASKS_SUBJECTS: &str = "gradients.tasks.>";
    /// Messages that could not be handled after every retry, with the reason in headers.
    pub const DEAD_LETTERS: &str = "GRADIENTS_DEAD_LETTERS";
    /// Subjects of [`DEAD_LETTERS`].
    pub const DEAD_LETTERS_SUBJECTS: &str = "gradients.dlq.>";
    /// Assignments of tasks to miners: `gradients.assignments.<miner>`.
    pub const ASSIGNMENTS: &str = "GRADIENTS_ASSIGNMENTS";
    /// Subjects of [`ASSIGNMENTS`].
    pub const ASSIGNMENTS_SUBJECTS: &str = "gradients.assignments.>";
    /// Evaluation results: `gradients.evaluations.<task>`.
    pub const EVALUATIONS: &str = "GRADIENTS_EVALUATIONS";
    /// Subjects of [`EVALUATIONS`].
    pub const EVALUATIONS_SUBJECTS: &str = "gradients.evaluations.>";
    /// Ledger entries and weights.
    pub const LEDGER: &str = "GRADIENTS_LEDGER";
    /// Subjects of [`LEDGER`].
    pub const LEDGER_SUBJECTS: &str = "gradients.ledger.>";
    /// Signed submissions: `gradients.submissions.<task>.<miner>`.
    pub const SUBMISSIONS: &str = "GRADIENTS_SUBMISSIONS";
    /// Subjects of [`SUBMISSIONS`].
    pub const SUBMISSIONS_SUBJECTS: &str = "gradients.submissions.>";
    /// The audit's signed tree heads: `gradients.audit.checkpoints`.
    pub const AUDIT: &str = "GRADIENTS_AUDIT";
    /// Subjects of [`AUDIT`].
    pub const AUDIT_SUBJECTS: &str = "gradients.audit.>";
    /// Every stream the audit captures, with its subjects and the audit's durable
    /// consumer on it (each stream whole, so its sequence numbers have no holes).
    pub const AUDITED: [(&str, &str, &str); 6] = [
        (TASKS, TASKS_SUBJECTS, super::consumers::AUDIT_TASKS),
        (ASSIGNMENTS, ASSIGNMENTS_SUBJECTS, super::consumers::AUDIT_ASSIGNMENTS),
        (SUBMISSIONS, SUBMISSIONS_SUBJECTS, super::consumers::AUDIT_SUBMISSIONS),
        (EVALUATIONS, EVALUATIONS_SUBJECTS, super::consumers::AUDIT_EVALUATIONS),
        (LEDGER, LEDGER_SUBJECTS, super::consumers::AUDIT_LEDGER),
        (DEAD_LETTERS, DEAD_LETTERS_SUBJECTS, super::consumers::AUDIT_DEAD_LETTERS),
    ];
}

/// A miner's own request subject for offers (`gradients.miners.<miner>.offer`); its NATS
/// user may subscribe to its own subjects only (deploy config).
pub fn miner_offers(miner_id: &str) -> String {
    format!("gradients.miners.{}.offer", token(miner_id))
}

/// Where `miner_id` submits for `task_id`: the miner id is the last token, so the deploy
/// permissions pin each miner's user to `gradients.submissions.*.<its id>` and a consumer
/// can check that the signed submission names the miner its subject names.
pub fn submissions(task_id: &str, miner_id: &str) -> String {
    format!("gradients.submissions.{}.{}", token(task_id), token(miner_id))
}

/// Every submission of one task (a filter: `gradients.submissions.<task>.*`).
pub fn submissions_of_task(task_id: &str) -> String {
    format!("gradients.submissions.{}.*", token(task_id))
}

/// Every submission of every task.
pub const SUBMISSIONS_ALL: &str = "gradients.submissions.>";

/// The miner id a submission subject names (its last token), if it is one.
pub fn submission_miner(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix("gradients.submissions.")?;
    let (task, miner) = rest.split_once('.')?;
    (!task.is_empty() && !miner.is_empty() && !miner.contains('.')).then_some(miner)
}

/// Published once for every accepted task.
pub const TASK_CREATED: &str = "gradients.tasks.created";

/// Every status transition of every task.
pub const TASK_STATUS_ALL: &str = "gradients.tasks.status.>";

/// Status transitions of one task.
pub fn task_status(task_id: &str) -> String {
    format!("gradients.tasks.status.{}", token(task_id))
}

/// A miner's assignments.
pub fn assignments(miner_id: &str) -> String {
    format!("gradients.assignments.{}", token(miner_id))
}

/// Every assignment of every miner.
pub const ASSIGNMENTS_ALL: &str = "gradients.assignments.>";

/// Evaluation results of one task.
pub fn evaluations(task_id: &str) -> String {
    format!("gradients.evaluations.{}", token(task_id))
}

/// Every evaluation result.
pub const EVALUATIONS_ALL: &str = "gradients.evaluations.>";

/// One event per ledger entry.
pub const LEDGER_ENTRIES: &str = "gradients.ledger.entries";

/// Miner weights, recomputed after every finalized task.
pub const LEDGER_WEIGHTS: &str = "gradients.ledger.weights";

/// The audit's signed tree heads (JSON `SignedCheckpoint`), in stream [`streams::AUDIT`].
pub const AUDIT_CHECKPOINTS: &str = "gradients.audit.checkpoints";

/// Where a consumer puts what it gave up on.
pub fn dead_letter(consumer: &str) -> String {
    format!("gradients.dlq.{}", token(consumer))
}

/// Durable consumer names; one per (service, purpose), shared by that service's replicas.
pub mod consumers {
    /// Intake's projection of task status events into its task records.
    pub const INTAKE_STATUS: &str = "intake-status";
    /// The ledger's record of created tasks (type, hours, deadline).
    pub const LEDGER_TASKS: &str = "ledger-tasks";
    /// The ledger's record of which miners were assigned each task.
    pub const LEDGER_ASSIGNMENTS: &str = "ledger-assignments";
    /// The ledger's intake of evaluation results.
    pub const LEDGER_EVALUATIONS: &str = "ledger-evaluations";
    /// Dispatch's intake of created tasks (offers and assignments).
    pub const DISPATCH_TASKS: &str = "dispatch-tasks";
    /// The audit's capture of the tasks stream.
    pub const AUDIT_TASKS: &str = "audit-tasks";
    /// The audit's capture of the assignments stream.
    pub const AUDIT_ASSIGNMENTS: &str = "audit-assignments";
    /// The audit's capture of the submissions stream.
    pub const AUDIT_SUBMISSIONS: &str = "audit-submissions";
    /// The audit's capture of the evaluations stream.
    pub const AUDIT_EVALUATIONS: &str = "audit-evaluations";
    /// The audit's capture of the ledger stream.
    pub const AUDIT_LEDGER: &str = "audit-ledger";
    /// The audit's capture of the dead letters.
    pub const AUDIT_DEAD_LETTERS: &str = "audit-dead-letters";
    /// Dispatch's intake of status changes: a cancelled task gets no (more) assignments.
    pub const DISPATCH_STATUS: &str = "dispatch-status";
    /// The evaluator's work queue: every signed submission, shared by its replicas.
    pub const EVALUATOR_SUBMISSIONS: &str = "evaluator-submissions";
    /// The evaluator's record of created tasks (type, base model, deadline, splits); it
    /// also evaluates each task's base model once.
    pub const EVALUATOR_TASKS: &str = "evaluator-tasks";
    /// The evaluator's record of assignments (who may submit, with which key).
    pub const EVALUATOR_ASSIGNMENTS: &str = "evaluator-assignments";

    /// A miner's own durable consumer of its assignments.
    pub fn miner_assignments(miner_id: &str) -> String {
        format!("miner-{}", super::token(miner_id))
    }
}

/// Request/reply APIs (NATS micro services).
pub mod api {
    /// The intake service's name, as `$SRV.PING` and `$SRV.INFO` report it.
    pub const INTAKE_SERVICE: &str = "gradients-intake";
    /// The group all task endpoints live under.
    pub const TASKS_GROUP: &str = "gradients.api.tasks";
    /// `gradients.api.tasks.upload`: names (and on first use creates) the caller's own
    /// uploads bucket.
    pub const TASKS_UPLOAD: &str = "upload";
    /// `gradients.api.tasks.submit`
    pub const TASKS_SUBMIT: &str = "submit";
    /// `gradients.api.tasks.get`
    pub const TASKS_GET: &str = "get";
    /// `gradients.api.tasks.list`
    pub const TASKS_LIST: &str = "list";
    /// `gradients.api.tasks.cancel`
    pub const TASKS_CANCEL: &str = "cancel";
    /// A finished task's ranking for its owner, and its winning model staged for download.
    pub const TASKS_RESULT: &str = "result";

    /// The full subject of a task endpoint, as a client addresses it.
    pub fn tasks(endpoint: &str) -> String {
        format!("{TASKS_GROUP}.{endpoint}")
    }

    /// The ledger service's name.
    pub const LEDGER_SERVICE: &str = "gradients-ledger";
    /// The group of the ledger's query endpoints.
    pub const LEDGER_GROUP: &str = "gradients.api.ledger";
    /// `gradients.api.ledger.task`: a task's result and entries.
    pub const LEDGER_TASK: &str = "task";
    /// `gradients.api.ledger.entries`: entries by miner and period, paged (also export).
    pub const LEDGER_ENTRIES: &str = "entries";
    /// `gradients.api.ledger.weights`: miner weights as of a moment.
    pub const LEDGER_WEIGHTS: &str = "weights";

    /// The dispatch service's name.
    pub const DISPATCH_SERVICE: &str = "gradients-dispatch";
    /// The group of the miner endpoints.
    pub const MINERS_GROUP: &str = "gradients.api.miners";
    /// `gradients.api.miners.challenge`
    pub const MINERS_CHALLENGE: &str = "challenge";
    /// `gradients.api.miners.register`
    pub const MINERS_REGISTER: &str = "register";
    /// `gradients.api.miners.heartbeat`
    pub const MINERS_HEARTBEAT: &str = "heartbeat";
    /// `gradients.api.miners.deregister`
    pub const MINERS_DEREGISTER: &str = "deregister";
    /// `gradients.api.miners.list`
    pub const MINERS_LIST: &str = "list";
    /// `gradients.api.miners.train`: granted train data, in chunks.
    pub const MINERS_TRAIN: &str = "train";

    /// The full subject of a miner endpoint.
    pub fn miners(endpoint: &str) -> String {
        format!("{MINERS_GROUP}.{endpoint}")
    }

    /// The audit service's name.
    pub const AUDIT_SERVICE: &str = "gradients-audit";
    /// The group of the audit's endpoints (JSON requests and answers).
    pub const AUDIT_GROUP: &str = "gradients.api.audit";
    /// `gradients.api.audit.checkpoint`: the latest, a given or a fresh signed tree head.
    pub const AUDIT_CHECKPOINT: &str = "checkpoint";
    /// `gradients.api.audit.proof`: a record and its inclusion proof.
    pub const AUDIT_PROOF: &str = "proof";
    /// `gradients.api.audit.consistency`: the proof that one checkpoint extends another.
    pub const AUDIT_CONSISTENCY: &str = "consistency";
    /// `gradients.api.audit.records`: records in log order, paged (verify, export).
    pub const AUDIT_RECORDS: &str = "records";
    /// `gradients.api.audit.checkpoints`: every stored checkpoint from a size on, paged.
    pub const AUDIT_CHECKPOINTS: &str = "checkpoints";

    /// The full subject of an audit endpoint.
    pub fn audit(endpoint: &str) -> String {
        format!("{AUDIT_GROUP}.{endpoint}")
    }

    /// The full subject of a ledger endpoint.
    pub fn ledger(endpoint: &str) -> String {
        format!("{LEDGER_GROUP}.{endpoint}")
    }
}

/// JetStream object stores.
pub mod buckets {
    /// The start of every customer's own uploads bucket (see [`uploads`]).
    pub const UPLOADS_PREFIX: &str = "gradients-uploads-";
    /// Train splits: readable by miners that hold a grant for the task.
    pub const TRAIN: &str = "gradients-train";
    /// Synthetic and test splits: validators only, never miners.
    pub const VALIDATOR: &str = "gradients-validator";
    /// The prefix of the per-miner artifact buckets (see [`artifacts`]).
    pub const ARTIFACTS_PREFIX: &str = "gradients-artifacts-";

    /// A miner's own bucket of submitted models and manifests,
    /// `gradients-artifacts-<miner>`. Dispatch creates it at the miner's first assignment; the deploy
    /// permissions let that miner's user write it and no other miner's user read it, so no
    /// miner can copy, overwrite or delete another's work.
    pub fn artifacts(miner_id: &str) -> String {
        format!("{ARTIFACTS_PREFIX}{}", super::token(miner_id))
    }

    /// Where a miner's artifact with content `sha256` (lower-case hex) lives: its own
    /// bucket, named `<sha256>.<extension>` (`onnx` for the model, `json` for the manifest),
    /// so the name is tied to the miner and the content. Returns (bucket, object name).
    /// Writers refuse to replace an existing name; readers check that a submission's
    /// references are exactly these before reading a byte.
    pub fn artifact(miner_id: &str, sha256: &str, extension: &str) -> (String, String) {
        (artifacts(miner_id), format!("{}.{extension}", sha256.to_ascii_lowercase()))
    }
    /// Where a file of a miner's submission lives (the files its manifest lists, the HF
    /// folder and report beside the ONNX model): [`artifact`] with the extension of the
    /// file's `path` (`model/config.json` -> `<sha256>.json`; `bin` when it has none).
    pub fn artifact_file(miner_id: &str, sha256: &str, path: &str) -> (String, String) {
        artifact(miner_id, sha256, file_extension(path))
    }

    /// The extension a delivered file is stored under: its own when plain alphanumeric,
    /// else `bin`.
    pub fn file_extension(path: &str) -> &str {
        std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("bin")
    }

    /// Base models by name (HF folder files, their ONNX export and an index of sha256s),
    /// readable by every party.
    pub const MODELS: &str = "gradients-models";
    /// The evaluator's per-row losses behind each evaluation, readable by auditors.
    pub const EVIDENCE: &str = "gradients-evidence";

    /// Where one customer uploads data sets before submitting
    /// (`gradients-uploads-<customer id>`); objects expire after a day. Intake creates it;
    /// the deploy permissions let only that customer's NATS user write or read it.
    pub fn uploads(customer_id: &str) -> String {
        format!("{UPLOADS_PREFIX}{customer_id}")
    }

    /// Object name of one split of one task, named by its content:
    /// `tasks/<id>/<split>-<sha256>.jsonl`. Two attempts at one task with different data
    /// write different objects, so the one that loses cannot overwrite the winner's.
    pub fn split_object(task_id: &str, split: &str, sha256: &str) -> String {
        format!("tasks/{task_id}/{split}-{sha256}.jsonl")
    }
}

/// Key-value buckets.
pub mod kv {
    /// The miner registry: miner id -> `Miner`; an entry not refreshed by a heartbeat
    /// within the bucket's max age expires (the miner is no longer live).
    pub const MINERS: &str = "gradients-miners";
    /// Nonces of signed customer requests seen within the freshness window: a request
    /// replayed inside the window finds its nonce here and is refused.
    pub const INTAKE_NONCES: &str = "gradients-intake-nonces";
    /// Outstanding registration challenges (one-time nonces), short-lived.
    pub const CHALLENGES: &str = "gradients-challenges";
    /// The evaluator's projection: tasks, assignments and published evaluations, shared
    /// by its stateless replicas.
    pub const EVALUATOR: &str = "gradients-evaluator";
}

/// Makes a string safe as one subject token: NATS splits on `.` and reserves `*`, `>`
/// and whitespace. Ids in this system are UUIDs or hex, so this only bites on bad input.
fn token(raw: &str) -> String {
    raw.chars().map(|c| if c == '.' || c == '*' || c == '>' || c.is_whitespace() { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile id cannot widen or split a subject.
    #[test]
    fn ids_become_single_tokens() {
        assert_eq!(task_status("a.b>*c d"), "gradients.tasks.status.a_b__c_d");
        assert_eq!(api::tasks(api::TASKS_SUBMIT), "gradients.api.tasks.submit");
    }

    /// A submission's subject names its miner last; hostile ids stay one token.
    #[test]
    fn submission_subjects_carry_the_miner() {
        let subject = submissions("t1", "m.x*");
        assert_eq!(subject, "gradients.submissions.t1.m_x_");
        assert_eq!(submission_miner(&subject), Some("m_x_"));
        assert_eq!(submission_miner("gradients.submissions.t1"), None);
        assert_eq!(submission_miner("gradients.submissions.t1.m1.extra"), None);
        assert_eq!(buckets::artifact("m1", "AB", "onnx"), ("gradients-artifacts-m1".into(), "ab.onnx".into()));
        assert_eq!(buckets::artifact_file("m1", "ab", "model/config.json").1, "ab.json");
        assert_eq!(buckets::artifact_file("m1", "ab", "model/weights").1, "ab.bin");
        assert_eq!(buckets::artifact_file("m1", "ab", "x.a/b.c*").1, "ab.bin");
    }
}
