//! Errors of the classifier worker.

use std::path::PathBuf;

/// Loading or running the encoder failed.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model config {path}: {message}")]
    ModelConfig { path: PathBuf, message: String },
    #[error("invalid encoder options: {0}")]
    Options(String),
    #[error("the forward pass gave {got} embeddings for {rows} rows")]
    Rows { got: usize, rows: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("model: {0}")]
    Kernels(#[from] routemesh_inference::Error),
}

/// A prompt could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The queue in front of the encoder is full; retry later.
    #[error("classifier overloaded: {queued} prompts already queued")]
    Overloaded { queued: usize },
    /// The inference thread has stopped.
    #[error("classifier stopped")]
    Stopped,
    /// A request asked for a scorer this batcher does not run.
    #[error("unknown classifier `{name}`; this worker runs: {known}")]
    UnknownOutput { name: String, known: String },
    /// The deadline passed before the work could start.
    #[error("deadline passed before the prompt could be embedded")]
    DeadlineExceeded,
    /// The forward pass failed for the batch this prompt was in.
    #[error("encoder failed: {0}")]
    Failed(String),
}
