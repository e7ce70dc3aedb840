//! A task as files: a folder with `task.toml` and `data.jsonl` (see DESIGN.md). The same
//! folder works for `task submit --dir`, the demo and, later, the market benchmark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// `task.toml`. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// Free text.
    pub name: String,
    /// `instruct`, `chat`, `dpo` or `grpo`.
    #[serde(rename = "type")]
    pub task_type: String,
    /// The project's own base model or a local HF folder; the CLI's default when absent.
    pub base_model: Option<String>,
    /// Time the market has to deliver.
    pub hours_to_complete: Option<f64>,
    /// GRPO only.
    #[serde(default)]
    pub reward_functions: Vec<String>,
    /// Canonical role → the data set's column name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// A task folder, read.
pub struct TaskDir {
    /// Its `task.toml`.
    pub task: TaskFile,
    /// Where its `data.jsonl` is.
    pub data: PathBuf,
}

/// Reads `dir/task.toml` and checks that `dir/data.jsonl` exists.
pub fn read(dir: &Path) -> anyhow::Result<TaskDir> {
    let toml_path = dir.join("task.toml");
    let text = std::fs::read_to_string(&toml_path).with_context(|| format!("reading {}", toml_path.display()))?;
    let task: TaskFile = toml::from_str(&text).with_context(|| format!("parsing {}", toml_path.display()))?;
    let data = dir.join("data.jsonl");
    anyhow::ensure!(data.is_file(), "{} is missing", data.display());
    Ok(TaskDir { task, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full task.toml reads; an unknown key is refused by name.
    #[test]
    fn reads_task_toml_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.jsonl"), "{}\n").unwrap();
        std::fs::write(
            dir.path().join("task.toml"),
            "name = \"n\"\ntype = \"instruct\"\nbase_model = \"tiny-1m\"\n[columns]\ninstruction = \"q\"\n",
        )
        .unwrap();
        let read_back = read(dir.path()).unwrap();
        assert_eq!(read_back.task.columns["instruction"], "q");
        assert_eq!(read_back.task.base_model.as_deref(), Some("tiny-1m"));

        std::fs::write(dir.path().join("task.toml"), "name = \"n\"\ntype = \"instruct\"\nepochs = 3\n").unwrap();
        let error = format!("{:#}", read(dir.path()).err().unwrap());
        assert!(error.contains("epochs"), "{error}");
    }
}
