//! Heads: small classifiers over the encoder's pooled embeddings, loaded and
//! run.
//!
//! A head folder holds `head.safetensors` (f32 `layers.{i}.weight` `[out, in]`
//! and `layers.{i}.bias` `[out]`, ReLU between layers, logits out) and
//! `head.json` ([`HeadInfo`]: labels, the encoder's name, sha256 and width,
//! the architecture, an optional binary threshold, and the training record).
//! [`Head`] loads a folder and predicts softmax probabilities in plain Rust,
//! for one embedding or for the windows of a long text ([`WindowPooling`]).
//! A token head ([`TokenHead`], `tokens` in `head.json`) labels every token
//! of a text from the encoder's token states instead, and gives spans.
//!
//! The trainer (`routemesh-tools train-head`) lives in the `routemesh-tools`
//! crate; it builds [`Head`]s from [`Layer`]s and writes them with
//! [`Head::save`].

mod error;
mod info;
mod model;
mod tokens;
mod windows;

pub use error::HeadError;
pub use info::{
    Architecture, ArchitectureKind, Candidate, ClassScores, DataFile, DataInfo, EncoderInfo,
    HEAD_FORMAT, HeadInfo, LabelCount, Metrics, Scores, SpanMetrics, SpanTypeScores, SplitInfo,
    ThresholdScores, TokenInput, TrainingInfo, WindowPooling,
};
pub use model::{Head, INFO_FILE, Layer, WEIGHTS_FILE, argmax};
pub use tokens::{
    SHAPE_FEATURES, SHAPE_VERSION, TokenFeatures, TokenHead, TokenSpan, bio_labels, entity_of,
    token_features,
};
