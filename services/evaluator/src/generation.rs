//! Greedy generation through ONNX Runtime, for scoring GRPO tasks by what a model writes.
//!
//! The exported graph has no key-value cache (`input_ids`, `attention_mask` -> `logits` over
//! the whole sequence), so every new token re-runs the full sequence: a completion of `n`
//! tokens after a prompt of `p` costs `n` runs over `p + 1 ..= p + n` positions. At the
//! market's sizes (prompts of a few dozen tokens, completions of at most
//! `grpo_max_new_tokens`) that is cheap enough; the cost is counted ([`GenerationStats`])
//! and the README gives it measured.
//!
//! Prompts are sorted by length and generated in batches whose rows times longest possible
//! length (prompt and every new token) stay within the run's token budget. The graph pads
//! on the right and is causal, so a row's real positions never see the padding after them:
//! each row reads its next token at its own last position, and the row leaves the batch as
//! soon as it is done (end-of-text, or its new-token limit), so finished rows cost nothing.
//!
//! The next token is the first index of the largest logit (ties go to the lower id, as
//! `torch.argmax` does; NaN is never chosen), so the trainer's greedy generation picks the
//! same token on the same logits. Stop ids end a completion and are not part of it.
//!
//! Bounds: a completion has at most `max_new_tokens`, and prompt plus completion fit the
//! model's context, whatever the model does: a model that never ends its text costs at
//! most prompts x `max_new_tokens` generated tokens, and the watchdog stops runs past the
//! evaluation's time limit.

use ort::session::Session;
use ort::value::Tensor;

use crate::runtime::{RunError, Watchdog};

/// What one prompt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The new tokens, the stop token excluded.
    pub ids: Vec<u32>,
    /// Whether the model ended the text itself (a stop id), rather than hitting a limit.
    pub stopped: bool,
}

/// What a generation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// New tokens produced (stop tokens included: each took a run to find).
    pub new_tokens: u64,
    /// Positions run through the model (batch rows x padded length, summed over runs).
    pub positions: u64,
    /// ONNX Runtime runs.
    pub runs: u64,
}

impl GenerationStats {
    /// Adds another generation's cost.
    pub fn add(&mut self, other: GenerationStats) {
        self.new_tokens += other.new_tokens;
        self.positions += other.positions;
        self.runs += other.runs;
    }
}

/// Generates greedily with one session.
pub struct Generator<'a> {
    pub session: &'a mut Session,
    pub watchdog: &'a Watchdog,
    pub vocab: usize,
    pub pad_id: u32,
    /// Ids that end a completion (end-of-text).
    pub stop_ids: Vec<u32>,
    /// The model's context: prompt plus completion never exceed it.
    pub max_len: usize,
    /// Most positions (rows x padded length) in one run.
    pub batch_tokens: usize,
}

/// One row being generated.
struct Row {
    index: usize,
    ids: Vec<u32>,
    prompt_len: usize,
    limit: usize,
    stopped: bool,
}

impl Row {
    fn done(&self) -> bool {
        self.stopped || self.ids.len() - self.prompt_len >= self.limit
    }
}

impl Generator<'_> {
    /// The greedy completion of every prompt (in the order given), each at most
    /// `max_new_tokens` long and cut to fit the context. An empty prompt gets an empty
    /// completion (there is nothing to predict from).
    pub fn greedy(
        &mut self,
        prompts: &[&[u32]],
        max_new_tokens: usize,
    ) -> Result<(Vec<Generated>, GenerationStats), RunError> {
        let mut out = vec![Generated { ids: Vec::new(), stopped: false }; prompts.len()];
        let mut stats = GenerationStats::default();
        let mut rows: Vec<Row> = prompts
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(index, p)| {
                // A prompt longer than the context keeps its end (where the completion starts).
                let ids = p[p.len().saturating_sub(self.max_len)..].to_vec();
                let limit = max_new_tokens.min(self.max_len.saturating_sub(ids.len()));
                Row { index, prompt_len: ids.len(), ids, limit, stopped: false }
            })
            .collect();
        rows.sort_by_key(|r| (r.prompt_len + r.limit, r.index));
        let mut pending = rows.into_iter().peekable();
        while pending.peek().is_some() {
            // Sorted ascending by final length: the last row taken is the batch's longest.
            let mut batch = Vec::new();
            while let Some(row) = pending.peek() {
                let longest = row.prompt_len + row.limit;
                if !batch.is_empty() && (batch.len() + 1) * longest > self.batch_tokens {
                    break;
                }
                batch.push(pending.next().expect("peeked"));
            }
            stats.add(self.generate_batch(&mut batch)?);
            for row in batch {
                out[row.index] = Generated { ids: row.ids[row.prompt_len..].to_vec(), stopped: row.stopped };
            }
        }
        Ok((out, stats))
    }

    /// Runs `rows` until each is done, appending their new tokens (stop ids left out).
    fn generate_batch(&mut self, rows: &mut [Row]) -> Result<GenerationStats, RunError> {
        let mut stats = GenerationStats::default();
        loop {
            let active: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].done()).collect();
            if active.is_empty() {
                return Ok(stats);
            }
            let len = active.iter().map(|&i| rows[i].ids.len()).max().expect("non-empty");
            let mut ids = vec![i64::from(self.pad_id); active.len() * len];
            let mut mask = vec![0i64; active.len() * len];
            for (b, &i) in active.iter().enumerate() {
                for (t, &id) in rows[i].ids.iter().enumerate() {
                    ids[b * len + t] = i64::from(id);
                    mask[b * len + t] = 1;
                }
            }
            let next = self.next_tokens(active.len(), len, ids, mask, |b| rows[active[b]].ids.len() - 1)?;
            stats.runs += 1;
            stats.positions += (active.len() * len) as u64;
            stats.new_tokens += active.len() as u64;
            for (b, &i) in active.iter().enumerate() {
                let row = &mut rows[i];
                if self.stop_ids.contains(&next[b]) {
                    row.stopped = true;
                } else {
                    row.ids.push(next[b]);
                }
            }
        }
    }

    /// One run over a right-padded `[batch, len]` batch: the greedy token at each row's
    /// position `last(b)`.
    fn next_tokens(
        &mut self,
        batch: usize,
        len: usize,
        ids: Vec<i64>,
        mask: Vec<i64>,
        last: impl Fn(usize) -> usize,
    ) -> Result<Vec<u32>, RunError> {
        let shape = [batch, len];
        let ids = Tensor::from_array((shape, ids)).map_err(|e| RunError::Failed(e.to_string()))?;
        let mask = Tensor::from_array((shape, mask)).map_err(|e| RunError::Failed(e.to_string()))?;
        let outputs = self
            .session
            .run_with_options(ort::inputs!["input_ids" => ids, "attention_mask" => mask], &self.watchdog.options)
            .map_err(|e| self.watchdog.run_error(e))?;
        let logits = outputs.get("logits").ok_or_else(|| RunError::Failed("no logits output".into()))?;
        let (dims, data) = logits.try_extract_tensor::<f32>().map_err(|e| RunError::Failed(e.to_string()))?;
        let expected = [batch as i64, len as i64, self.vocab as i64];
        if dims[..] != expected {
            return Err(RunError::Failed(format!("logits have shape {:?}, expected {expected:?}", &dims[..])));
        }
        Ok((0..batch)
            .map(|b| {
                let start = (b * len + last(b)) * self.vocab;
                argmax(&data[start..start + self.vocab])
            })
            .collect())
    }
}

/// The first index of the largest value; NaN never wins (all NaN: 0).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_values_and_skips_nan() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN, -0.5]), 3);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }
}
