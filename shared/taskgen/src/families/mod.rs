//! The task families: what a family is, and the registry of all of them.
//!
//! Each family is a function drawing one example from a seeded generator; the generic
//! machinery in `generate.rs` turns examples into unique rows, and `grpo.rs` names the
//! reward functions each family's GRPO rows are scored by. Families live in a few
//! files by theme: numbers, letters and words, formats, and the fictional lookup table.

mod formats;
mod grpo;
mod lookup;
mod numbers;
mod text;

use crate::words::Rng;
use crate::Knowledge;

#[cfg(test)]
pub(crate) use formats::days_in_month;
#[cfg(test)]
pub(crate) use lookup::CAPITALS;
#[cfg(test)]
pub(crate) use numbers::{from_roman, roman};

/// A task family: a kind of question with short answers determined by the prompt.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Stable kebab-case name, used for folder names and on the command line.
    pub name: &'static str,
    /// One line saying what the rows ask.
    pub description: &'static str,
    /// Whether the pretraining corpus already demonstrates it.
    pub knowledge: Knowledge,
    /// Every instruction text its rows may carry.
    instructions: &'static [&'static str],
    /// How many distinct rows it can make, when that is small enough to matter.
    max_rows: Option<usize>,
    /// Draws one example.
    sample: fn(&mut Rng) -> Example,
}

impl Family {
    /// Every instruction text its rows may carry (a few phrasings of the same request).
    pub fn instructions(&self) -> &'static [&'static str] {
        self.instructions
    }

    /// The most distinct rows it can make, for families small enough to run out;
    /// `None` means far more than any benchmark asks for.
    pub fn max_rows(&self) -> Option<usize> {
        self.max_rows
    }

    /// The same family claiming no size, to test how generation notices it running dry.
    #[cfg(test)]
    pub(crate) fn without_max_rows(&self) -> Family {
        Family { max_rows: None, ..*self }
    }

    /// One example drawn from `rng`.
    pub(crate) fn sample(&self, rng: &mut Rng) -> Example {
        (self.sample)(rng)
    }
}

/// One question and its answers, before it becomes a row.
#[derive(Debug, Clone)]
pub(crate) struct Example {
    /// One of the family's instructions.
    pub instruction: &'static str,
    /// The item to work on.
    pub input: String,
    /// The one right answer.
    pub output: String,
    /// Plausible wrong answers; those equal to the output are ignored, and at least one
    /// must differ from it.
    pub wrong: Vec<String>,
}

/// Picks one of a family's instructions, so rows vary in wording.
pub(crate) fn phrasing(rng: &mut Rng, instructions: &'static [&'static str]) -> &'static str {
    crate::words::pick(rng, instructions)
}

/// All families; names are unique and, once published, never change meaning because
/// benchmarks record them.
pub(crate) static FAMILIES: [Family; 13] = [
    numbers::ARITHMETIC,
    text::REVERSE_WORD,
    text::UPPERCASE,
    numbers::COMPARE_NUMBERS,
    numbers::PARITY,
    text::SORT_LETTERS,
    text::COUNT_VOWELS,
    text::CAESAR_SHIFT,
    numbers::ROMAN_NUMERALS,
    formats::DATE_ISO,
    formats::KEY_VALUE_JSON,
    lookup::CAPITAL_LOOKUP,
    formats::RECORD_JSON,
];
