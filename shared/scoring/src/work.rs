//! How much a task is worth: longer jobs on bigger models weigh more in the
//! period weights (rayonlabs/G.O.D, `validator/evaluation/scoring.py`,
//! `get_task_work_score`).

use crate::config::ScoringConfig;

/// Parameters in one billion, the unit model sizes are counted in.
const PARAMS_PER_BILLION: u64 = 1_000_000_000;

/// The work score of a task, as G.O.D. `get_task_work_score`:
/// `max(min_task_work, task_work_scale * sqrt(hours * billions))`.
///
/// `billions` is the model size in *whole* billions (`model_params // 1e9`, so a 1.9B model
/// counts as 1B) clamped to `[min_model_billions, max_model_billions]`. When the parameter
/// count is unknown (0), the size is read from the model's name as G.O.D. does: the first
/// run of ASCII digits followed by `b` or `B` (`Qwen2.5-7B` → 7), at most
/// `max_name_billions`, and 1 when the name holds none. A product `hours * billions` of 0
/// gives `min_task_work` (G.O.D.'s failsafe `return 1`).
///
/// Deviation, on purpose: a duration that is not a positive finite number gives
/// `min_task_work` where G.O.D. asserts (and so stops scoring altogether); a pure function the
/// ledger and the audit both run must not fail on a stored value.
pub fn task_work(hours_to_complete: f64, model_params: u64, model_name: &str, config: &ScoringConfig) -> f64 {
    let floor = config.min_task_work;
    if !(hours_to_complete.is_finite() && hours_to_complete > 0.0) {
        return floor;
    }
    let billions = if model_params > 0 {
        let whole = (model_params / PARAMS_PER_BILLION) as f64;
        // `max` then `min` rather than `clamp`, which panics on an inverted range from a bad config.
        whole.max(config.min_model_billions).min(config.max_model_billions)
    } else {
        billions_in_name(model_name).map_or(1.0, |b| b.min(config.max_name_billions))
    };
    if hours_to_complete * billions == 0.0 {
        return floor;
    }
    let work = config.task_work_scale * (hours_to_complete * billions).sqrt();
    // `f64::max` drops a NaN (possible only with a broken config), keeping the floor; the `min`
    // keeps an absurd duration finite so it cannot turn sums downstream into NaN.
    work.max(floor).min(f64::MAX)
}

/// The model size a name states, in billions: G.O.D.'s `re.search(r"(\d+)(?=[bB])", name)`,
/// restricted to ASCII digits. A number too long for `u64` saturates (the cap applies anyway).
fn billions_in_name(name: &str) -> Option<f64> {
    let bytes = name.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        // A later start inside the same run ends at the same place, so one check per run suffices.
        if matches!(bytes.get(end), Some(b'b' | b'B')) {
            let digits = &name[start..end];
            return Some(digits.parse::<u64>().map_or(f64::MAX, |n| n as f64));
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::billions_in_name;

    /// The name rule picks the first number directly followed by `b`/`B`, as G.O.D.'s regex.
    #[test]
    fn sizes_read_from_names() {
        assert_eq!(billions_in_name("Qwen/Qwen2.5-7B-Instruct"), Some(7.0));
        assert_eq!(billions_in_name("meta-llama/Llama-3.1-70B"), Some(70.0));
        assert_eq!(billions_in_name("unsloth/gemma-2b"), Some(2.0));
        assert_eq!(billions_in_name("x12c3b"), Some(3.0));
        assert_eq!(billions_in_name("tiny-10m"), None);
        assert_eq!(billions_in_name("b7"), None);
        assert_eq!(billions_in_name("m0b"), Some(0.0));
        assert_eq!(billions_in_name("99999999999999999999999b"), Some(f64::MAX));
    }
}
