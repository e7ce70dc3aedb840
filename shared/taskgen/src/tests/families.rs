//! The families and their rows: registry, correctness of every answer, uniqueness,
//! determinism, DPO preferences and acceptance by the data crate.

use std::collections::HashSet;

use serde_json::Value;

use super::{jsonl, text, validate};
use crate::families::{from_roman, roman, CAPITALS};
use crate::{families, family, generate, Knowledge, TaskKind, TaskgenError};

/// The right answer to a family's input, worked out independently of the generators.
fn expected(family: &str, input: &str) -> String {
    let number = |s: &str| s.trim().parse::<i64>().unwrap_or_else(|_| panic!("{family}: not a number in {input:?}"));
    match family {
        "arithmetic" => match input.split_once(" + ") {
            Some((a, b)) => (number(a) + number(b)).to_string(),
            None => {
                let (a, b) = input.split_once(" - ").expect("a sum or a difference");
                (number(a) - number(b)).to_string()
            }
        },
        "reverse-word" => input.chars().rev().collect(),
        "uppercase" => input.to_uppercase(),
        "compare-numbers" => {
            let (a, b) = input.split_once(", ").expect("two numbers");
            number(a).max(number(b)).to_string()
        }
        "parity" => if number(input) % 2 == 0 { "even" } else { "odd" }.to_owned(),
        "sort-letters" => {
            let mut letters: Vec<char> = input.chars().collect();
            letters.sort();
            letters.into_iter().collect()
        }
        "count-vowels" => input.chars().filter(|c| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')).count().to_string(),
        "caesar-shift" => {
            const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyza";
            input.chars().map(|c| ALPHABET[ALPHABET.find(c).expect("a letter") + 1..].chars().next().unwrap()).collect()
        }
        "roman-numerals" => roman(u32::try_from(number(input)).expect("positive")),
        "date-iso" => {
            let parts: Vec<&str> = input.split('/').collect();
            let [day, month, year] = parts[..] else { panic!("not d/m/y: {input:?}") };
            let days = crate::families::days_in_month(number(year) as u32, number(month) as u32);
            assert!((1..=days as i64).contains(&number(day)), "no such date {input:?}");
            format!("{year}-{month}-{day}")
        }
        "key-value-json" => {
            let pairs: Vec<String> = input
                .split(';')
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    format!("\"{key}\":{}", number(value))
                })
                .collect();
            format!("{{{}}}", pairs.join(","))
        }
        "capital-lookup" => CAPITALS
            .iter()
            .find_map(|&(country, capital)| match input {
                _ if input == country => Some(capital),
                _ if input == capital => Some(country),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{input:?} is not in the table"))
            .to_owned(),
        "record-json" => {
            let (name, age) = input.split_once(' ').expect("a name and an age");
            format!("{{\"name\":\"{name}\",\"age\":{}}}", number(age))
        }
        other => panic!("no independent check for family {other}; add one"),
    }
}

#[test]
fn registry_has_named_described_families_of_both_kinds() {
    let all = families();
    assert!(all.len() >= 10, "only {} families", all.len());
    let names: HashSet<_> = all.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), all.len(), "family names repeat");
    for f in all {
        assert!(
            f.name.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase())),
            "{} is not kebab-case",
            f.name
        );
        assert!(!f.description.is_empty() && !f.description.contains('\n'), "{}", f.name);
        assert!(!f.instructions().is_empty(), "{}", f.name);
        assert!(std::ptr::eq(family(f.name).expect("found by name"), f));
    }
    let count = |k: Knowledge| all.iter().filter(|f| f.knowledge == k).count();
    assert!(count(Knowledge::HalfKnown) >= 3 && count(Knowledge::New) >= 3);
}

#[test]
fn unknown_family_lists_the_known_ones() {
    let err = family("long-division").expect_err("no such family");
    assert!(matches!(err, TaskgenError::UnknownFamily { ref name, .. } if name == "long-division"));
    let message = err.to_string();
    assert!(message.contains("\"long-division\""), "{message}");
    for f in families() {
        assert!(message.contains(f.name), "{message}");
    }
}

