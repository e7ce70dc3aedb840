//! A task's reward specs (name, weight, parameters as text) and the validated set they
//! become: typed parameters, the columns they read, and the weighted score.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ColumnError, SpecError};
use crate::functions::{
    self, compile_pattern, reference_number, AnswerParams, JsonParams, LengthParams, NumericParams, RegexParams,
};

/// Every reward function a task may name.
pub const FUNCTIONS: [&str; 6] =
    ["exact_match", "contains_answer", "length_penalty", "valid_json", "regex_format", "numeric_closeness"];
/// The most reward functions one task may name.
pub const MAX_FUNCTIONS: usize = 16;
/// The longest completion scored, in bytes; a longer one gets 0 from every function (no
/// model of ours writes that much, and it bounds the work a hostile completion can cause).
pub const MAX_COMPLETION_BYTES: usize = 64 * 1024;
/// The column read for the reference answer when a function is given no `column`.
pub const DEFAULT_COLUMN: &str = "answer";
/// `length_penalty`'s `max_chars` when none is given.
pub const DEFAULT_MAX_CHARS: usize = 256;
/// The most keys `valid_json`'s `required_keys` may list.
const MAX_REQUIRED_KEYS: usize = 32;
/// The longest column name or required key, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// One reward function as a task names it: the wire's and the store's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    /// One of [`FUNCTIONS`].
    pub name: String,
    /// Its share of the score (finite, > 0); 1 when absent.
    #[serde(default = "one")]
    pub weight: f64,
    /// Its parameters as text, e.g. `column`, `pattern`, `tolerance`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// The weight a spec has when none is given.
fn one() -> f64 {
    1.0
}

impl RewardSpec {
    /// A function with weight 1 and no parameters (how the old name-only field is read).
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), weight: 1.0, params: BTreeMap::new() }
    }

    /// The same spec with another weight.
    pub fn weighted(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// The same spec with one more parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }
}

/// One reward function with its parameters checked and typed.
#[derive(Debug, Clone)]
pub enum Reward {
    /// See [`functions::exact_match`].
    ExactMatch(AnswerParams),
    /// See [`functions::contains_answer`].
    ContainsAnswer(AnswerParams),
    /// See [`functions::length_penalty`].
    LengthPenalty(LengthParams),
    /// See [`functions::valid_json`].
    ValidJson(JsonParams),
    /// See [`functions::regex_format`].
    RegexFormat(RegexParams),
    /// See [`functions::numeric_closeness`].
    NumericCloseness(NumericParams),
}

