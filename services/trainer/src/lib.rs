//! The reference miner of the Gradients market.
//!
//! - [`model`]: Llama-style and GPT-2 causal LMs in tch, with LoRA;
//! - [`checkpoint`]: Hugging Face model folders in and out;
//! - [`generate`]: batched greedy or seeded sampled generation with a key-value cache;
//! - [`device`]: CUDA when libtorch's CUDA backend loads, else CPU.
//! - [`presets`]: the project's own base model sizes;
//! - [`grpo`]: GRPO training on prompts scored by the task's reward functions;
//! - [`train`]: SFT and DPO runs (AdamW, warm-up + decay, accumulation, clipping, early
//!   stopping), resumable so that [`strategy`] can search over them.

pub mod checkpoint;
pub mod device;
pub mod export;
pub mod generate;
pub mod grpo;
pub mod job;
pub mod model;
pub mod presets;
pub mod pretrain;
pub mod report;
pub mod runtime;
pub mod strategy;
pub mod train;
