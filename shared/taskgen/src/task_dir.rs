//! Task folders: `task.toml` and `data.jsonl`, the format `gradients task submit --dir`,
//! `gradients-trainer train --task`, the demo and the benchmark read. Generated rows are
//! written here, and every reader reads through [`read_task_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gradients_data::{ColumnMap, Limits, Row, TaskType};
use gradients_proto::v1::RewardFunction;
use gradients_reward::{RewardSet, RewardSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::families::Family;
use crate::{generate, TaskKind, TaskgenError};

/// `task.toml`. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// Free text.
    pub name: String,
    /// `instruct`, `chat`, `dpo` or `grpo`.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The project's own base model or a local HF folder; the reader's default when absent.
    pub base_model: Option<String>,
    /// Time the market has to deliver.
    pub hours_to_complete: Option<f64>,
    /// GRPO only, the old form: reward function names, each with weight 1 and no
    /// parameters. A task gives these or `rewards`, not both.
    #[serde(default)]
    pub reward_functions: Vec<String>,
    /// GRPO only: `[[rewards]]` tables of `name`, `weight` and `params` (README "Reward functions").
    #[serde(default)]
    pub rewards: Vec<RewardSpec>,
    /// Canonical role → the data set's column name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

const LOCAL_LIMITS: Limits = Limits { max_bytes: 1 << 30, max_row_bytes: 1 << 20, max_rows: u64::MAX, min_rows: 1 };

impl TaskFile {
    /// The reward functions as specs: `rewards`, else each name of `reward_functions`.
    pub fn reward_specs(&self) -> Vec<RewardSpec> {
        if self.rewards.is_empty() {
            self.reward_functions.iter().map(RewardSpec::named).collect()
        } else {
            self.rewards.clone()
        }
    }

    /// `rewards` as the submit request carries them (`reward_functions` travel as they are).
    pub fn wire_rewards(&self) -> Vec<RewardFunction> {
        self.rewards.iter().map(RewardFunction::from).collect()
    }
}

/// A task folder, read.
#[derive(Debug, Clone)]
pub struct TaskDir {
    /// Its `task.toml`.
    pub task: TaskFile,
    /// Where its `data.jsonl` is.
    pub data: PathBuf,
}

/// Reads `dir/task.toml` and checks that `dir/data.jsonl` exists.
pub fn read_task_dir(dir: &Path) -> Result<TaskDir, TaskgenError> {
    let toml_path = dir.join("task.toml");
    let text =
        std::fs::read_to_string(&toml_path).map_err(|source| TaskgenError::Io { path: toml_path.clone(), source })?;
    let task: TaskFile =
        toml::from_str(&text).map_err(|e| TaskgenError::TaskFile { path: toml_path.clone(), reason: e.to_string() })?;
    let data = dir.join("data.jsonl");
    if !data.is_file() {
        return Err(TaskgenError::TaskFile { path: data, reason: "missing".into() });
    }
    Ok(TaskDir { task, data })
}

impl TaskDir {
    /// The task type and the data set's rows under canonical column names, validated by
    /// the same rules as intake's. Size limits are the market's business (intake's
    /// configuration); a local reader only guards against absurd files.
    pub fn rows(&self) -> Result<(TaskType, Vec<Row>), TaskgenError> {
        let invalid = |reason: String| TaskgenError::TaskFile { path: self.data.clone(), reason };
        let task_type: TaskType = self.task.task_type.parse().map_err(|e| invalid(format!("{e}")))?;
        let columns = ColumnMap::with_overrides(&self.task.columns).map_err(|e| invalid(e.to_string()))?;
        let bytes = std::fs::read(&self.data).map_err(|source| TaskgenError::Io { path: self.data.clone(), source })?;
        let dataset =
            gradients_data::parse(task_type, &columns, &bytes, &LOCAL_LIMITS).map_err(|e| invalid(e.to_string()))?;
        if task_type == TaskType::Grpo {
            let rewards = self.reward_set()?;
            for (row, line) in dataset.rows().iter().zip(dataset.source_rows()) {
                rewards.check_row(row.as_map()).map_err(|e| invalid(format!("row {line}: {e}")))?;
            }
        }
        Ok((task_type, dataset.into_rows()))
    }

    /// The reward functions of a GRPO task, checked as intake checks them.
    pub fn reward_set(&self) -> Result<RewardSet, TaskgenError> {
        if !self.task.rewards.is_empty() && !self.task.reward_functions.is_empty() {
            return Err(self.toml_error("give either reward_functions or [[rewards]], not both".to_owned()));
        }
        RewardSet::new(self.task.reward_specs()).map_err(|e| self.toml_error(e.to_string()))
    }

    /// An error about this folder's `task.toml`.
    fn toml_error(&self, reason: String) -> TaskgenError {
        TaskgenError::TaskFile { path: self.data.with_file_name("task.toml"), reason }
    }
}

/// The `task.toml` keys we write; a subset of what the CLI's task-folder reader accepts.
#[derive(Serialize)]
struct TaskToml<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_model: Option<&'a str>,
    /// GRPO: the family's reward functions, as `[[rewards]]` tables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rewards: Vec<RewardSpec>,
}

/// Generates `rows` rows of `family` and writes them to `<dir>/<family>` (instruct),
/// `<dir>/<family>-dpo` (DPO) or `<dir>/<family>-grpo` (GRPO, with the family's reward
/// functions in `task.toml`), creating folders as needed and replacing the two files if
/// they exist. Returns the task folder.
///
/// The rows use the canonical column names, so `task.toml` needs no `[columns]` table.
pub fn write_task_dir(
    dir: &Path,
    family: &Family,
    kind: TaskKind,
    rows: usize,
    seed: u64,
    base_model: Option<&str>,
) -> Result<PathBuf, TaskgenError> {
    let rows = generate(family, kind, rows, seed)?;
    let name = match kind {
        TaskKind::Instruct => family.name.to_owned(),
        TaskKind::Dpo => format!("{}-dpo", family.name),
        TaskKind::Grpo => format!("{}-grpo", family.name),
    };
    let rewards = if kind == TaskKind::Grpo { family.grpo_rewards() } else { Vec::new() };
    let folder = dir.join(&name);
    std::fs::create_dir_all(&folder).map_err(|source| TaskgenError::Io { path: folder.clone(), source })?;

    // The comment records how to make the same file again; readers ignore it.
    let toml = format!(
        "# Generated by gradients-taskgen: family {}, {} rows, seed {seed}.\n{}",
        family.name,
        rows.len(),
        toml::to_string(&TaskToml { name: &name, task_type: kind.as_str(), base_model, rewards })?
    );
    write(&folder.join("task.toml"), toml.as_bytes())?;

    let mut data = Vec::new();
    for row in &rows {
        // Sorted explicitly: serde_json's map keeps insertion order instead when another
        // crate in the build turns on its `preserve_order` feature, and the bytes must not
        // depend on who else is compiled alongside.
        let sorted: BTreeMap<&String, &Value> = row.iter().collect();
        // Serialising a map of strings into memory cannot fail.
        serde_json::to_writer(&mut data, &sorted).expect("rows are plain JSON");
        data.push(b'\n');
    }
    write(&folder.join("data.jsonl"), &data)?;
    Ok(folder)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TaskgenError> {
    std::fs::write(path, bytes).map_err(|source| TaskgenError::Io { path: path.to_owned(), source })
}
