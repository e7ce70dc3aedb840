//! Task folders: where they go, what `task.toml` says, and that `data.jsonl` validates.

use super::{text, validate};
use crate::{family, generate, write_task_dir, TaskKind, TaskgenError};

#[test]
fn writes_task_toml_and_valid_data() {
    let dir = tempfile::tempdir().unwrap();
    let f = family("parity").unwrap();
    for (kind, base_model) in [(TaskKind::Instruct, Some("tiny-1m")), (TaskKind::Dpo, None)] {
        let folder = write_task_dir(dir.path(), f, kind, 40, 5, base_model).expect("written");
        let expected_name = if kind == TaskKind::Dpo { "parity-dpo" } else { "parity" };
        assert_eq!(folder, dir.path().join(expected_name));

        let toml: toml::Table = std::fs::read_to_string(folder.join("task.toml")).unwrap().parse().expect("TOML");
        assert_eq!(toml["name"].as_str(), Some(expected_name));
        assert_eq!(toml["type"].as_str(), Some(kind.as_str()));
        assert_eq!(toml.get("base_model").and_then(|v| v.as_str()), base_model);
        // Only keys the CLI's task-folder reader knows; it refuses any other.
        assert!(toml.keys().all(|k| ["name", "type", "base_model"].contains(&k.as_str())), "{toml:?}");

        let data = std::fs::read(folder.join("data.jsonl")).unwrap();
        assert_eq!(data.iter().filter(|&&b| b == b'\n').count(), 40);
        let dataset = validate(kind, &data);
        let rows = generate(f, kind, 40, 5).unwrap();
        for (row, generated) in dataset.rows().iter().zip(&rows) {
            assert_eq!(row.as_map(), generated);
        }
        if kind == TaskKind::Instruct {
            assert!(rows.iter().all(|r| ["even", "odd"].contains(&text(r, "output"))));
        }
    }
}

#[test]
fn same_seed_writes_the_same_bytes() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let f = family("date-iso").unwrap();
    let a = write_task_dir(one.path(), f, TaskKind::Dpo, 50, 8, None).unwrap();
    let b = write_task_dir(two.path(), f, TaskKind::Dpo, 50, 8, None).unwrap();
    for file in ["task.toml", "data.jsonl"] {
        assert_eq!(std::fs::read(a.join(file)).unwrap(), std::fs::read(b.join(file)).unwrap(), "{file}");
    }
}

#[test]
fn errors_name_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let roman = family("roman-numerals").unwrap();
    let err = write_task_dir(dir.path(), roman, TaskKind::Instruct, 301, 1, None).unwrap_err();
    assert!(matches!(err, TaskgenError::TooManyRows { .. }), "{err:?}");
    assert!(!dir.path().join("roman-numerals").exists(), "nothing is written when generation fails");

    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let err = write_task_dir(&blocker, roman, TaskKind::Instruct, 10, 1, None).unwrap_err();
    assert!(matches!(err, TaskgenError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("a-file"), "{err}");
}
