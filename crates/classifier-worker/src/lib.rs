//! The classifier worker: turns prompts into [`routemesh_common::Signals`].
//!
//! [`Encoder`] runs the sentence encoder (MiniLM by default: candle BERT,
//! mean pooling over the attention mask, L2 normalisation).
//! [`SignalComputer`] derives signals from a prompt and its embedding.
//! [`EmbeddedClassifier`] runs both on a dedicated inference thread that
//! batches whatever is queued; the gateway embeds it in one-process mode.
//! This crate knows nothing of HTTP or upstreams.

#![forbid(unsafe_code)]

mod embedded;
mod encoder;
mod error;
mod signals;

pub use embedded::{Classified, ClassifyTimings, EmbeddedClassifier, load_embedded};
pub use encoder::{Encoded, Encoder};
pub use error::{ClassifyError, EncoderError};
pub use signals::SignalComputer;
