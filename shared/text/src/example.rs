//! Token-level examples: ids with an answer mask, truncation, and padded batches.

use gradients_data::{Row, TaskType};

use crate::template::{grpo_prompt, preference_prompt, sft_segments, Segment};
use crate::{TextError, Tokenizer};

/// A tokenized sequence and which of its tokens are scored.
///
/// `is_answer[i]` says whether predicting `ids[i]` from `ids[..i]` counts towards the
/// loss; `is_answer[0]` is always false (nothing predicts the first token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub is_answer: Vec<bool>,
}

impl Example {
    /// The number of scored tokens.
    pub fn answer_tokens(&self) -> usize {
        self.is_answer.iter().filter(|&&a| a).count()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn from_segments(tokenizer: &Tokenizer, segments: &[Segment], max_len: usize) -> Result<Self, TextError> {
        let mut ids = Vec::new();
        let mut is_answer = Vec::new();
        for segment in segments {
            let tokens = tokenizer.encode(&segment.text)?;
            is_answer.extend(std::iter::repeat_n(segment.is_answer, tokens.len()));
            ids.extend(tokens);
        }
        // The end of the answer is itself learned: it is how a model knows to stop.
        ids.push(tokenizer.eos_id());
        is_answer.push(true);
        Ok(Self { ids, is_answer }.truncated(max_len))
    }

    /// Fits the example into `max_len` tokens: the start of the prompt goes first (the
    /// answer and what immediately precedes it matter most), then the end of the answer.
    fn truncated(mut self, max_len: usize) -> Self {
        if self.ids.len() > max_len {
            let first_answer = self.is_answer.iter().position(|&a| a).unwrap_or(self.ids.len());
            let drop_front = (self.ids.len() - max_len).min(first_answer.saturating_sub(1));
            self.ids.drain(..drop_front);
            self.is_answer.drain(..drop_front);
            self.ids.truncate(max_len);
            self.is_answer.truncate(max_len);
        }
        if let Some(first) = self.is_answer.first_mut() {
            *first = false;
        }
        self
    }
}

/// A supervised example of a row (instruct, chat; DPO rows use their chosen answer).
/// `row_number` is 1-based, for errors.
pub fn sft_example(
    tokenizer: &Tokenizer,
    task_type: TaskType,
    row_number: usize,
    row: &Row,
    max_len: usize,
) -> Result<Example, TextError> {
    Example::from_segments(tokenizer, &sft_segments(task_type, row_number, row)?, max_len)
}

/// The chosen and rejected examples of a DPO row, sharing one prompt.
pub fn dpo_pair(
    tokenizer: &Tokenizer,
    row_number: usize,
    row: &Row,
    max_len: usize,
) -> Result<(Example, Example), TextError> {
    let text = |column: &'static str| row.get_str(column).ok_or(TextError::Column { row: row_number, column });
    let prompt = Segment { text: preference_prompt(text("prompt")?), is_answer: false };
    let answer = |column| -> Result<Example, TextError> {
        let segments = [prompt.clone(), Segment { text: text(column)?.to_owned(), is_answer: true }];
        Example::from_segments(tokenizer, &segments, max_len)
    };
    Ok((answer("chosen")?, answer("rejected")?))
}

/// The token ids a GRPO row's prompt is generated from: [`grpo_prompt`] of its `prompt`
/// column, keeping the last `max_tokens` ids when longer (the end of the template is where
/// the completion starts). Trainer and evaluator both call this, so a miner is trained on
/// the prompts it is scored on. `row_number` is 1-based, for errors.
pub fn grpo_prompt_ids(
    tokenizer: &Tokenizer,
    row_number: usize,
    row: &Row,
    max_tokens: usize,
) -> Result<Vec<u32>, TextError> {
    let prompt = row.get_str("prompt").ok_or(TextError::Column { row: row_number, column: "prompt" })?;
    let mut ids = tokenizer.encode(&grpo_prompt(prompt))?;
    ids.drain(..ids.len().saturating_sub(max_tokens));
    Ok(ids)
}

/// Language-modelling examples of plain text (pretraining): documents separated by the
/// end-of-text token, cut into windows of `len` tokens, every token scored.
pub fn lm_examples(tokenizer: &Tokenizer, documents: &[&str], len: usize) -> Result<Vec<Example>, TextError> {
    let mut stream = Vec::new();
    for document in documents {
        stream.extend(tokenizer.encode(document)?);
        stream.push(tokenizer.eos_id());
    }
    Ok(stream
        .chunks(len)
        .filter(|chunk| chunk.len() > 1)
        .map(|chunk| {
            let mut is_answer = vec![true; chunk.len()];
            is_answer[0] = false;
            Example { ids: chunk.to_vec(), is_answer }
        })
        .collect())
}

/// Examples padded on the right into one `[batch, len]` block, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// 1 where the token is scored (an answer token), else 0.
    pub answer_mask: Vec<i64>,
}