/// Every row of every family: the right answer, a known instruction, short prompt and
/// answer, no repeated question.
#[test]
fn every_answer_is_right_short_and_unique() {
    for f in families() {
        let rows = generate(f, TaskKind::Instruct, 300, 11).expect("300 rows");
        assert_eq!(rows.len(), 300, "{}", f.name);
        let mut questions = HashSet::new();
        for row in &rows {
            let (instruction, input, output) = (text(row, "instruction"), text(row, "input"), text(row, "output"));
            assert_eq!(output, expected(f.name, input), "{}: {row:?}", f.name);
            assert!(f.instructions().contains(&instruction), "{}: {instruction:?}", f.name);
            assert!(instruction.len() + 1 + input.len() <= 80, "{}: prompt too long: {row:?}", f.name);
            assert!(output.len() <= 24, "{}: answer too long: {output:?}", f.name);
            assert!(row.values().all(|v| v.as_str().is_some_and(|s| s.is_ascii())), "{row:?}");
            assert!(questions.insert((instruction, input)), "{}: repeated question {row:?}", f.name);
        }
        // All phrasings get used, so a model cannot key on one wording.
        let used: HashSet<_> = rows.iter().map(|row| text(row, "instruction")).collect();
        assert_eq!(used.len(), f.instructions().len(), "{}", f.name);
    }
}

