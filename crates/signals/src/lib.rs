//! Signals of a prompt: pure math over its text and its embedding.
//!
//! [`SignalComputer`] turns a prompt and its [`PromptEmbedding`] (from
//! whichever transport produced it: the gateway's embedded batcher or a
//! classifier worker over NATS) into the positional
//! [`Signals`](routemesh_common::Signals): route similarity, keyword
//! matches, length in tokens, personal data ([`pii`]), language and the
//! outputs of the configured classifiers ([`ClassifierMeta`]). [`pii`] holds
//! the deterministic personal-data detectors and the redaction.
//!
//! No IO: no async runtime, no NATS, no model. The only dependency inside
//! the workspace is `routemesh-common`.

#![forbid(unsafe_code)]

mod computer;
pub mod pii;

pub use computer::{ClassifierMeta, PromptEmbedding, SignalComputer};
