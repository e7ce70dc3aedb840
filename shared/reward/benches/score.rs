//! How fast a reward set scores completions, typical and hostile: `cargo bench -p
//! gradients-reward`. Prints one row per case: completion size, scores per second, time
//! per score. The hostile cases are at the 64 KiB cap, the most work one completion can
//! cause; a GRPO step scores G completions per prompt, so this bounds reward time beside
//! generation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gradients_reward::{RewardSet, RewardSpec, MAX_COMPLETION_BYTES};
use serde_json::{json, Map, Value};

/// Every function at once, the pattern one that backtracking engines take exponential
/// time on.
fn every_function() -> RewardSet {
    RewardSet::new(vec![
        RewardSpec::named("exact_match"),
        RewardSpec::named("contains_answer").with_param("ignore_case", "true"),
        RewardSpec::named("length_penalty"),
        RewardSpec::named("valid_json").with_param("required_keys", "name,age"),
        RewardSpec::named("regex_format").with_param("pattern", "(a|aa)*b"),
        RewardSpec::named("numeric_closeness").with_param("tolerance", "0.5"),
    ])
    .expect("valid specs")
}

/// Scores `completion` repeatedly for about `budget`; returns scores per second.
fn measure(set: &RewardSet, row: &Map<String, Value>, completion: &[u8], budget: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            black_box(set.score(black_box("prompt"), black_box(completion), row));
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let set = every_function();
    let row = json!({ "prompt": "What is 40 + 2?", "answer": "42" });
    let row = row.as_object().expect("an object").clone();
    let cap = MAX_COMPLETION_BYTES;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short answer", b"42".to_vec()),
        ("JSON record", br#"{"name":"Ann","age":42}"#.to_vec()),
        ("1 KiB of prose", "the answer is 42. ".repeat(57).into_bytes()),
        ("64 KiB regex-hostile (a...a)", vec![b'a'; cap]),
        ("64 KiB nested JSON", [vec![b'['; cap / 2], vec![b']'; cap / 2]].concat()),
        ("64 KiB of numbers", "1 ".repeat(cap / 2).into_bytes()),
        ("64 KiB invalid UTF-8", vec![0xff; cap]),
        ("over the cap (1 MiB)", vec![b'a'; 1 << 20]),
    ];
    println!("{:<30} {:>10} {:>14} {:>12}", "case", "bytes", "scores/s", "µs/score");
    for (name, completion) in &cases {
        let rate = measure(&set, &row, completion, Duration::from_millis(500));
        println!("{name:<30} {:>10} {rate:>14.0} {:>12.2}", completion.len(), 1e6 / rate);
    }
}
