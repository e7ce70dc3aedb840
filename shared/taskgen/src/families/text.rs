//! Families about letters and words: reversing, upper-casing, sorting, counting vowels
//! and shifting letters.

use super::{phrasing, Example, Family};
use crate::words::{between, coin, task_word, Rng};
use crate::Knowledge;

const REVERSE_INSTRUCTIONS: &[&str] = &[
    "Reverse the letters of the word.",
    "Spell the word from its last letter to its first.",
    "Write this word in reverse order.",
];

pub(super) const REVERSE_WORD: Family = Family {
    name: "reverse-word",
    description: "Spell a word backwards (\"stone\" -> \"enots\").",
    knowledge: Knowledge::HalfKnown,
    instructions: REVERSE_INSTRUCTIONS,
    max_rows: None,
    sample: reverse_word,
};

fn reverse_word(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, REVERSE_INSTRUCTIONS);
    let word = task_word(rng);
    let reversed: String = word.chars().rev().collect();
    // Half-done reversals: only the end turned around, or the last letter lost.
    let (first, rest) = word.split_at(1);
    let wrong = vec![
        word.clone(),
        format!("{first}{}", rest.chars().rev().collect::<String>()),
        reversed[..reversed.len() - 1].to_owned(),
    ];
    Example { instruction, input: word, output: reversed, wrong }
}

const UPPERCASE_INSTRUCTIONS: &[&str] =
    &["Rewrite the text in uppercase letters.", "Convert the text to upper case.", "Write the text in all caps."];

pub(super) const UPPERCASE: Family = Family {
    name: "uppercase",
    description: "Write one to three words in upper case (\"red fox\" -> \"RED FOX\").",
    knowledge: Knowledge::HalfKnown,
    instructions: UPPERCASE_INSTRUCTIONS,
    max_rows: None,
    sample: uppercase,
};

fn uppercase(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, UPPERCASE_INSTRUCTIONS);
    let count = between(rng, 1, 3);
    let mut text = task_word(rng);
    for _ in 1..count {
        let word = task_word(rng);
        // Answers stay within the short lengths tiny models can produce.
        if text.len() + 1 + word.len() <= 24 {
            text = format!("{text} {word}");
        }
    }
    let upper = text.to_ascii_uppercase();
    let (first, rest) = text.split_at(1);
    let (first_word, rest_words) = upper.split_once(' ').unwrap_or((&upper, ""));
    let mut wrong = vec![text.clone(), format!("{}{rest}", first.to_ascii_uppercase())];
    if !rest_words.is_empty() {
        wrong.push(format!("{first_word} {}", rest_words.to_ascii_lowercase()));
    }
    Example { instruction, input: text, output: upper, wrong }
}

const SORT_INSTRUCTIONS: &[&str] = &[
    "Sort the letters of the word alphabetically.",
    "Put the letters of the word in alphabetical order.",
    "Rearrange the letters of the word from a to z.",
];

pub(super) const SORT_LETTERS: Family = Family {
    name: "sort-letters",
    description: "Sort the letters of a word alphabetically (\"stone\" -> \"enost\").",
    knowledge: Knowledge::New,
    instructions: SORT_INSTRUCTIONS,
    max_rows: None,
    sample: sort_letters,
};

fn sort_letters(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, SORT_INSTRUCTIONS);
    let word = task_word(rng);
    let mut letters: Vec<char> = word.chars().collect();
    letters.sort_unstable();
    let sorted: String = letters.iter().collect();
    let backwards: String = letters.iter().rev().collect();
    let wrong = vec![backwards, word.clone(), sorted[..sorted.len() - 1].to_owned()];
    Example { instruction, input: word, output: sorted, wrong }
}

const VOWEL_INSTRUCTIONS: &[&str] = &[
    "How many vowels are in the text?",
    "Count the vowels (a, e, i, o, u) in the text.",
    "Give the number of vowels in this text.",
];

pub(super) const COUNT_VOWELS: Family = Family {
    name: "count-vowels",
    description: "Count the vowels a, e, i, o, u in one or two words (\"red fox\" -> \"2\").",
    knowledge: Knowledge::New,
    instructions: VOWEL_INSTRUCTIONS,
    max_rows: None,
    sample: count_vowels,
};

fn count_vowels(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, VOWEL_INSTRUCTIONS);
    let mut text = task_word(rng);
    if coin(rng) {
        text = format!("{text} {}", task_word(rng));
    }
    let vowels = text.chars().filter(|c| "aeiou".contains(*c)).count();
    let letters = text.chars().filter(char::is_ascii_alphabetic).count();
    // Counting every letter, or being one out, are the usual slips.
    let mut wrong = vec![(vowels + 1).to_string(), letters.to_string()];
    if vowels > 0 {
        wrong.push((vowels - 1).to_string());
    }
    Example { instruction, input: text, output: vowels.to_string(), wrong }
}

const CAESAR_INSTRUCTIONS: &[&str] = &[
    "Shift each letter one step forward in the alphabet (z becomes a).",
    "Replace every letter with the one after it in the alphabet.",
    "Apply a Caesar shift of one to the word.",
];

pub(super) const CAESAR_SHIFT: Family = Family {
    name: "caesar-shift",
    description: "Move every letter of a word one place on in the alphabet (\"cat\" -> \"dbu\").",
    knowledge: Knowledge::New,
    instructions: CAESAR_INSTRUCTIONS,
    max_rows: None,
    sample: caesar_shift,
};

fn caesar_shift(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, CAESAR_INSTRUCTIONS);
    let word = task_word(rng);
    // Shifting the wrong way or too far; neither can match a shift by one.
    let wrong = vec![shift(&word, 25), shift(&word, 2), word.clone()];
    Example { instruction, output: shift(&word, 1), input: word, wrong }
}

/// Moves each lower-case letter `by` places on, wrapping after z.
pub(crate) fn shift(word: &str, by: u8) -> String {
    word.bytes().map(|b| char::from(b'a' + (b - b'a' + by) % 26)).collect()
}