impl Reward {
    /// Checks a spec's name and parameters (not its weight).
    pub fn parse(spec: &RewardSpec) -> Result<Reward, SpecError> {
        let mut p = Params { function: &spec.name, given: &spec.params, known: &[] };
        let reward = match spec.name.as_str() {
            "exact_match" | "contains_answer" => {
                p.known = &["column", "ignore_case"];
                let params = AnswerParams { column: p.column()?, ignore_case: p.flag("ignore_case")? };
                if spec.name == "exact_match" {
                    Reward::ExactMatch(params)
                } else {
                    Reward::ContainsAnswer(params)
                }
            }
            "length_penalty" => {
                p.known = &["max_chars"];
                let max_chars = match p.get("max_chars") {
                    None => DEFAULT_MAX_CHARS,
                    Some(v) => v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_COMPLETION_BYTES).contains(n))
                        .ok_or_else(|| {
                            p.bad("max_chars", v, format!("must be a whole number from 1 to {MAX_COMPLETION_BYTES}"))
                        })?,
                };
                Reward::LengthPenalty(LengthParams { max_chars })
            }
            "valid_json" => {
                p.known = &["required_keys"];
                let required_keys = match p.get("required_keys") {
                    None => Vec::new(),
                    Some(v) => {
                        let keys: Vec<String> = v.split(',').map(|k| k.trim().to_owned()).collect();
                        if keys.iter().any(|k| k.is_empty() || k.len() > MAX_NAME_BYTES)
                            || keys.len() > MAX_REQUIRED_KEYS
                        {
                            return Err(p.bad(
                                "required_keys",
                                v,
                                format!("must be 1 to {MAX_REQUIRED_KEYS} comma-separated non-empty keys"),
                            ));
                        }
                        keys
                    }
                };
                Reward::ValidJson(JsonParams { required_keys })
            }
            "regex_format" => {
                p.known = &["pattern"];
                let pattern = p.get("pattern").ok_or_else(|| p.missing("pattern"))?;
                let full = compile_pattern(pattern).map_err(|reason| p.bad("pattern", pattern, reason))?;
                Reward::RegexFormat(RegexParams { pattern: pattern.to_owned(), full })
            }
            "numeric_closeness" => {
                p.known = &["column", "tolerance", "scale"];
                let column = p.column()?;
                let tolerance = p.number("tolerance", |x| x >= 0.0, "must be a finite number ≥ 0")?.unwrap_or(0.0);
                let scale = p.number("scale", |x| x > 0.0, "must be a finite number > 0")?;
                Reward::NumericCloseness(NumericParams { column, tolerance, scale })
            }
            _ => return Err(SpecError::UnknownFunction { name: spec.name.clone() }),
        };
        p.no_others()?;
        Ok(reward)
    }

    /// The function's name, one of [`FUNCTIONS`].
    pub fn name(&self) -> &'static str {
        match self {
            Reward::ExactMatch(_) => "exact_match",
            Reward::ContainsAnswer(_) => "contains_answer",
            Reward::LengthPenalty(_) => "length_penalty",
            Reward::ValidJson(_) => "valid_json",
            Reward::RegexFormat(_) => "regex_format",
            Reward::NumericCloseness(_) => "numeric_closeness",
        }
    }

    /// The row column the function reads, if any.
    pub fn column(&self) -> Option<&str> {
        match self {
            Reward::ExactMatch(p) | Reward::ContainsAnswer(p) => Some(&p.column),
            Reward::NumericCloseness(p) => Some(&p.column),
            Reward::LengthPenalty(_) | Reward::ValidJson(_) | Reward::RegexFormat(_) => None,
        }
    }

    /// Whether `row` has what the function reads: a non-blank string or a number for an
    /// answer, a number (or a string that parses as a finite one) for `numeric_closeness`.
    pub fn check_row(&self, row: &Map<String, Value>) -> Result<(), ColumnError> {
        let Some(column) = self.column() else { return Ok(()) };
        let function = self.name();
        let Some(value) = row.get(column) else {
            return Err(ColumnError::Missing { function, column: column.to_owned() });
        };
        let (ok, expected) = match self {
            Reward::NumericCloseness(_) => {
                (reference_number(value).is_some(), "a finite number or a string holding one")
            }
            _ => (
                matches!(value, Value::Number(_)) || value.as_str().is_some_and(|s| !s.trim().is_empty()),
                "a non-blank string or a number",
            ),
        };
        if ok {
            return Ok(());
        }
        Err(ColumnError::WrongType { function, column: column.to_owned(), expected, found: describe(value) })
    }

    /// The reward in [0, 1] for an already decoded and capped completion.
    pub fn score(&self, prompt: &str, completion: &str, row: &Map<String, Value>) -> f64 {
        match self {
            Reward::ExactMatch(p) => functions::exact_match(prompt, completion, row, p),
            Reward::ContainsAnswer(p) => functions::contains_answer(prompt, completion, row, p),
            Reward::LengthPenalty(p) => functions::length_penalty(prompt, completion, row, p),
            Reward::ValidJson(p) => functions::valid_json(prompt, completion, row, p),
            Reward::RegexFormat(p) => functions::regex_format(prompt, completion, row, p),
            Reward::NumericCloseness(p) => functions::numeric_closeness(prompt, completion, row, p),
        }
    }
}

/// A task's validated reward functions with their weights.
#[derive(Debug, Clone)]
pub struct RewardSet {
    /// The specs as given (for storing and forwarding).
    specs: Vec<RewardSpec>,
    /// Each function with its weight, in the specs' order.
    rewards: Vec<(Reward, f64)>,
    /// The sum of the weights.
    total_weight: f64,
}

impl RewardSet {
    /// Checks every spec: a known name, a finite positive weight, known and usable
    /// parameters; 1 to [`MAX_FUNCTIONS`] of them. The same function may appear twice
    /// (two patterns, say).
    pub fn new(specs: Vec<RewardSpec>) -> Result<Self, SpecError> {
        if specs.is_empty() {
            return Err(SpecError::Empty);
        }
        if specs.len() > MAX_FUNCTIONS {
            return Err(SpecError::TooMany { count: specs.len(), max: MAX_FUNCTIONS });
        }
        let mut rewards = Vec::with_capacity(specs.len());
        for spec in &specs {
            let reward = Reward::parse(spec)?;
            if !(spec.weight.is_finite() && spec.weight > 0.0) {
                return Err(SpecError::BadWeight { function: spec.name.clone(), weight: spec.weight });
            }
            rewards.push((reward, spec.weight));
        }
        let total_weight = rewards.iter().map(|(_, w)| w).sum::<f64>();
        if !total_weight.is_finite() {
            let last = &specs[specs.len() - 1];
            return Err(SpecError::BadWeight { function: last.name.clone(), weight: last.weight });
        }
        Ok(Self { specs, rewards, total_weight })
    }