#[test]
fn roman_numerals_read_back_to_their_number() {
    for (n, numeral) in
        [(1, "I"), (4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (49, "XLIX"), (90, "XC"), (99, "XCIX")]
    {
        assert_eq!(roman(n), numeral);
        assert_eq!(from_roman(numeral), Some(n));
    }
    assert_eq!(from_roman("IIII"), None);
    let rows = generate(family("roman-numerals").unwrap(), TaskKind::Instruct, 300, 3).unwrap();
    for row in &rows {
        assert_eq!(from_roman(text(row, "output")).map(|n| n.to_string()).as_deref(), Some(text(row, "input")));
    }
}

#[test]
fn key_value_answers_are_json_objects_of_the_pairs() {
    let rows = generate(family("key-value-json").unwrap(), TaskKind::Instruct, 200, 5).unwrap();
    for row in &rows {
        let object: serde_json::Map<String, Value> = serde_json::from_str(text(row, "output")).expect("JSON object");
        let pairs: Vec<&str> = text(row, "input").split(';').collect();
        assert_eq!(object.len(), pairs.len(), "{row:?}");
        for pair in pairs {
            let (key, value) = pair.split_once('=').unwrap();
            assert_eq!(object[key], Value::from(value.parse::<u64>().unwrap()), "{row:?}");
        }
    }
}

#[test]
fn same_seed_same_rows_and_another_seed_other_rows() {
    for f in families() {
        for kind in [TaskKind::Instruct, TaskKind::Dpo] {
            let once = jsonl(&generate(f, kind, 120, 42).unwrap());
            assert_eq!(once, jsonl(&generate(f, kind, 120, 42).unwrap()), "{} {kind}", f.name);
            assert_ne!(once, jsonl(&generate(f, kind, 120, 43).unwrap()), "{} {kind}", f.name);
        }
    }
}

/// Pinned rows: a change here changes every benchmark data set, so it must be on purpose.
/// ChaCha8 and the `u32` draws make these the same on every platform.
#[test]
fn output_is_pinned() {
    let values = |f: &str, kind, keys: [&str; 3]| -> Vec<[String; 3]> {
        let rows = generate(family(f).unwrap(), kind, 2, 7).unwrap();
        rows.iter().map(|row| keys.map(|k| text(row, k).to_owned())).collect()
    };
    assert_eq!(
        values("arithmetic", TaskKind::Instruct, ["instruction", "input", "output"]),
        PINNED_ARITHMETIC.map(|row| row.map(str::to_owned))
    );
    assert_eq!(
        values("reverse-word", TaskKind::Dpo, ["prompt", "chosen", "rejected"]),
        PINNED_REVERSE_DPO.map(|row| row.map(str::to_owned))
    );
}

const PINNED_ARITHMETIC: [[&str; 3]; 2] =
    [["Work out the result.", "86 - 78", "8"], ["Give the result of the calculation.", "86 + 55", "141"]];
const PINNED_REVERSE_DPO: [[&str; 3]; 2] = [
    ["Write this word in reverse order.\ngarden", "nedrag", "gnedra"],
    ["Reverse the letters of the word.\nnuba", "abun", "abu"],
];

#[test]
fn dpo_rows_ask_the_instruct_questions_and_reject_a_wrong_answer() {
    for f in families() {
        let instruct = generate(f, TaskKind::Instruct, 300, 9).unwrap();
        let dpo = generate(f, TaskKind::Dpo, 300, 9).unwrap();
        for (i, d) in instruct.iter().zip(&dpo) {
            assert_eq!(text(d, "prompt"), format!("{}\n{}", text(i, "instruction"), text(i, "input")));
            assert_eq!(text(d, "chosen"), text(i, "output"));
            let rejected = text(d, "rejected");
            assert_ne!(rejected.trim(), text(d, "chosen").trim(), "{}: {d:?}", f.name);
            assert_ne!(rejected, crate::generate::FALLBACK_REJECTED, "{}: no wrong answer for {d:?}", f.name);
            assert!(rejected.len() <= 24, "{}: {rejected:?}", f.name);
        }
        // The mistakes vary rather than always being the same kind.
        let kinds: HashSet<_> = dpo.iter().map(|d| text(d, "rejected")).collect();
        assert!(kinds.len() > 1, "{}", f.name);
    }
}

#[test]
fn every_family_passes_the_data_crate_validation() {
    for f in families() {
        for kind in [TaskKind::Instruct, TaskKind::Dpo] {
            let rows = generate(f, kind, 300, 1).unwrap();
            let dataset = validate(kind, jsonl(&rows).as_bytes());
            assert_eq!(dataset.len(), 300, "{} {kind}", f.name);
        }
    }
}

#[test]
fn small_families_make_every_row_and_then_refuse() {
    for f in families() {
        let Some(max) = f.max_rows() else { continue };
        if max <= 20_000 {
            let rows = generate(f, TaskKind::Dpo, max, 2).expect("every distinct row");
            validate(TaskKind::Dpo, jsonl(&rows).as_bytes());
        }
        let err = generate(f, TaskKind::Instruct, max + 1, 2).expect_err("one too many");
        assert!(
            matches!(err, TaskgenError::TooManyRows { family, requested, available }
                if family == f.name && requested == max + 1 && available == max),
            "{err:?}"
        );
    }
    let roman = family("roman-numerals").unwrap();
    let message = generate(roman, TaskKind::Instruct, 1000, 2).unwrap_err().to_string();
    assert!(message.contains("roman-numerals") && message.contains("1000"), "{message}");
}

/// A family without a known size that runs dry gives up after a while and says how many
/// rows it found.
#[test]
fn families_of_unknown_size_that_run_dry_say_how_far_they_got() {
    let roman = family("roman-numerals").unwrap();
    let unbounded = roman.without_max_rows();
    let max = roman.max_rows().unwrap();
    let err = generate(&unbounded, TaskKind::Instruct, max + 1, 4).expect_err("runs dry");
    assert!(matches!(err, TaskgenError::TooManyRows { available, .. } if available == max), "{err:?}");
    assert!(generate(&unbounded, TaskKind::Instruct, 0, 1).unwrap().is_empty());
}

#[test]
fn fictional_table_names_are_unique() {
    let names: HashSet<_> = CAPITALS.iter().flat_map(|&(country, capital)| [country, capital]).collect();
    assert_eq!(names.len(), 2 * CAPITALS.len());
}
