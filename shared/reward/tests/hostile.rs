//! Property tests: whatever the completion's bytes, the row's values and the parameters,
//! a valid set scores in [0, 1] without panicking, and a spec either validates or is
//! refused with a typed error.

use gradients_reward::{RewardSet, RewardSpec, FUNCTIONS};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// A JSON value of any type, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A parameter map mixing real parameter names and values with nonsense.
fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        Just("column".to_owned()),
        Just("ignore_case".to_owned()),
        Just("max_chars".to_owned()),
        Just("required_keys".to_owned()),
        Just("pattern".to_owned()),
        Just("tolerance".to_owned()),
        Just("scale".to_owned()),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        Just("answer".to_owned()),
        Just("true".to_owned()),
        "[0-9]{1,3}(\\.[0-9])?",
        "[a-z]{1,3}(,[a-z]{1,3}){0,3}",
        Just("(a|aa)*b".to_owned()),
        Just("[0-9]+".to_owned()),
        ".{0,20}",
    ];
    prop::collection::vec((key, value), 0..3)
}

/// A spec of a known or unknown function with any weight and parameters.
fn spec() -> impl Strategy<Value = RewardSpec> {
    let name = prop_oneof![prop::sample::select(FUNCTIONS.to_vec()).prop_map(str::to_owned), "[a-z_]{1,12}"];
    let weight = prop_oneof![0.01f64..100.0, any::<f64>()];
    (name, weight, params()).prop_map(|(name, weight, params)| {
        params.into_iter().fold(RewardSpec::named(name).weighted(weight), |spec, (k, v)| spec.with_param(k, v))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any specs either validate or are refused; a valid set scores any completion and
    /// any row in [0, 1], per function and weighted, and checks any row without panicking.
    #[test]
    fn any_input_scores_in_range(
        specs in prop::collection::vec(spec(), 0..5),
        completion in prop::collection::vec(any::<u8>(), 0..300),
        text_completion in ".{0,200}",
        row in prop::collection::btree_map("answer|prompt|[a-z]{1,3}", json_value(), 0..4),
    ) {
        let Ok(set) = RewardSet::new(specs) else { return Ok(()) };
        let row: Map<String, Value> = row.into_iter().collect();
        let _ = set.check_row(&row);
        for bytes in [&completion[..], text_completion.as_bytes()] {
            let score = set.score("prompt", bytes, &row);
            prop_assert!((0.0..=1.0).contains(&score), "{score}");
            for r in set.score_each("prompt", bytes, &row) {
                prop_assert!((0.0..=1.0).contains(&r), "{r}");
            }
        }
    }

    /// A row that passes the check gives the right answer the full reward for every
    /// answer-reading function.
    #[test]
    fn a_checked_row_rewards_its_own_answer(answer in "[A-Za-z0-9 ]{1,20}|-?[0-9]{1,6}") {
        let set = RewardSet::new(vec![
            RewardSpec::named("exact_match"),
            RewardSpec::named("contains_answer"),
        ]).unwrap();
        let mut row = Map::new();
        row.insert("answer".to_owned(), Value::String(answer.clone()));
        if set.check_row(&row).is_ok() {
            prop_assert_eq!(set.score("", answer.as_bytes(), &row), 1.0);
        }
    }
}
