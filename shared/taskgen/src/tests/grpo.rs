//! GRPO rows and their rewards: every family's reward set is valid, its rows carry the
//! columns the rewards read, the right answer scores 1 and every known mistake less, and
//! task folders carry the rewards to their readers.

use gradients_reward::{RewardSet, RewardSpec};
use serde_json::{Map, Value};

use super::{jsonl, text, validate};
use crate::{families, family, generate, read_task_dir, write_task_dir, TaskKind};

/// A family's reward set, which must be valid.
fn rewards(name: &str) -> RewardSet {
    RewardSet::new(family(name).unwrap().grpo_rewards()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reward of `completion` on `row`.
fn score(set: &RewardSet, row: &Map<String, Value>, completion: &str) -> f64 {
    set.score(text(row, "prompt"), completion.as_bytes(), row)
}

/// Every family: GRPO rows ask the DPO questions, validate as GRPO data with the columns
/// their rewards read, and the reference answer scores 1 while each rejected answer (a
/// mistake the family knows) scores less.
#[test]
fn right_answers_score_one_and_mistakes_less() {
    for f in families() {
        let set = RewardSet::new(f.grpo_rewards()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let grpo = generate(f, TaskKind::Grpo, 200, 9).unwrap();
        let dpo = generate(f, TaskKind::Dpo, 200, 9).unwrap();
        let dataset = validate(TaskKind::Grpo, jsonl(&grpo).as_bytes());
        assert_eq!(dataset.len(), 200, "{}", f.name);
        for (row, (g, d)) in dataset.rows().iter().zip(grpo.iter().zip(&dpo)) {
            assert_eq!(row.as_map(), g, "{}: canonical GRPO rows are the generated ones", f.name);
            set.check_row(g).unwrap_or_else(|e| panic!("{}: {e}: {g:?}", f.name));
            assert_eq!(text(g, "prompt"), text(d, "prompt"), "{}", f.name);
            assert_eq!(text(g, "answer"), text(d, "chosen"), "{}", f.name);
            assert_eq!(score(&set, g, text(g, "answer")), 1.0, "{}: {g:?}", f.name);
            let wrong = score(&set, g, text(d, "rejected"));
            assert!(wrong < 1.0, "{}: rejected {:?} scores {wrong}", f.name, text(d, "rejected"));
            assert_eq!(score(&set, g, ""), 0.0, "{}: an empty completion earns nothing", f.name);
        }
    }
}

/// The shaped families reward the shape before the answer, so a group of sampled
/// completions differs in reward long before any of them is right.
#[test]
fn shape_earns_part_of_the_reward() {
    let row = |answer: &str| {
        let mut row = Map::new();
        row.insert("prompt".into(), "q".into());
        row.insert("answer".into(), answer.into());
        row
    };
    let cases = [
        ("arithmetic", "82", "81", "eighty-two"),
        ("date-iso", "2021-03-14", "2021-14-03", "14/03/2021"),
        ("parity", "odd", "even", "odd number"),
        ("record-json", r#"{"name":"Ann","age":31}"#, r#"{"name":"Ann","age":30}"#, "Ann 31"),
        ("key-value-json", r#"{"a":1}"#, r#"{"a":2}"#, "a=1"),
        ("roman-numerals", "XIV", "XV", "14"),
    ];
    for (name, right, shaped, shapeless) in cases {
        let set = rewards(name);
        let r = row(right);
        let (full, part, none) = (score(&set, &r, right), score(&set, &r, shaped), score(&set, &r, shapeless));
        assert!(full == 1.0 && part > none && part < 1.0, "{name}: {full} {part} {none}");
    }
    // Numeric closeness: nearer is better.
    let set = rewards("arithmetic");
    let r = row("82");
    assert!(score(&set, &r, "81") > score(&set, &r, "60"), "closer answers score more");
}

/// A GRPO task folder names its rewards in `task.toml`; reading it back gives the same
/// reward set, and the rows validate against it.
#[test]
fn task_folders_carry_the_rewards() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["arithmetic", "record-json", "date-iso"] {
        let f = family(name).unwrap();
        let folder = write_task_dir(dir.path(), f, TaskKind::Grpo, 40, 3, Some("tiny-1m")).unwrap();
        assert_eq!(folder, dir.path().join(format!("{name}-grpo")));
        let toml: toml::Table = std::fs::read_to_string(folder.join("task.toml")).unwrap().parse().unwrap();
        assert_eq!(toml["type"].as_str(), Some("grpo"));
        assert!(toml.keys().all(|k| ["name", "type", "base_model", "rewards"].contains(&k.as_str())), "{toml:?}");

        let read = read_task_dir(&folder).unwrap();
        assert_eq!(read.task.rewards, f.grpo_rewards());
        assert_eq!(read.reward_set().unwrap().specs(), f.grpo_rewards());
        assert_eq!(read.task.wire_rewards().len(), f.grpo_rewards().len());
        let (task_type, rows) = read.rows().unwrap();
        assert_eq!((task_type, rows.len()), (gradients_data::TaskType::Grpo, 40));
    }
}

/// A task folder whose rewards are wrong, or whose rows lack what they read, is refused
/// with the reason.
#[test]
fn bad_rewards_in_a_task_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_task_dir(dir.path(), family("parity").unwrap(), TaskKind::Grpo, 20, 1, None).unwrap();
    let toml_path = folder.join("task.toml");
    let original = std::fs::read_to_string(&toml_path).unwrap();

    std::fs::write(&toml_path, format!("reward_functions = [\"exact_match\"]\n{original}")).unwrap();
    let err = read_task_dir(&folder).unwrap().reward_set().unwrap_err().to_string();
    assert!(err.contains("not both"), "{err}");

    let bleu = original.replace("name = \"exact_match\"", "name = \"bleu\"");
    std::fs::write(&toml_path, bleu).unwrap();
    let err = read_task_dir(&folder).unwrap().rows().unwrap_err().to_string();
    assert!(err.contains("bleu") && err.contains("task.toml"), "{err}");

    let other_column =
        "name = \"x\"\ntype = \"grpo\"\n[[rewards]]\nname = \"exact_match\"\nparams = { column = \"solution\" }\n";
    std::fs::write(&toml_path, other_column).unwrap();
    let err = read_task_dir(&folder).unwrap().rows().unwrap_err().to_string();
    assert!(err.contains("row 1") && err.contains("solution"), "{err}");

    // The old form still reads: names with weight 1.
    std::fs::write(&toml_path, "name = \"x\"\ntype = \"grpo\"\nreward_functions = [\"exact_match\"]\n").unwrap();
    let read = read_task_dir(&folder).unwrap();
    assert_eq!(read.reward_set().unwrap().specs(), [RewardSpec::named("exact_match")]);
    read.rows().unwrap();
}
