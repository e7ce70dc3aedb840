//! A task as files: a folder with `task.toml` and `data.jsonl` (see DESIGN.md), read by
//! `gradients-taskgen`, the one reader every command and the trainer share.

use std::path::Path;

pub use gradients_taskgen::TaskDir;

/// Reads `dir/task.toml` and checks that `dir/data.jsonl` exists.
pub fn read(dir: &Path) -> anyhow::Result<TaskDir> {
    Ok(gradients_taskgen::read_task_dir(dir)?)
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
