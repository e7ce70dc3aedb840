//! How much a task is worth: longer jobs on bigger models weigh more in the
//! period weights (rayonlabs/G.O.D, `validator/evaluation/scoring.py`,
//! `get_task_work_score`).

use crate::config::ScoringConfig;

/// Parameters in one billion, the unit model sizes are clamped in.
const PARAMS_PER_BILLION: f64 = 1e9;

/// The work score of a task: `max(min_task_work, task_work_scale * sqrt(hours * billions))`.
///
/// `billions` is `model_params / 1e9` clamped to
/// `[min_model_billions, max_model_billions]`. Unlike G.O.D., which floors the
/// size to whole billions, the size is kept fractional so that a 1.5B model
/// counts for more than a 1B one. A duration that is not a positive finite number
/// gives `min_task_work` (G.O.D. asserts instead; a pure function must not fail
/// on its input, and the floor is G.O.D.'s own failsafe value).
pub fn task_work(hours_to_complete: f64, model_params: u64, config: &ScoringConfig) -> f64 {
    let floor = config.min_task_work;
    if !(hours_to_complete.is_finite() && hours_to_complete > 0.0) {
        return floor;
    }
    // `max` then `min` rather than `clamp`, which panics on an inverted range from a bad config.
    let billions =
        (model_params as f64 / PARAMS_PER_BILLION).max(config.min_model_billions).min(config.max_model_billions);
    let work = config.task_work_scale * (hours_to_complete * billions).sqrt();
    // `f64::max` drops a NaN (possible only with a broken config), keeping the floor; the `min`
    // keeps an absurd duration finite so it cannot turn sums downstream into NaN.
    work.max(floor).min(f64::MAX)
}
