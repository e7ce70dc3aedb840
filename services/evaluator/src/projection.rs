//! The little the evaluator must know about tasks and assignments, projected from the
//! events that already exist into one key-value bucket shared by every replica (so the
//! workers stay stateless and any replica can take any submission):
//!
//! - `task.<task>`: type, base model, deadline and the validators' splits (`tasks.created`);
//! - `cohort.<task>`: the cohort size and each assigned miner with its assignment's
//!   deadline and the public key it registered with (`assignments.<miner>`, verified as
//!   dispatch's; the key is read from dispatch's registry while the miner is live);
//! - `done.<submission>` / `base.<task>`: evaluations already published, so a redelivery
//!   repeats nothing.
//!
//! Every write is idempotent (a put of the same facts, or a compare-and-set merge).

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use gradients_bus::subjects;
use gradients_bus::worker::HandlerError;
use gradients_bus::Bus;
use gradients_miner::identity::{domains, id_for, verify_message};
use gradients_proto::v1::{Assignment, Miner, ObjectRef, TaskCreated, TaskType};
use gradients_reward::RewardSpec;
use prost::Message;
use serde::{Deserialize, Serialize};

/// What the evaluator keeps of a created task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task_id: String,
    /// `TaskType` label ("instruct").
    pub task_type: String,
    pub base_model: String,
    pub deadline_ms: i64,
    pub test: Option<StoredRef>,
    pub synth: Option<StoredRef>,
    /// GRPO: the reward functions the task is scored by, as intake validated them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewards: Vec<RewardSpec>,
}

/// An [`ObjectRef`] in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRef {
    pub bucket: String,
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

impl From<&ObjectRef> for StoredRef {
    fn from(r: &ObjectRef) -> Self {
        Self { bucket: r.bucket.clone(), name: r.name.clone(), sha256: r.sha256.clone(), size: r.size }
    }
}

impl From<&StoredRef> for ObjectRef {
    fn from(r: &StoredRef) -> Self {
        Self { bucket: r.bucket.clone(), name: r.name.clone(), sha256: r.sha256.clone(), size: r.size }
    }
}

/// The miners a task was assigned to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CohortRecord {
    pub cohort_size: u32,
    pub miners: BTreeMap<String, AssignedMiner>,
}

/// One assigned miner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedMiner {
    pub assignment_id: String,
    pub deadline_ms: i64,
    /// Hex ed25519 key the miner registered with; empty when it had already left the
    /// registry when its assignment was projected (then the registry is asked again).
    pub public_key: String,
}

impl CohortRecord {
    /// Whether every assignment of the cohort has been seen (dispatch assigns a whole
    /// cohort at once, so a miner missing from a complete cohort was never assigned).
    pub fn is_complete(&self) -> bool {
        self.cohort_size > 0 && self.miners.len() as u32 >= self.cohort_size
    }
}

/// Whether an id can be one key token (ids are UUIDs and hex; anything else is hostile).
pub fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn transient(e: impl Into<gradients_bus::Cause>) -> HandlerError {
    HandlerError::transient(e)
}

/// The projection bucket.
#[derive(Clone)]
pub struct Projection {
    pub kv: kv::Store,
}

