//! Each reward function on hand-written cases, the spec checks, and hostile completions.

use std::time::Instant;

use gradients_reward::{ColumnError, RewardSet, RewardSpec, SpecError, MAX_COMPLETION_BYTES};
use serde_json::{json, Map, Value};

/// A row from a JSON object literal.
fn row(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A set of one spec, which must be valid.
fn one(spec: RewardSpec) -> RewardSet {
    RewardSet::new(vec![spec]).expect("valid spec")
}

/// The reward of one function on a completion.
fn reward(spec: RewardSpec, completion: &str, r: &Map<String, Value>) -> f64 {
    one(spec).score("prompt", completion.as_bytes(), r)
}

/// exact_match: equal after trimming, case only when asked, numbers as their JSON text.
#[test]
fn exact_match_cases() {
    let r = row(json!({"prompt": "2+2=", "answer": "Four", "n": 4}));
    let f = || RewardSpec::named("exact_match");
    assert_eq!(reward(f(), "Four", &r), 1.0);
    assert_eq!(reward(f(), "  Four\n", &r), 1.0);
    assert_eq!(reward(f(), "four", &r), 0.0);
    assert_eq!(reward(f().with_param("ignore_case", "true"), "FOUR", &r), 1.0);
    assert_eq!(reward(f(), "Four!", &r), 0.0);
    assert_eq!(reward(f(), "", &r), 0.0);
    assert_eq!(reward(f().with_param("column", "n"), "4", &r), 1.0);
    assert_eq!(reward(f().with_param("column", "missing"), "4", &r), 0.0);
}

/// contains_answer: the reference anywhere in the completion.
#[test]
fn contains_answer_cases() {
    let r = row(json!({"prompt": "capital of France?", "answer": " Paris "}));
    let f = || RewardSpec::named("contains_answer");
    assert_eq!(reward(f(), "It is Paris, of course.", &r), 1.0);
    assert_eq!(reward(f(), "It is paris.", &r), 0.0);
    assert_eq!(reward(f().with_param("ignore_case", "true"), "It is PARIS.", &r), 1.0);
    assert_eq!(reward(f(), "Lyon", &r), 0.0);
    // A blank reference would be in everything; it scores 0 (and intake refuses the row).
    let blank = row(json!({"answer": "  "}));
    assert_eq!(reward(f(), "anything", &blank), 0.0);
}

/// length_penalty: full reward up to max_chars (characters, not bytes), 0 at twice that.
#[test]
fn length_penalty_cases() {
    let r = row(json!({}));
    let f = |max: &str| RewardSpec::named("length_penalty").with_param("max_chars", max);
    assert_eq!(reward(f("10"), "0123456789", &r), 1.0);
    assert_eq!(reward(f("10"), "ééééééééé", &r), 1.0);
    assert!((reward(f("10"), "012345678901234", &r) - 0.5).abs() < 1e-12);
    assert_eq!(reward(f("10"), &"x".repeat(20), &r), 0.0);
    assert_eq!(reward(f("10"), &"x".repeat(500), &r), 0.0);
    assert_eq!(reward(RewardSpec::named("length_penalty"), &"x".repeat(256), &r), 1.0);
}

/// valid_json: one JSON value; with required keys, half for validity and half for the keys.
#[test]
fn valid_json_cases() {
    let r = row(json!({}));
    let f = || RewardSpec::named("valid_json");
    assert_eq!(reward(f(), r#" {"a": [1, 2, {"b": null}]} "#, &r), 1.0);
    assert_eq!(reward(f(), "42", &r), 1.0);
    assert_eq!(reward(f(), "{\"a\": 1", &r), 0.0);
    assert_eq!(reward(f(), "{\"a\": 1} trailing", &r), 0.0);
    assert_eq!(reward(f(), "", &r), 0.0);
    let keys = || f().with_param("required_keys", "name, age");
    assert_eq!(reward(keys(), r#"{"name": "Ann", "age": 3}"#, &r), 1.0);
    assert_eq!(reward(keys(), r#"{"name": "Ann"}"#, &r), 0.75);
    assert_eq!(reward(keys(), r#"{"other": 1}"#, &r), 0.5);
    assert_eq!(reward(keys(), "[1, 2]", &r), 0.5);
    assert_eq!(reward(keys(), "not json", &r), 0.0);
}

/// regex_format: the whole (trimmed) completion must match, not a part of it.
#[test]
fn regex_format_cases() {
    let r = row(json!({}));
    let f = || RewardSpec::named("regex_format").with_param("pattern", r"Answer: [0-9]+");
    assert_eq!(reward(f(), "Answer: 42", &r), 1.0);
    assert_eq!(reward(f(), "Answer: 42\n", &r), 1.0);
    assert_eq!(reward(f(), "The Answer: 42", &r), 0.0);
    assert_eq!(reward(f(), "Answer: 42 and more", &r), 0.0);
    // Alternation is grouped: `a|ab` fully matches "ab" even though "a" is found first.
    let alt = RewardSpec::named("regex_format").with_param("pattern", "a|ab");
    assert_eq!(reward(alt, "ab", &r), 1.0);
}

/// A pattern cannot escape the anchors by closing the group it is wrapped in.
#[test]
fn regex_format_cannot_escape_anchors() {
    let err = RewardSet::new(vec![RewardSpec::named("regex_format").with_param("pattern", "a)|(b")]).unwrap_err();
    assert!(matches!(&err, SpecError::BadParam { param, .. } if param == "pattern"), "{err}");
    let verbose = RewardSet::new(vec![RewardSpec::named("regex_format").with_param("pattern", "(?x)a #")]);
    if let Ok(set) = verbose {
        assert_eq!(set.score("", b"a and anything", &Map::new()), 0.0);
    }
}

/// numeric_closeness: the last number against the reference, 1 within tolerance, linear to 0.
#[test]
fn numeric_closeness_cases() {
    let r = row(json!({"answer": "12", "x": 100.0, "text": "twelve"}));
    let f = || RewardSpec::named("numeric_closeness");
    assert_eq!(reward(f(), "12", &r), 1.0);
    assert_eq!(reward(f(), "7 + 5 = 12", &r), 1.0);
    assert_eq!(reward(f(), "12 or maybe 13", &r), 1.0 - 1.0 / 12.0);
    assert_eq!(reward(f(), "no number", &r), 0.0);
    assert_eq!(reward(f(), "-12", &r), 0.0);
    assert_eq!(reward(f(), "1e999", &r), 0.0);
    assert_eq!(reward(f().with_param("tolerance", "0.5"), "12.4", &r), 1.0);
    assert_eq!(reward(f().with_param("tolerance", "1").with_param("scale", "2"), "14", &r), 0.5);
    assert_eq!(reward(f().with_param("column", "x"), "about 99.5", &r), 0.995);
    assert_eq!(reward(f().with_param("column", "text"), "12", &r), 0.0);
}

/// The score is the weighted mean of the functions' rewards.
#[test]
fn score_is_weighted_mean() {
    let set = RewardSet::new(vec![
        RewardSpec::named("exact_match").weighted(3.0),
        RewardSpec::named("length_penalty").with_param("max_chars", "1"),
    ])
    .unwrap();
    let r = row(json!({"answer": "yes"}));
    assert_eq!(set.score("", b"no", &r), 0.0 * 0.75 + 1.0 * 0.25 * 0.0);
    assert_eq!(set.score("", b"yes", &r), 0.75);
    assert_eq!(set.score("", b"y", &r), 0.25);
    assert_eq!(set.score_each("", b"yes", &r), vec![1.0, 0.0]);
}

/// Bad specs are refused with errors naming the function and parameter.
#[test]
fn spec_errors_name_function_and_parameter() {
    let err = |specs: Vec<RewardSpec>| RewardSet::new(specs).unwrap_err();
    assert_eq!(err(vec![]), SpecError::Empty);
    assert!(matches!(err(vec![RewardSpec::named("exact_match"); 17]), SpecError::TooMany { count: 17, .. }));
    assert_eq!(err(vec![RewardSpec::named("bleu")]), SpecError::UnknownFunction { name: "bleu".into() });
    for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(err(vec![RewardSpec::named("valid_json").weighted(w)]), SpecError::BadWeight { .. }));
    }
    let e = err(vec![RewardSpec::named("valid_json").with_param("colum", "x")]);
    assert!(
        matches!(&e, SpecError::UnknownParam { function, param, .. } if function == "valid_json" && param == "colum")
    );
    assert!(e.to_string().contains("required_keys"), "{e}");
    let e = err(vec![RewardSpec::named("regex_format")]);
    assert_eq!(e, SpecError::MissingParam { function: "regex_format".into(), param: "pattern".into() });
    let bad = |name: &str, k: &str, v: &str| {
        let e = err(vec![RewardSpec::named(name).with_param(k, v)]);
        assert!(matches!(&e, SpecError::BadParam { function, param, .. } if function == name && param == k), "{e}");
    };
    bad("regex_format", "pattern", "(unclosed");
    bad("regex_format", "pattern", &"a".repeat(2000));
    bad("regex_format", "pattern", "(a{1000}){1000}");
    bad("numeric_closeness", "tolerance", "-1");
    bad("numeric_closeness", "tolerance", "NaN");
    bad("numeric_closeness", "scale", "0");
    bad("length_penalty", "max_chars", "0");
    bad("length_penalty", "max_chars", "ten");
    bad("exact_match", "ignore_case", "yes");
    bad("exact_match", "column", " ");
    bad("valid_json", "required_keys", "a,,b");
}

/// Rows are checked for the columns each function reads, with the column named.
#[test]
fn check_row_names_the_column() {
    let set = RewardSet::new(vec![
        RewardSpec::named("exact_match").with_param("column", "solution"),
        RewardSpec::named("numeric_closeness"),
        RewardSpec::named("regex_format").with_param("pattern", "x"),
    ])
    .unwrap();
    assert_eq!(set.required_columns(), vec!["answer".to_owned(), "solution".to_owned()]);
    assert_eq!(set.check_row(&row(json!({"solution": "a", "answer": 3}))), Ok(()));
    assert_eq!(set.check_row(&row(json!({"solution": "a", "answer": " 3.5 "}))), Ok(()));
    let e = set.check_row(&row(json!({"answer": 3}))).unwrap_err();
    assert_eq!(e, ColumnError::Missing { function: "exact_match", column: "solution".into() });
    let e = set.check_row(&row(json!({"solution": "", "answer": 3}))).unwrap_err();
    assert!(matches!(&e, ColumnError::WrongType { column, .. } if column == "solution"), "{e}");
    let e = set.check_row(&row(json!({"solution": "a", "answer": "three"}))).unwrap_err();
    assert!(matches!(&e, ColumnError::WrongType { function: "numeric_closeness", .. }), "{e}");
    assert_eq!(e.column(), "answer");
    let e = set.check_row(&row(json!({"solution": ["a"], "answer": 1}))).unwrap_err();
    assert!(e.to_string().contains("an array"), "{e}");
}

/// Specs round-trip through JSON; weight defaults to 1 and unknown keys are refused.
#[test]
fn spec_json_form() {
    let spec: RewardSpec = serde_json::from_str(r#"{"name": "exact_match"}"#).unwrap();
    assert_eq!(spec, RewardSpec::named("exact_match"));
    let spec = RewardSpec::named("regex_format").weighted(2.0).with_param("pattern", "a+");
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<RewardSpec>(&text).unwrap(), spec);
    assert!(serde_json::from_str::<RewardSpec>(r#"{"name": "x", "wieght": 2}"#).is_err());
}

/// The set that scores every function at once.
fn everything() -> RewardSet {
    RewardSet::new(vec![
        RewardSpec::named("exact_match"),
        RewardSpec::named("contains_answer").with_param("ignore_case", "true"),
        RewardSpec::named("length_penalty"),
        RewardSpec::named("valid_json").with_param("required_keys", "a"),
        RewardSpec::named("regex_format").with_param("pattern", r"(a|aa)*b"),
        RewardSpec::named("numeric_closeness"),
    ])
    .unwrap()
}

/// Huge completions, invalid UTF-8, deep JSON and regex-hostile input neither crash nor
/// stall: each case scores in [0, 1] well within a second.
#[test]
fn hostile_completions_are_scored_quickly() {
    let set = everything();
    let r = row(json!({"answer": "7"}));
    let deep_array = "[".repeat(100_000) + &"]".repeat(100_000);
    let deep_object = "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000);
    let just_under = "a".repeat(MAX_COMPLETION_BYTES - 1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("100 MB of digits", vec![b'7'; 100 * 1024 * 1024]),
        ("just under the cap, regex-hostile", just_under.into_bytes()),
        ("deeply nested array", deep_array.clone().into_bytes()),
        ("deeply nested object", deep_object.into_bytes()),
        ("nested within the cap", deep_array.as_bytes()[..60_000].to_vec()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'7', 0xc0, 0x80]),
        ("lone surrogate bytes", vec![0xed, 0xa0, 0x80, b'{', b'}']),
        ("NUL bytes", vec![0; 1000]),
        ("many numbers", "1 ".repeat(30_000).into_bytes()),
        ("a huge number", "9".repeat(60_000).into_bytes()),
    ];
    for (name, completion) in cases {
        let start = Instant::now();
        let score = set.score("prompt", &completion, &r);
        let each = set.score_each("prompt", &completion, &r);
        let took = start.elapsed();
        assert!((0.0..=1.0).contains(&score), "{name}: {score}");
        assert!(each.iter().all(|x| (0.0..=1.0).contains(x)), "{name}: {each:?}");
        assert!(took.as_secs_f64() < 1.0, "{name}: took {took:?}");
    }
    // Over the cap everything is 0, even an exact answer padded with whitespace.
    let mut padded = b"7".to_vec();
    padded.extend(vec![b' '; MAX_COMPLETION_BYTES]);
    assert_eq!(set.score_each("", &padded, &r), vec![0.0; 6]);
    // Invalid UTF-8 is decoded lossily: the answer beside it still counts.
    assert_eq!(one(RewardSpec::named("contains_answer")).score("", &[0xff, b'7', 0xfe], &r), 1.0);
}

/// A non-object row value or odd reference types never panic.
#[test]
fn odd_reference_values_score_zero() {
    let set = everything();
    for value in [json!(null), json!(true), json!([1]), json!({"a": 1}), json!(""), json!(1e308)] {
        let r = row(json!({ "answer": value }));
        let score = set.score("", b"1e308", &r);
        assert!((0.0..=1.0).contains(&score), "{value}: {score}");
    }
}
