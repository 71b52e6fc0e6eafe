//! The request's way through the gateway, from a parsed, API-neutral
//! [`Request`] to a forwarded answer and its outcome — the same for every
//! front door (the OpenAI HTTP API, Envoy's ext_proc):
//!
//! 1. [`plan`]: passthrough, or classify → signals → decide ([`RoutePlan`]);
//! 2. [`prepare`]: a block is refused; a routed request is remembered for
//!    feedback; the cache is consulted within the request's scope (a hit is
//!    the answer); the decision's edits (redaction, system prompt) are
//!    applied ([`Prepared`]);
//! 3. [`forward`]: the chosen model, then the decision's other candidates in
//!    order, through the upstream pool ([`Answer`]);
//! 4. [`outcome`]: the one rule that judges an answer's status, the learner's
//!    implicit outcome and the cache fill, while the answer passes.
//!
//! Each stage writes what it did into the request's [`Record`], which the
//! front door renders (headers, metrics). Front doors own their wire
//! formats: they parse into a [`Request`] (whose [`Payload`] is their codec)
//! and render the pipeline's typed results; nothing here reads an API's
//! JSON. Envoy forwards by itself, so ext_proc uses steps 1, 2 and 4.

pub mod headers;
pub mod outcome;
mod plan;
mod record;
mod request;
mod route;

use crate::classify::ClassifyFailure;
use crate::telemetry::Outcome;
use crate::upstream::UpstreamError;

pub use plan::{EmbeddingInfo, Forward, PASSTHROUGH, RoutePlan, Routed, Target};
pub use record::{CacheTrace, Record};
pub use request::{AnswerFormat, EncodeError, Payload, Request};
pub use route::{Answer, Forwarding, Prepared, Relay, dry_run, forward, prepare, run};

/// Why the pipeline answered a request itself instead of with a model.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The prompt is longer than `server.max_prompt_chars` characters.
    #[error(
        "the prompt (the last user message) is {chars} characters long; \
         this gateway accepts at most {limit}"
    )]
    PromptTooLong { chars: usize, limit: usize },
    #[error("the model `{0}` does not exist; GET /v1/models lists the models and router aliases")]
    UnknownModel(String),
    #[error("the router is starting: the encoder model is still loading")]
    NotReady,
    /// The classifier failed and the config says to refuse
    /// (`on_unavailable: reject`).
    #[error(transparent)]
    Classify(#[from] ClassifyFailure),
    /// The decision taken blocks the request; the message is the config's.
    #[error("{message}")]
    Blocked { message: String },
    /// No candidate model answered and none sent a status to relay.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("the decision has no candidate")]
    NoCandidate,
}

impl Refusal {
    /// The request's outcome when the refusal's kind says more than the
    /// status it is answered with.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Blocked { .. } => Some(Outcome::Blocked),
            Self::Upstream(_) => Some(Outcome::UpstreamError),
            _ => None,
        }
    }
}