    /// The specs as given.
    pub fn specs(&self) -> &[RewardSpec] {
        &self.specs
    }

    /// The functions and their weights.
    pub fn rewards(&self) -> &[(Reward, f64)] {
        &self.rewards
    }

    /// The columns every row must have (sorted, each once).
    pub fn required_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.rewards.iter().filter_map(|(r, _)| r.column()).map(str::to_owned).collect();
        columns.sort();
        columns.dedup();
        columns
    }

    /// Whether one row has every column the functions read, usable as they read it.
    pub fn check_row(&self, row: &Map<String, Value>) -> Result<(), ColumnError> {
        self.rewards.iter().try_for_each(|(r, _)| r.check_row(row))
    }

    /// The weighted mean of the functions' rewards, Σ wᵢ·rᵢ / Σ wᵢ, in [0, 1].
    ///
    /// The completion is bytes because a model's output may not be UTF-8: it is decoded
    /// lossily (U+FFFD for each invalid sequence) before any function sees it. A
    /// completion over [`MAX_COMPLETION_BYTES`] scores 0.
    pub fn score(&self, prompt: &str, completion: &[u8], row: &Map<String, Value>) -> f64 {
        let weighted: f64 =
            self.score_each(prompt, completion, row).iter().zip(&self.rewards).map(|(r, (_, w))| r * w).sum();
        (weighted / self.total_weight).clamp(0.0, 1.0)
    }

    /// Each function's reward in [0, 1], in the specs' order (for logs and reports).
    pub fn score_each(&self, prompt: &str, completion: &[u8], row: &Map<String, Value>) -> Vec<f64> {
        if completion.len() > MAX_COMPLETION_BYTES {
            return vec![0.0; self.rewards.len()];
        }
        let completion = String::from_utf8_lossy(completion);
        self.rewards.iter().map(|(r, _)| r.score(prompt, &completion, row)).collect()
    }
}

/// Reads a spec's text parameters, remembering which ones the function knows.
struct Params<'a> {
    /// The function's name, for errors.
    function: &'a str,
    /// The parameters as given.
    given: &'a BTreeMap<String, String>,
    /// The parameters the function reads.
    known: &'static [&'static str],
}

impl Params<'_> {
    /// A parameter's text, if given.
    fn get(&self, key: &str) -> Option<&str> {
        self.given.get(key).map(String::as_str)
    }

    /// The `column` parameter, [`DEFAULT_COLUMN`] when absent.
    fn column(&self) -> Result<String, SpecError> {
        match self.get("column") {
            None => Ok(DEFAULT_COLUMN.to_owned()),
            Some(c) if !c.trim().is_empty() && c.len() <= MAX_NAME_BYTES => Ok(c.to_owned()),
            Some(c) => {
                Err(self.bad("column", c, format!("must be a non-blank column name of at most {MAX_NAME_BYTES} bytes")))
            }
        }
    }

    /// A `true`/`false` parameter, false when absent.
    fn flag(&self, key: &str) -> Result<bool, SpecError> {
        match self.get(key).map(str::trim) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(self.bad(key, v, "must be true or false".to_owned())),
        }
    }

    /// A finite number parameter satisfying `ok`, if given.
    fn number(&self, key: &str, ok: fn(f64) -> bool, rule: &str) -> Result<Option<f64>, SpecError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && ok(x) => Ok(Some(x)),
            _ => Err(self.bad(key, v, rule.to_owned())),
        }
    }

    /// Refuses any parameter the function does not read.
    fn no_others(&self) -> Result<(), SpecError> {
        match self.given.keys().find(|k| !self.known.contains(&k.as_str())) {
            None => Ok(()),
            Some(param) => Err(SpecError::UnknownParam {
                function: self.function.to_owned(),
                param: param.clone(),
                known: if self.known.is_empty() { "nothing".to_owned() } else { self.known.join(", ") },
            }),
        }
    }

    /// A [`SpecError::BadParam`] for this function.
    fn bad(&self, param: &str, value: &str, reason: String) -> SpecError {
        // A huge value is shortened so the error stays readable.
        let value: String = value.chars().take(80).collect();
        SpecError::BadParam { function: self.function.to_owned(), param: param.to_owned(), value, reason }
    }

    /// A [`SpecError::MissingParam`] for this function.
    fn missing(&self, param: &str) -> SpecError {
        SpecError::MissingParam { function: self.function.to_owned(), param: param.to_owned() }
    }
}

/// A JSON value's type for an error message.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::String(s) if s.trim().is_empty() => "a blank string".to_owned(),
        Value::String(_) => "a string that is not a number".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
