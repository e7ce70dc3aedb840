//! The pretraining corpus: exact length, determinism, the half-known families shown
//! correctly, and nothing of the new ones.

use std::collections::HashSet;

use crate::families::{roman, CAPITALS};
use crate::{corpus, families, Knowledge};

/// A corpus big enough that every kind of line appears many times.
fn sample() -> String {
    corpus(7, 300_000)
}

#[test]
fn exact_length_ascii_and_deterministic() {
    for bytes in [0, 1, 17, 4096, 100_003] {
        let text = corpus(3, bytes);
        assert_eq!(text.len(), bytes);
        assert!(text.is_ascii());
        assert_eq!(text, corpus(3, bytes));
    }
    assert_ne!(corpus(3, 4096), corpus(4, 4096));
    // A longer corpus only adds text, so a benchmark can grow it without changing the start.
    assert!(corpus(3, 100_003).starts_with(&corpus(3, 4096)));
}

#[test]
fn demonstrates_every_half_known_family_correctly() {
    let text = sample();
    let lines: Vec<&str> = text.lines().collect();
    let has = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    let half_known: Vec<_> =
        families().iter().filter(|f| f.knowledge == Knowledge::HalfKnown).map(|f| f.name).collect();
    // A marker per half-known family; a new half-known family must add its own here.
    for name in &half_known {
        let markers: &[&str] = match *name {
            "arithmetic" => &[" plus ", " minus ", " + ", " - "],
            "reverse-word" => &["the reverse of ", " read backwards is "],
            "uppercase" => &["in big letters, ", "shout "],
            "compare-numbers" => &[" is more than ", "the bigger one is "],
            "parity" => &[" is an even number.", " is an odd number.", " is even.", " is odd."],
            other => panic!("no corpus marker for half-known family {other}"),
        };
        for marker in markers {
            assert!(has(marker) >= 20, "{name}: only {} lines with {marker:?}", has(marker));
        }
    }

    for line in &lines[..lines.len() - 1] {
        if let Some((sum, result)) = line.split_once(" = ") {
            let (a, op, b) = three(sum);
            let value = if op == "+" { a + b } else { a - b };
            assert_eq!(result.parse::<i64>().unwrap(), value, "{line}");
        }
        if let Some(rest) = line.strip_prefix("the reverse of ") {
            let (word, reversed) = rest.trim_end_matches('.').split_once(" is ").unwrap();
            assert_eq!(reversed, word.chars().rev().collect::<String>(), "{line}");
        }
        if let Some(rest) = line.strip_prefix("in big letters, ") {
            let (plain, loud) = rest.trim_end_matches('.').split_once(" is ").unwrap();
            assert_eq!(loud, plain.to_uppercase(), "{line}");
        }
        if let Some((n, kind)) = line.strip_suffix(" number.").and_then(|l| l.split_once(" is an ")) {
            let n: u32 = n.parse().unwrap();
            assert_eq!(kind, if n.is_multiple_of(2) { "even" } else { "odd" }, "{line}");
        }
        if let Some((big, small)) = line.strip_suffix('.').and_then(|l| l.split_once(" is more than ")) {
            if let (Ok(big), Ok(small)) = (big.parse::<u32>(), small.parse::<u32>()) {
                assert!(big > small, "{line}");
            }
        }
    }
}

fn three(sum: &str) -> (i64, &str, i64) {
    let parts: Vec<&str> = sum.split(' ').collect();
    let [a, op, b] = parts[..] else { panic!("not a sum: {sum:?}") };
    (a.parse().unwrap(), op, b.parse().unwrap())
}

#[test]
fn has_nothing_of_the_new_families() {
    let text = sample();
    let lower = text.to_lowercase();
    // The made-up table, in any case.
    for (country, capital) in CAPITALS {
        for name in [country, capital] {
            assert!(!lower.contains(&name.to_lowercase()), "corpus mentions {name}");
        }
    }
    // The words the new families' instructions turn on.
    for word in ["capital", "country", "vowel", "sort", "alphabet", "caesar", "shift", "json", "roman", "date", "iso"] {
        assert!(!lower.split(|c: char| !c.is_ascii_alphabetic()).any(|w| w.starts_with(word)), "corpus says {word}");
    }
    // Their notation: d/m/y dates, key=value pairs, JSON objects.
    for c in ['/', ';', '{', '}', '"', ':'] {
        assert!(!text.contains(c), "corpus contains {c:?}");
    }
    // Roman numerals, other than words that happen to be spelt with those letters.
    let numerals: HashSet<String> = (1..=100).map(roman).collect();
    for token in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        assert!(!numerals.contains(token), "corpus contains the numeral {token}");
    }
    // No family's instructions, half-known ones included: the corpus words things its own way.
    for f in families() {
        for instruction in f.instructions() {
            assert!(!lower.contains(&instruction.to_lowercase()), "corpus contains {instruction:?}");
        }
    }
}
