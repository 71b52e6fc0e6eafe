//! The head trainer: writes the folders `routemesh_classifier_worker::heads`
//! loads.
//!
//! `train-head` ([`commands::train_head`]) embeds a labelled JSONL file with
//! the frozen encoder through an on-disk cache, fits logistic regression or
//! a small MLP with candle-nn (AdamW, class-weighted cross-entropy, early
//! stopping on a seeded validation split), measures it (accuracy, macro-F1,
//! per-class precision / recall, confusion matrix, a chosen threshold for
//! binary heads) and writes `head.safetensors`, `head.json` and a README.md.
//! `eval-head` measures a saved head; `make-difficulty-data` writes the
//! difficulty head's labels ([`difficulty`]).
//!
//! Module order (no two reference each other): `commands` → `trainer` →
//! `cli`, `cache`, `train`, `data`, `metrics`, `report` → `error`,
//! `progress`.

mod cache;
pub mod cli;
pub mod commands;
mod data;
pub mod difficulty;
mod error;
mod metrics;
pub mod pii;
mod progress;
mod report;
mod train;
mod trainer;

pub use error::TrainError;
pub use metrics::Criterion;
