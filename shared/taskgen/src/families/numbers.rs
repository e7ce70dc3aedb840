//! Families about numbers: arithmetic, comparison, parity and Roman numerals.

use super::{phrasing, Example, Family};
use crate::words::{below, between, coin, Rng};
use crate::Knowledge;

const ARITHMETIC_INSTRUCTIONS: &[&str] =
    &["Work out the result.", "Calculate the answer to this sum.", "Give the result of the calculation."];

pub(super) const ARITHMETIC: Family = Family {
    name: "arithmetic",
    description: "Add or subtract two whole numbers below 100 (\"37 + 45\" -> \"82\").",
    knowledge: Knowledge::HalfKnown,
    instructions: ARITHMETIC_INSTRUCTIONS,
    // 100 * 100 sums plus 5050 differences that are not negative.
    max_rows: Some((100 * 100 + 5050) * ARITHMETIC_INSTRUCTIONS.len()),
    sample: arithmetic,
};

fn arithmetic(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, ARITHMETIC_INSTRUCTIONS);
    let (a, b) = (below(rng, 100), below(rng, 100));
    let (input, answer, other_operation) = if coin(rng) {
        (format!("{a} + {b}"), a + b, a.abs_diff(b))
    } else {
        // The larger first, so answers stay natural numbers like everything else here.
        let (a, b) = (a.max(b), a.min(b));
        (format!("{a} - {b}"), a - b, a + b)
    };
    // Off-by-one, off-by-ten and the wrong operation are the mistakes people make.
    let mut wrong = vec![answer + 1, answer + 10, other_operation];
    if answer > 0 {
        wrong.push(answer - 1);
    }
    Example { instruction, input, output: answer.to_string(), wrong: wrong.iter().map(u32::to_string).collect() }
}

const COMPARE_INSTRUCTIONS: &[&str] =
    &["Which of the two numbers is larger?", "Give the bigger of the two numbers.", "Name the larger number."];

pub(super) const COMPARE_NUMBERS: Family = Family {
    name: "compare-numbers",
    description: "Say which of two different numbers below 1000 is larger (\"52, 17\" -> \"52\").",
    knowledge: Knowledge::HalfKnown,
    instructions: COMPARE_INSTRUCTIONS,
    max_rows: None,
    sample: compare_numbers,
};

fn compare_numbers(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, COMPARE_INSTRUCTIONS);
    let a = below(rng, 1000);
    // Drawn from the 999 others so the two always differ without a retry loop.
    let b = (a + between(rng, 1, 999)) % 1000;
    let (larger, smaller) = (a.max(b), a.min(b));
    Example {
        instruction,
        input: format!("{a}, {b}"),
        output: larger.to_string(),
        wrong: vec![smaller.to_string(), format!("{a}, {b}")],
    }
}

const PARITY_INSTRUCTIONS: &[&str] =
    &["Is the number even or odd?", "Say whether the number is even or odd.", "Answer with one word: even or odd?"];

pub(super) const PARITY: Family = Family {
    name: "parity",
    description: "Say whether a number below 10000 is even or odd (\"37\" -> \"odd\").",
    knowledge: Knowledge::HalfKnown,
    instructions: PARITY_INSTRUCTIONS,
    max_rows: Some(10_000 * PARITY_INSTRUCTIONS.len()),
    sample: parity,
};

fn parity(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, PARITY_INSTRUCTIONS);
    let n = below(rng, 10_000);
    let (right, wrong) = if n.is_multiple_of(2) { ("even", "odd") } else { ("odd", "even") };
    Example { instruction, input: n.to_string(), output: right.to_owned(), wrong: vec![wrong.to_owned()] }
}

const ROMAN_INSTRUCTIONS: &[&str] = &[
    "Write the number in Roman numerals.",
    "Convert the number to a Roman numeral.",
    "Give the Roman numeral for this number.",
];

/// The largest number the Roman numeral family asks about.
const ROMAN_MAX: u32 = 100;

pub(super) const ROMAN_NUMERALS: Family = Family {
    name: "roman-numerals",
    description: "Write a number from 1 to 100 in Roman numerals (\"14\" -> \"XIV\").",
    knowledge: Knowledge::New,
    instructions: ROMAN_INSTRUCTIONS,
    max_rows: Some(ROMAN_MAX as usize * ROMAN_INSTRUCTIONS.len()),
    sample: roman_numerals,
};

fn roman_numerals(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, ROMAN_INSTRUCTIONS);
    let n = between(rng, 1, ROMAN_MAX);
    let mut wrong = vec![roman(n + 1), additive_roman(n)];
    if n > 1 {
        wrong.push(roman(n - 1));
    }
    Example { instruction, input: n.to_string(), output: roman(n), wrong }
}

/// Standard (subtractive) Roman numerals, for 1 to 3999.
pub(crate) fn roman(mut n: u32) -> String {
    const SYMBOLS: [(u32, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut out = String::new();
    for (value, symbol) in SYMBOLS {
        while n >= value {
            out.push_str(symbol);
            n -= value;
        }
    }
    out
}

/// The naive additive form ("IIII" for 4), a classic mistake; equals [`roman`] for
/// numbers without a subtractive pair, and then the caller's other candidates are used.
fn additive_roman(n: u32) -> String {
    roman(n).replace("XC", "LXXXX").replace("XL", "XXXX").replace("IX", "VIIII").replace("IV", "IIII")
}

/// The value of a Roman numeral, for checking answers; `None` if it is not well formed.
#[cfg(test)]
pub(crate) fn from_roman(text: &str) -> Option<u32> {
    let value = |c| match c {
        'I' => Some(1),
        'V' => Some(5),
        'X' => Some(10),
        'L' => Some(50),
        'C' => Some(100),
        'D' => Some(500),
        'M' => Some(1000),
        _ => None,
    };
    let values: Vec<u32> = text.chars().map(value).collect::<Option<_>>()?;
    let mut total = 0;
    for (i, &v) in values.iter().enumerate() {
        if values.get(i + 1).is_some_and(|&next| next > v) {
            total -= v as i64;
        } else {
            total += v as i64;
        }
    }
    // Only the canonical spelling counts, so "IIII" or "VX" are not accepted as 4 or 5.
    let total = u32::try_from(total).ok()?;
    (total > 0 && roman(total) == text).then_some(total)
}
