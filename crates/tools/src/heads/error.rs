//! Errors of training or evaluating a head ([`TrainError`]).

use std::path::PathBuf;

use routemesh_classifier_worker::{EncoderError, HeadError};

/// Training or evaluating a head failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A flag or a combination of flags makes no sense.
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data row is unusable; `line` is 1-based.
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "cannot load the encoder from {path}: {source} (scripts/fetch-model.sh installs the default)"
    )]
    Encoder { path: PathBuf, source: EncoderError },
    #[error("encoding failed: {0}")]
    Encoding(EncoderError),
    #[error("embedding cache {path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
}

impl TrainError {
    /// Exit code for the command line: 64 (usage, bad data), 66 (missing
    /// input or model), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Data { .. } => 64,
            Self::Io { .. } | Self::Encoder { .. } => 66,
            Self::Head(HeadError::Io { .. }) => 66,
            _ => 1,
        }
    }
}