impl Projection {
    /// Opens (or creates) the bucket.
    pub async fn open(bus: &Bus, nats: &gradients_config::NatsSettings) -> Result<Self, gradients_bus::BusError> {
        let kv = gradients_bus::topology::key_value(
            bus,
            subjects::kv::EVALUATOR,
            "The evaluator's projection of tasks, assignments and published evaluations",
            std::time::Duration::ZERO,
            nats,
        )
        .await?;
        Ok(Self { kv })
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<(T, u64)>, HandlerError> {
        match self.kv.entry(key).await.map_err(transient)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value = serde_json::from_slice(&entry.value)
                    .map_err(|e| HandlerError::poison(format!("projection {key} is unreadable: {e}")))?;
                Ok(Some((value, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    pub async fn task(&self, task_id: &str) -> Result<Option<TaskRecord>, HandlerError> {
        Ok(self.get_json(&format!("task.{task_id}")).await?.map(|(t, _)| t))
    }

    pub async fn cohort(&self, task_id: &str) -> Result<CohortRecord, HandlerError> {
        Ok(self.get_json(&format!("cohort.{task_id}")).await?.map(|(c, _)| c).unwrap_or_default())
    }

    /// The encoded evaluation already published under `key` (`done.<submission>`,
    /// `base.<task>`), if any.
    pub async fn published(&self, key: &str) -> Result<Option<bytes::Bytes>, HandlerError> {
        match self.kv.entry(key).await.map_err(transient)? {
            Some(entry) if entry.operation == kv::Operation::Put => Ok(Some(entry.value)),
            _ => Ok(None),
        }
    }

    /// Remembers that the evaluation `payload` was published under `key`.
    pub async fn mark_published(&self, key: &str, payload: bytes::Bytes) -> Result<(), HandlerError> {
        self.kv.put(key, payload).await.map_err(transient)?;
        Ok(())
    }

    /// Records a created task (a put of the same facts on redelivery).
    pub async fn record_task(&self, created: &TaskCreated) -> Result<TaskRecord, HandlerError> {
        let task = created.task.as_ref().ok_or_else(|| HandlerError::poison("TaskCreated without a task"))?;
        if !safe_id(&task.id) {
            return Err(HandlerError::poison(format!("task id {:?} is not an id", task.id)));
        }
        // A type or deadline read as a default would fail every submission (an unknown type,
        // or every one late against deadline 0): refuse the event instead.
        let task_type = TaskType::try_from(task.r#type)
            .ok()
            .filter(|t| *t != TaskType::Unspecified)
            .ok_or_else(|| HandlerError::poison(format!("task {} has no known type ({})", task.id, task.r#type)))?;
        let deadline = task
            .deadline
            .filter(|d| d.unix_ms > 0)
            .ok_or_else(|| HandlerError::poison(format!("task {} has no deadline", task.id)))?;
        let splits = task.splits.as_ref();
        let record = TaskRecord {
            task_id: task.id.clone(),
            task_type: task_type.label(),
            base_model: task.base_model.clone(),
            deadline_ms: deadline.unix_ms,
            test: splits.and_then(|s| s.test.as_ref()).and_then(|d| d.object.as_ref()).map(StoredRef::from),
            synth: splits.and_then(|s| s.synth.as_ref()).and_then(|d| d.object.as_ref()).map(StoredRef::from),
            rewards: gradients_reward::specs_from_wire(&task.rewards, &task.reward_functions),
        };
        let json = serde_json::to_vec(&record).expect("a record serialises");
        self.kv.put(format!("task.{}", task.id), json.into()).await.map_err(transient)?;
        Ok(record)
    }

    /// Merges a verified assignment into its task's cohort (compare-and-set, so replicas
    /// recording different miners of one task at once lose nothing).
    pub async fn record_assignment(&self, assignment: &Assignment, public_key: String) -> Result<(), HandlerError> {
        let key = format!("cohort.{}", assignment.task_id);
        loop {
            let current = self.get_json::<CohortRecord>(&key).await?;
            let (mut cohort, revision) = current.map(|(c, r)| (c, Some(r))).unwrap_or_default();
            cohort.cohort_size = cohort.cohort_size.max(assignment.cohort_size);
            let miner = AssignedMiner {
                assignment_id: assignment.assignment_id.clone(),
                deadline_ms: assignment.deadline.map(|d| d.unix_ms).unwrap_or_default(),
                public_key: public_key.clone(),
            };
            if cohort.miners.get(&assignment.miner_id) == Some(&miner) {
                return Ok(());
            }
            cohort.miners.insert(assignment.miner_id.clone(), miner);
            let json: bytes::Bytes = serde_json::to_vec(&cohort).expect("a record serialises").into();
            let written = match revision {
                Some(revision) => self.kv.update(&key, json, revision).await.map(|_| ()).map_err(|e| e.to_string()),
                None => self.kv.create(&key, json).await.map(|_| ()).map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(()),
                // Someone else wrote in between: read again and merge.
                Err(_) => continue,
            }
        }
    }
}

/// Checks dispatch's signature on an assignment.
pub fn verify_assignment(assignment: &Assignment, dispatch_key: &[u8]) -> Result<(), HandlerError> {
    verify_message(dispatch_key, domains::ASSIGNMENT, assignment, &assignment.signature, |a| a.signature.clear())
        .map_err(|e| HandlerError::poison(format!("assignment {} is not dispatch's: {e}", assignment.assignment_id)))
}

/// The public key miner `miner_id` registered with, from dispatch's registry, checked to
/// be the key the id is derived from; `None` when the miner is not (or no longer) there.
pub async fn registered_key(bus: &Bus, miner_id: &str) -> Result<Option<Vec<u8>>, HandlerError> {
    let registry = match bus.jetstream.get_key_value(subjects::kv::MINERS).await {
        Ok(registry) => registry,
        Err(_) => return Ok(None),
    };
    let Some(bytes) = registry.get(miner_id).await.map_err(transient)? else { return Ok(None) };
    let miner = Miner::decode(bytes.as_ref()).map_err(transient)?;
    Ok((id_for(&miner.public_key) == miner_id).then_some(miner.public_key))
}
