//! The reward functions themselves: each maps (prompt, completion, the row's columns) to a
//! reward in [0, 1], higher is better.
//!
//! Every function sees the completion already decoded (lossily) and capped by
//! [`crate::RewardSet::score`], and reads the row's other columns as the data crate keeps
//! them for GRPO (`prompt` plus every other key under the customer's own name). A column
//! that is missing or unusable scores 0; intake refuses such rows before a task exists
//! ([`crate::RewardSet::check_row`]), so that only happens to callers that skip the check.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

/// The longest regular expression a task may give `regex_format`, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// The most bytes of compiled program one pattern may need (the `regex` crate's size limit):
/// matching is linear in the completion, and this bounds the constant.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// How deeply a pattern may nest groups and repetitions.
const PATTERN_NEST_LIMIT: u32 = 64;

/// Parameters of `exact_match` and `contains_answer`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerParams {
    /// The column holding the reference answer (a non-blank string or a number).
    pub column: String,
    /// Compare after lower-casing both sides.
    pub ignore_case: bool,
}

/// Parameters of `length_penalty`.
#[derive(Debug, Clone, PartialEq)]
pub struct LengthParams {
    /// The longest completion (in characters, surrounding whitespace trimmed) with no penalty.
    pub max_chars: usize,
}

/// Parameters of `valid_json`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonParams {
    /// Keys the completion's top-level object should have; empty: any JSON value will do.
    pub required_keys: Vec<String>,
}

/// Parameters of `regex_format`.
#[derive(Debug, Clone)]
pub struct RegexParams {
    /// The pattern as the task gave it.
    pub pattern: String,
    /// The pattern anchored at both ends, so only a full match counts.
    pub full: Regex,
}

/// Parameters of `numeric_closeness`.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericParams {
    /// The column holding the reference number (a JSON number or a string that parses as one).
    pub column: String,
    /// How far off an answer may be and still get the full reward (absolute, ≥ 0).
    pub tolerance: f64,
    /// How far beyond the tolerance the reward falls to 0; `None`: max(1, |reference|).
    pub scale: Option<f64>,
}

/// 1 when the completion equals the reference answer (both trimmed of surrounding
/// whitespace, optionally case-folded), else 0.
pub fn exact_match(_prompt: &str, completion: &str, row: &Map<String, Value>, p: &AnswerParams) -> f64 {
    let Some(reference) = reference_text(row, &p.column) else { return 0.0 };
    let (completion, reference) = (completion.trim(), reference.trim());
    let equal =
        if p.ignore_case { completion.to_lowercase() == reference.to_lowercase() } else { completion == reference };
    indicator(equal)
}

/// 1 when the completion contains the reference answer (trimmed, optionally case-folded)
/// anywhere, else 0. A blank reference scores 0: it would be contained in everything.
pub fn contains_answer(_prompt: &str, completion: &str, row: &Map<String, Value>, p: &AnswerParams) -> f64 {
    let Some(reference) = reference_text(row, &p.column) else { return 0.0 };
    let reference = reference.trim();
    if reference.is_empty() {
        return 0.0;
    }
    let found = if p.ignore_case {
        completion.to_lowercase().contains(&reference.to_lowercase())
    } else {
        completion.contains(reference)
    };
    indicator(found)
}

/// 1 for a completion of at most `max_chars` characters (trimmed), falling linearly to 0
/// at twice that: `clamp(1 − (n − max) / max, 0, 1)`. Reads no column.
pub fn length_penalty(_prompt: &str, completion: &str, _row: &Map<String, Value>, p: &LengthParams) -> f64 {
    let n = completion.trim().chars().count();
    if n <= p.max_chars {
        return 1.0;
    }
    let max = p.max_chars as f64;
    (1.0 - (n as f64 - max) / max).max(0.0)
}

/// Whether the completion (trimmed) is one JSON value. Without required keys: 1 or 0.
/// With them: 0 for invalid JSON, else 0.5 plus 0.5 × the fraction of the keys that the
/// top-level object has (a valid non-object gets 0.5). Nesting deeper than serde_json's
/// limit (128) is invalid, never a stack overflow. Reads no column.
pub fn valid_json(_prompt: &str, completion: &str, _row: &Map<String, Value>, p: &JsonParams) -> f64 {
    let Ok(value) = serde_json::from_str::<Value>(completion.trim()) else { return 0.0 };
    if p.required_keys.is_empty() {
        return 1.0;
    }
    let present = match &value {
        Value::Object(object) => p.required_keys.iter().filter(|k| object.contains_key(k.as_str())).count(),
        _ => 0,
    };
    0.5 + 0.5 * present as f64 / p.required_keys.len() as f64
}

/// 1 when the whole completion (trimmed) matches the pattern, else 0. Reads no column.
/// Matching is linear in the completion's length (the `regex` crate has no backtracking).
pub fn regex_format(_prompt: &str, completion: &str, _row: &Map<String, Value>, p: &RegexParams) -> f64 {
    indicator(p.full.is_match(completion.trim()))
}

/// How close the last number in the completion is to the reference number: 1 within
/// `tolerance`, then falling linearly to 0 at `tolerance + scale` beyond it; 0 when the
/// completion has no (finite) number. Numbers are read as `-?digits[.digits][e±digits]`.
pub fn numeric_closeness(_prompt: &str, completion: &str, row: &Map<String, Value>, p: &NumericParams) -> f64 {
    let Some(reference) = row.get(&p.column).and_then(reference_number) else { return 0.0 };
    let Some(answer) = last_number(completion) else { return 0.0 };
    let distance = (answer - reference).abs();
    if distance <= p.tolerance {
        return 1.0;
    }
    let scale = p.scale.unwrap_or(reference.abs().max(1.0));
    (1.0 - (distance - p.tolerance) / scale).clamp(0.0, 1.0)
}

/// Compiles a task's pattern for a full match, within the size and nesting limits.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!("{} bytes; a pattern may have at most {MAX_PATTERN_BYTES}", pattern.len()));
    }
    let build = |source: &str| {
        RegexBuilder::new(source)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .nest_limit(PATTERN_NEST_LIMIT)
            .build()
            .map_err(|e| e.to_string())
    };
    // Compiled alone first: a valid pattern has balanced groups, so wrapping it cannot
    // escape the anchors (as `a)|(b` would).
    build(pattern)?;
    build(&format!(r"\A(?:{pattern})\z"))
}

/// A reference answer as text: a string as it is, a number as its JSON text.
pub(crate) fn reference_text<'a>(row: &'a Map<String, Value>, column: &str) -> Option<Cow<'a, str>> {
    match row.get(column)? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// A reference number: a JSON number, or a string that parses as a finite one.
pub(crate) fn reference_number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// The last number written in `text`, if it is finite.
fn last_number(text: &str) -> Option<f64> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?").expect("the number pattern is valid")
    });
    let n: f64 = NUMBER.find_iter(text).last()?.as_str().parse().ok()?;
    n.is_finite().then_some(n)
}

/// 1 for true, 0 for false.
fn indicator(yes: bool) -> f64 {
    if yes {
        1.0
    } else {
        0.0
    }
}
