//! Training stops when the miner shuts down: a strategy in the middle of its runs fails with
//! `TrainError::Cancelled` before its next optimizer step, promptly, with nothing to export.

use std::time::{Duration, Instant};

use gradients_data::{Row, TaskType};
use gradients_text::Tokenizer;
use gradients_trainer::model::CausalLm;
use gradients_trainer::presets;
use gradients_trainer::strategy::{self, Budget, Context, StrategyKind};
use gradients_trainer::train::{prepare, TrainError};
use indicatif::ProgressBar;
use serde_json::json;
use tch::Device;
use tokio_util::sync::CancellationToken;

/// How soon after the cancellation training must have stopped: one optimizer step of a tiny
/// model takes milliseconds, so this only absorbs a loaded machine.
const STOP_BOUND: Duration = Duration::from_secs(5);

fn rows(count: usize) -> Vec<Row> {
    (0..count)
        .map(|i| {
            let word: String = (0..3).map(|j| (b'a' + ((i * 7 + j * 3) % 26) as u8) as char).collect();
            let doubled: String = word.chars().flat_map(|c| [c, c]).collect();
            let value = json!({"instruction": "Double every letter.", "input": word, "output": doubled});
            Row::from_map(value.as_object().expect("object").clone())
        })
        .collect()
}

#[test]
fn a_strategy_cancelled_mid_training_stops_before_its_next_step() {
    let tokenizer = Tokenizer::byte_level();
    let base = CausalLm::new(&presets::byte_llama(64, 2, 4, 2, 128, 128, true), Device::Cpu, 1);
    let data = prepare(&rows(120), TaskType::Instruct, &tokenizer, 128, 5).expect("data");
    let (cancel, bar) = (CancellationToken::new(), ProgressBar::hidden());
    // Successive halving on a budget of ten million steps: it would train for hours.
    let ctx = Context {
        base: &base,
        data: &data,
        pad_id: tokenizer.pad_id(),
        max_len: 128,
        budget: Budget::steps(10_000_000),
        seed: 7,
        bar: bar.clone(),
        cancel: cancel.clone(),
    };
    // Cancels once training is under way (a few optimizer steps done).
    let canceller = std::thread::spawn(move || {
        while bar.position() < 5 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let steps_done = bar.position();
        cancel.cancel();
        (Instant::now(), steps_done)
    });
    let outcome = strategy::run(StrategyKind::SuccessiveHalving, &ctx);
    let stopped = Instant::now();
    let (cancelled_at, steps_done) = canceller.join().expect("canceller");
    let took = stopped.duration_since(cancelled_at);
    eprintln!("stopped {took:?} after the cancellation, {steps_done} steps in");
    assert!(matches!(outcome, Err(TrainError::Cancelled)), "{:?}", outcome.err());
    assert!(took < STOP_BOUND, "stopping took {took:?}");
}
