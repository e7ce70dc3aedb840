//! Configuration defaults, loading and validation.

use serde::de::value::{Error as DeError, MapDeserializer};
use serde::Deserialize;

use crate::{Period, ScoringConfig, ScoringConfigError, TypeWeights};

/// Deserialises a config from `(field, number)` pairs, as any serde format would.
fn load(fields: Vec<(&'static str, f64)>) -> Result<ScoringConfig, DeError> {
    ScoringConfig::deserialize(MapDeserializer::<_, DeError>::new(fields.into_iter()))
}

/// The field named by a validation error.
fn field_of(err: ScoringConfigError) -> String {
    match err {
        ScoringConfigError::OutOfRange { field, .. } => field,
        ScoringConfigError::Empty { field } => field.to_owned(),
    }
}

#[test]
fn defaults_are_the_documented_values_and_valid() {
    let c = ScoringConfig::default();
    assert_eq!(c.first_place_score, 3.0);
    assert_eq!(c.score_penalty, -1.0);
    assert_eq!(c.min_ideal_miners_in_pool, 8);
    assert_eq!(c.bottom_penalty_fraction, 0.25);
    assert_eq!(c.grpo_test_weight, 0.7);
    assert_eq!((c.synth_valid_max_ratio, c.synth_valid_threshold, c.synth_loss_ceiling), (1.5, 0.4, 999.0));
    assert_eq!((c.min_model_billions, c.max_model_billions, c.task_work_scale, c.min_task_work), (1.0, 40.0, 2.0, 1.0));
    assert_eq!((c.synth_top_n, c.max_name_billions, c.min_counted_positive_score), (4, 8.0, 1.0));
    let periods: Vec<(f64, f64)> = c.periods.iter().map(|p| (p.days, p.weight)).collect();
    assert_eq!(periods, vec![(1.0, 0.3), (3.0, 0.3), (7.0, 0.4)]);
    assert_eq!(c.type_weights, TypeWeights { instruct: 0.35, grpo: 0.30, image: 0.20, dpo: 0.15 });
    assert_eq!((c.sigmoid_steepness, c.sigmoid_shift, c.sigmoid_power), (9.0, 0.5, 0.75));
    assert_eq!((c.sigmoid_weight, c.linear_weight), (0.7, 0.05));
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn missing_fields_default_and_unknown_fields_are_refused() {
    assert_eq!(load(vec![]).ok(), Some(ScoringConfig::default()));

    let c = load(vec![("first_place_score", 5.0)]).ok();
    assert_eq!(c, Some(ScoringConfig { first_place_score: 5.0, ..ScoringConfig::default() }));

    let err = load(vec![("first_place_scor", 5.0)]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("first_place_scor"), "got: {err}");
}

#[test]
fn validation_names_the_bad_field() {
    type Breaker = fn(&mut ScoringConfig);
    let cases: Vec<(Breaker, &str)> = vec![
        (|c| c.first_place_score = 0.0, "first_place_score"),
        (|c| c.first_place_score = f64::NAN, "first_place_score"),
        (|c| c.score_penalty = 0.1, "score_penalty"),
        (|c| c.bottom_penalty_fraction = 1.0, "bottom_penalty_fraction"),
        (|c| c.bottom_penalty_fraction = -0.1, "bottom_penalty_fraction"),
        (|c| c.grpo_test_weight = 1.1, "grpo_test_weight"),
        (|c| c.synth_valid_max_ratio = 0.0, "synth_valid_max_ratio"),
        (|c| c.synth_valid_threshold = 2.0, "synth_valid_threshold"),
        (|c| c.synth_loss_ceiling = f64::INFINITY, "synth_loss_ceiling"),
        (|c| c.min_model_billions = 0.0, "min_model_billions"),
        (|c| c.max_model_billions = 0.5, "max_model_billions"),
        (|c| c.task_work_scale = -2.0, "task_work_scale"),
        (|c| c.min_task_work = 0.0, "min_task_work"),
        (|c| c.max_name_billions = -1.0, "max_name_billions"),
        (|c| c.min_counted_positive_score = -0.5, "min_counted_positive_score"),
        (|c| c.min_counted_positive_score = 4.0, "min_counted_positive_score"),
        (|c| c.periods.clear(), "periods"),
        (|c| c.periods[1].days = 0.0, "periods[1].days"),
        (|c| c.periods[2].weight = -0.4, "periods[2].weight"),
        (|c| c.periods = vec![Period { days: 1.0, weight: 0.0 }], "periods[*].weight (sum)"),
        (|c| c.type_weights.image = -0.2, "type_weights.image"),
        (|c| c.type_weights = TypeWeights { instruct: 0.0, grpo: 0.0, image: 0.0, dpo: 0.0 }, "type_weights (sum)"),
        (|c| c.sigmoid_steepness = -1.0, "sigmoid_steepness"),
        (|c| c.sigmoid_shift = f64::NAN, "sigmoid_shift"),
        (|c| c.sigmoid_power = 0.0, "sigmoid_power"),
        (|c| c.sigmoid_weight = -0.7, "sigmoid_weight"),
        (|c| c.linear_weight = -0.05, "linear_weight"),
        (
            |c| {
                c.sigmoid_weight = 0.0;
                c.linear_weight = 0.0;
            },
            "sigmoid_weight + linear_weight",
        ),
    ];
    for (brk, field) in cases {
        let mut c = ScoringConfig::default();
        brk(&mut c);
        let err = c.validate().err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert_eq!(err.map(field_of).as_deref(), Some(field), "{message}");
        assert!(message.contains(field), "{message}");
    }
}
