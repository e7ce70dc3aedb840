//! Families about rewriting one format as another: dates and key-value pairs.

use super::{phrasing, Example, Family};
use crate::words::{below, between, pick, Rng};
use crate::Knowledge;

const DATE_INSTRUCTIONS: &[&str] = &[
    "Rewrite the day/month/year date in ISO format.",
    "Convert the date to YYYY-MM-DD.",
    "Give this day/month/year date as year-month-day.",
];

pub(super) const DATE_ISO: Family = Family {
    name: "date-iso",
    description: "Rewrite a day/month/year date from 1950-2049 as ISO (\"14/03/2021\" -> \"2021-03-14\").",
    knowledge: Knowledge::New,
    instructions: DATE_INSTRUCTIONS,
    max_rows: None,
    sample: date_iso,
};

fn date_iso(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, DATE_INSTRUCTIONS);
    let year = between(rng, 1950, 2049);
    let month = between(rng, 1, 12);
    let day = between(rng, 1, days_in_month(year, month));
    // Swapped day and month, no zero padding, the order unchanged, or a slipped year.
    let wrong = vec![
        format!("{year}-{day:02}-{month:02}"),
        format!("{year}-{month}-{day}"),
        format!("{day:02}-{month:02}-{year}"),
        format!("{}-{month:02}-{day:02}", year + 1),
    ];
    Example {
        instruction,
        input: format!("{day:02}/{month:02}/{year}"),
        output: format!("{year}-{month:02}-{day:02}"),
        wrong,
    }
}

/// Days in a month of the Gregorian calendar; only real dates are asked about.
pub(crate) fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const KEY_VALUE_INSTRUCTIONS: &[&str] = &[
    "Convert the key=value pairs to a JSON object.",
    "Write these pairs as compact JSON.",
    "Turn the semicolon-separated pairs into JSON.",
];

pub(super) const KEY_VALUE_JSON: Family = Family {
    name: "key-value-json",
    description: "Rewrite one to three key=value pairs as compact JSON (\"a=1;b=2\" -> {\"a\":1,\"b\":2}).",
    knowledge: Knowledge::New,
    instructions: KEY_VALUE_INSTRUCTIONS,
    max_rows: None,
    sample: key_value_json,
};

fn key_value_json(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, KEY_VALUE_INSTRUCTIONS);
    let count = between(rng, 1, 3);
    let mut pairs: Vec<(char, u32)> = Vec::new();
    while pairs.len() < count as usize {
        let key = char::from(b'a' + below(rng, 26) as u8);
        // JSON objects with repeated keys are ambiguous, so every key is new.
        if pairs.iter().all(|&(k, _)| k != key) {
            pairs.push((key, below(rng, 100)));
        }
    }
    let input = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
    let object = |pairs: &[(char, u32)], entry: &dyn Fn(char, u32) -> String| {
        format!("{{{}}}", pairs.iter().map(|&(k, v)| entry(k, v)).collect::<Vec<_>>().join(","))
    };
    let output = object(&pairs, &|k, v| format!("\"{k}\":{v}"));
    // The last number quoted as a string, bare keys, or a pair dropped.
    let last = pairs[pairs.len() - 1].0;
    let quoted = |k, v| if k == last { format!("\"{k}\":\"{v}\"") } else { format!("\"{k}\":{v}") };
    let mut wrong = vec![object(&pairs, &quoted), object(&pairs, &|k, v| format!("{k}:{v}"))];
    if pairs.len() > 1 {
        wrong.push(object(&pairs[..pairs.len() - 1], &|k, v| format!("\"{k}\":{v}")));
    }
    Example { instruction, input, output, wrong }
}

const RECORD_INSTRUCTIONS: &[&str] = &[
    "Write the person as a JSON object with the keys name and age.",
    "Give this record as compact JSON with name and age.",
    "Turn the name and age into JSON.",
];

/// First names for `record-json`, of three letters so every answer stays short.
const FIRST_NAMES: &[&str] = &[
    "Ann", "Ben", "Dan", "Eva", "Gus", "Ivo", "Kai", "Sam", "Pia", "Ava", "Leo", "Mia", "Max", "Zoe", "Tom", "Ida",
    "Noa", "Eli", "Ray", "Una",
];

pub(super) const RECORD_JSON: Family = Family {
    name: "record-json",
    description:
        "Write a name and an age as JSON with the keys name and age (\"Ann 31\" -> {\"name\":\"Ann\",\"age\":31}).",
    knowledge: Knowledge::New,
    instructions: RECORD_INSTRUCTIONS,
    // Every name with every age from 18 to 90, in each phrasing.
    max_rows: Some(20 * 73 * RECORD_INSTRUCTIONS.len()),
    sample: record_json,
};

fn record_json(rng: &mut Rng) -> Example {
    let instruction = phrasing(rng, RECORD_INSTRUCTIONS);
    let name = pick(rng, FIRST_NAMES);
    let age = between(rng, 18, 90);
    // A slipped age, the name not copied as written, or the age dropped.
    let wrong = vec![
        format!("{{\"name\":\"{name}\",\"age\":{}}}", age + 1),
        format!("{{\"name\":\"{}\",\"age\":{age}}}", name.to_lowercase()),
        format!("{{\"name\":\"{name}\"}}"),
    ];
    Example {
        instruction,
        input: format!("{name} {age}"),
        output: format!("{{\"name\":\"{name}\",\"age\":{age}}}"),
        wrong,
    }
}
