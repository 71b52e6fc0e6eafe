//! Errors of loading (and saving) a head.

use std::path::PathBuf;

/// A head folder cannot be read or does not describe a usable head.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
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
    #[error("invalid {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid safetensors {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// The weights and `head.json` disagree (shapes, layer count, labels).
    #[error("inconsistent head {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}