impl Batch {
    /// Pads `examples` with `pad_id` to the longest of them.
    pub fn pad(examples: &[&Example], pad_id: u32) -> Self {
        let len = examples.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut batch = Batch {
            batch: examples.len(),
            len,
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            answer_mask: Vec::new(),
        };
        for example in examples {
            let padding = len - example.len();
            batch.input_ids.extend(example.ids.iter().map(|&id| id as i64));
            batch.input_ids.extend(std::iter::repeat_n(pad_id as i64, padding));
            batch.attention_mask.extend(std::iter::repeat_n(1, example.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, padding));
            batch.answer_mask.extend(example.is_answer.iter().map(|&a| a as i64));
            batch.answer_mask.extend(std::iter::repeat_n(0, padding));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: serde_json::Value) -> Row {
        Row::from_map(value.as_object().expect("object").clone())
    }

    #[test]
    fn grpo_prompts_are_templated_and_keep_their_end() {
        let t = Tokenizer::byte_level();
        let r = row(json!({"prompt": "Sum 2 3", "answer": "5"}));
        let ids = grpo_prompt_ids(&t, 1, &r, 256).expect("prompt");
        assert_eq!(t.decode(&ids).expect("decode"), "### Instruction:\nSum 2 3\n### Response:\n");
        let cut = grpo_prompt_ids(&t, 1, &r, 5).expect("prompt");
        assert_eq!(cut, ids[ids.len() - 5..]);
        let err = grpo_prompt_ids(&t, 3, &row(json!({"answer": "5"})), 256).expect_err("no prompt");
        assert!(matches!(err, TextError::Column { row: 3, column: "prompt" }), "{err}");
    }

    #[test]
    fn only_answer_tokens_and_end_of_text_are_scored() {
        let t = Tokenizer::byte_level();
        let r = row(json!({"instruction": "Say", "input": "", "output": "ok"}));
        let example = sft_example(&t, TaskType::Instruct, 1, &r, 512).expect("example");
        let prompt_len = "### Instruction:\nSay\n### Response:\n".len();
        assert_eq!(example.len(), prompt_len + 3);
        assert_eq!(example.answer_tokens(), 3, "o, k and end-of-text");
        assert!(example.is_answer[..prompt_len].iter().all(|&a| !a));
        assert_eq!(*example.ids.last().expect("eos"), t.eos_id());
    }

    #[test]
    fn truncation_drops_the_prompt_start_first_then_the_answer_end() {
        let t = Tokenizer::byte_level();
        let r = row(json!({"instruction": "x".repeat(100), "input": "", "output": "answer"}));
        let full = sft_example(&t, TaskType::Instruct, 1, &r, 1000).expect("full");
        let cut = sft_example(&t, TaskType::Instruct, 1, &r, 40).expect("cut");
        assert_eq!(cut.len(), 40);
        assert_eq!(cut.answer_tokens(), full.answer_tokens(), "the answer survives");
        assert_eq!(cut.ids[..], full.ids[full.len() - 40..]);
        let tiny = sft_example(&t, TaskType::Instruct, 1, &r, 4).expect("tiny");
        assert_eq!(tiny.len(), 4);
        assert!(!tiny.is_answer[0]);
    }

    #[test]
    fn dpo_pairs_share_the_prompt() {
        let t = Tokenizer::byte_level();
        let r = row(json!({"prompt": "2+2?", "chosen": "4", "rejected": "5"}));
        let (chosen, rejected) = dpo_pair(&t, 1, &r, 512).expect("pair");
        assert_eq!(chosen.len(), rejected.len());
        let answer_start = chosen.is_answer.iter().position(|&a| a).expect("answer");
        assert_eq!(chosen.ids[..answer_start], rejected.ids[..answer_start]);
        assert_ne!(chosen.ids, rejected.ids);
        let err = dpo_pair(&t, 9, &row(json!({"prompt": "p", "chosen": "c"})), 512).expect_err("no rejected");
        assert!(matches!(err, TextError::Column { row: 9, column: "rejected" }));
    }

    #[test]
    fn batches_pad_on_the_right() {
        let t = Tokenizer::byte_level();
        let a = Example { ids: vec![1, 2, 3], is_answer: vec![false, true, true] };
        let b = Example { ids: vec![4], is_answer: vec![false] };
        let batch = Batch::pad(&[&a, &b], t.pad_id());
        assert_eq!((batch.batch, batch.len), (2, 3));
        assert_eq!(batch.input_ids, vec![1, 2, 3, 4, 257, 257]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.answer_mask, vec![0, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn lm_examples_cover_the_stream_in_windows() {
        let t = Tokenizer::byte_level();
        let examples = lm_examples(&t, &["abcd", "ef"], 3).expect("lm");
        let ids: Vec<u32> = examples.iter().flat_map(|e| e.ids.clone()).collect();
        assert_eq!(ids, vec![97, 98, 99, 100, 256, 101, 102, 256]);
        assert!(examples.iter().all(|e| !e.is_answer[0] && e.is_answer[1..].iter().all(|&a| a)));
    }
}
