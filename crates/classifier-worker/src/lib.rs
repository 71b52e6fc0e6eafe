//! The classifier worker: turns prompts into embeddings and signals.
//!
//! [`Encoder`] runs the sentence encoder (MiniLM by default: candle BERT,
//! mean pooling over the attention mask, L2 normalisation). [`Batcher`] puts
//! dynamic batching in front of one or more model replicas, each on its own
//! thread. [`SignalComputer`] derives signals from a prompt and its
//! embedding. [`service`] answers classify requests over NATS. The gateway
//! embeds the batcher in one-process mode. This crate knows nothing of HTTP
//! or upstreams.

#![forbid(unsafe_code)]

mod batcher;
mod encoder;
mod error;
pub mod heads;
pub mod hf;
pub mod nats;
pub mod pii;
pub mod scorer;
pub mod service;
mod signals;
mod simulated;
pub mod telemetry;

pub use batcher::{
    BatchOptions, Batcher, EmbedTimings, Embedded, Embedding, EmbeddingModel, Replica,
};
pub use encoder::{Encoded, Encoder};
pub use error::{ClassifyError, EncoderError};
pub use heads::{Head, HeadError, HeadInfo};
pub use signals::{ClassifierMeta, PromptEmbedding, SignalComputer};
pub use simulated::SimulatedModel;
