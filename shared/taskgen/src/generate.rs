//! Turning a family's examples into a set of unique instruct, DPO or GRPO rows.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::families::{Example, Family};
use crate::words::{below, seeded, Rng};
use crate::{TaskKind, TaskgenError};

/// The rejected answer when a family offers no wrong answer that differs from the right
/// one; families are tested never to need it, but a row must never prefer an answer to
/// itself (the data crate refuses such rows).
pub(crate) const FALLBACK_REJECTED: &str = "I don't know.";

/// `rows` distinct rows of `family`, as JSON objects in the data crate's canonical column
/// names, the same for the same arguments on every platform.
///
/// The instruct and DPO rows of one seed ask the same questions in the same order. No two
/// rows share an instruction and input, which is stricter than the data crate's rule (no
/// identical rows): a DPO set never repeats a prompt with another rejected answer, and a
/// split never puts the very same prompt on both the training and the test side. Fails
/// with [`TaskgenError::TooManyRows`] when the family has fewer distinct questions than
/// `rows`.
pub fn generate(
    family: &Family,
    kind: TaskKind,
    rows: usize,
    seed: u64,
) -> Result<Vec<Map<String, Value>>, TaskgenError> {
    if let Some(max) = family.max_rows().filter(|&max| rows > max) {
        return Err(TaskgenError::TooManyRows { family: family.name, requested: rows, available: max });
    }
    let mut questions = seeded(seed, &format!("{}/questions", family.name));
    let mut mistakes = seeded(seed, &format!("{}/rejected", family.name));
    let mut seen = HashSet::with_capacity(rows);
    let mut out = Vec::with_capacity(rows);
    // Large families are not counted exactly, so running dry shows as a run of repeats:
    // generous enough that collecting every row of a small family (about n ln n draws)
    // stays well inside it.
    let budget = rows.saturating_mul(64).saturating_add(100_000);
    let mut draws = 0;
    while out.len() < rows {
        if draws == budget {
            return Err(TaskgenError::TooManyRows { family: family.name, requested: rows, available: out.len() });
        }
        draws += 1;
        let example = family.sample(&mut questions);
        if !seen.insert((example.instruction, example.input.clone())) {
            continue;
        }
        out.push(match kind {
            TaskKind::Instruct => instruct_row(example),
            TaskKind::Dpo => dpo_row(example, &mut mistakes),
            TaskKind::Grpo => grpo_row(example),
        });
    }
    Ok(out)
}

fn instruct_row(example: Example) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("instruction".into(), Value::String(example.instruction.to_owned()));
    row.insert("input".into(), Value::String(example.input));
    row.insert("output".into(), Value::String(example.output));
    row
}

/// The prompt is the instruction and the input on two lines, as a person would ask it.
fn dpo_row(example: Example, mistakes: &mut Rng) -> Map<String, Value> {
    let rejected = rejected(&example, mistakes);
    let mut row = Map::new();
    row.insert("prompt".into(), Value::String(format!("{}\n{}", example.instruction, example.input)));
    row.insert("chosen".into(), Value::String(example.output));
    row.insert("rejected".into(), Value::String(rejected));
    row
}

/// The prompt as for DPO; the answer is the reference the family's reward functions read
/// ([`Family::grpo_rewards`]), under the default column `answer`.
fn grpo_row(example: Example) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("prompt".into(), Value::String(format!("{}\n{}", example.instruction, example.input)));
    row.insert(gradients_reward::DEFAULT_COLUMN.into(), Value::String(example.output));
    row
}

/// One of the example's wrong answers that really is wrong and not blank.
///
/// Compared trimmed, as the data crate does: answers differing only in surrounding
/// whitespace carry no preference.
pub(crate) fn rejected(example: &Example, rng: &mut Rng) -> String {
    let right = example.output.trim();
    let mut candidates: Vec<&str> = Vec::new();
    for wrong in &example.wrong {
        let wrong = wrong.trim();
        if !wrong.is_empty() && wrong != right && !candidates.contains(&wrong) {
            candidates.push(wrong);
        }
    }
    if candidates.is_empty() {
        return FALLBACK_REJECTED.to_owned();
    }
    candidates[below(rng, candidates.len() as u32) as usize].to_owned()
}
