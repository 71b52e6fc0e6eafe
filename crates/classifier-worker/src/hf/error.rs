//! Errors of loading and running an HF classifier folder.

use std::path::PathBuf;

use super::HfKind;
use super::config::SUPPORTED;

/// Loading or running an HF classifier failed.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file of the folder could not be read (missing, unreadable).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `config.json` is not a usable config for its architecture.
    #[error("invalid model config {path}: {message}")]
    Config { path: PathBuf, message: String },
    /// `architectures[0]` names a model this crate cannot run.
    #[error(
        "{path}: architecture {found:?} is not supported; supported architectures: {}",
        SUPPORTED.join(", ")
    )]
    UnsupportedArchitecture { path: PathBuf, found: String },
    /// `model.safetensors` lacks a tensor or has one of the wrong shape.
    #[error("weights {path}: {source}")]
    Weights {
        path: PathBuf,
        source: candle_core::Error,
    },
    /// `tokenizer.json` could not be loaded or a text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The forward pass failed.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// `classify` on a token model or `tag` on a sequence model.
    #[error("{call}() needs a {wanted} classification model; this one is {actual}")]
    WrongKind {
        call: &'static str,
        wanted: HfKind,
        actual: HfKind,
    },
}
