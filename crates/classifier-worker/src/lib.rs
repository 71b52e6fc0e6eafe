//! The classifier worker: turns prompts into embeddings and classifier
//! outputs.
//!
//! [`Encoder`] runs the sentence encoder (MiniLM by default: candle BERT,
//! mean pooling over the attention mask, L2 normalisation; a long prompt
//! read in windows, [`EncoderOptions`]). [`Batcher`] puts
//! dynamic batching in front of one or more model replicas, each on its own
//! thread, with the [`scorer`]s (trained [`heads`], [`hf`] classifiers) run
//! on each batch; [`metrics`] names its series. [`service`] answers classify
//! requests over NATS. The gateway embeds the batcher in one-process mode.
//! Signals are computed from the embeddings elsewhere (`routemesh-signals`);
//! this crate knows nothing of HTTP, upstreams, routes or rules.

#![forbid(unsafe_code)]

mod batcher;
mod encoder;
mod error;
pub mod heads;
pub mod hf;
pub mod metrics;
pub mod scorer;
pub mod service;
mod simulated;

pub use batcher::{
    BatchOptions, Batcher, EmbedTimings, Embedded, Embedding, EmbeddingModel, Replica,
};
pub use encoder::{Encoded, Encoder, EncoderOptions, TokenStates, WindowStates};
pub use error::{ClassifyError, EncoderError};
pub use heads::{Head, HeadError, HeadInfo};
pub use simulated::SimulatedModel;
