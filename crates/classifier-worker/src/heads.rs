//! Heads: small classifiers over the encoder's pooled embeddings, and their trainer.
//!
//! A head folder holds `head.safetensors` (f32 `layers.{i}.weight` `[out, in]`
//! and `layers.{i}.bias` `[out]`, ReLU between layers, logits out) and
//! `head.json` ([`HeadInfo`]: labels, the encoder's name, sha256 and width,
//! the architecture, an optional binary threshold, and the training record).
//! [`Head`] loads a folder and predicts softmax probabilities in plain Rust.
//!
//! The trainer (`classifier-worker train-head`, [`cli`]) embeds a labelled
//! JSONL file with the frozen [`Encoder`](crate::Encoder) through an on-disk
//! cache, fits logistic regression or a small MLP with candle-nn (AdamW,
//! class-weighted cross-entropy, early stopping on a seeded validation
//! split), measures it (accuracy, macro-F1, per-class precision / recall,
//! confusion matrix, a chosen threshold for binary heads) and writes the
//! folder with a README.md.

mod cache;
pub mod cli;
mod data;
pub mod difficulty;
mod error;
mod info;
mod metrics;
mod model;
mod progress;
mod report;
mod train;
mod trainer;

pub use error::{HeadError, TrainError};
pub use info::{
    Architecture, ArchitectureKind, Candidate, ClassScores, DataFile, DataInfo, EncoderInfo,
    HEAD_FORMAT, HeadInfo, LabelCount, Metrics, Scores, SplitInfo, ThresholdScores, TrainingInfo,
};
pub use metrics::Criterion;
pub use model::{Head, INFO_FILE, Layer, WEIGHTS_FILE};
