//! The pipeline's input: a request as every front door hands it in,
//! whatever API it arrived in, and the two things only that API's codec
//! knows — how to edit and re-encode its body ([`Payload`]) and how to read
//! its answers ([`AnswerFormat`]).

use std::fmt;

use bytes::Bytes;
use http::HeaderMap;
use routemesh_cache::AnswerKind;
use routemesh_common::config::{Reasoning, SystemPrompt, UpstreamFamily};

use crate::auth::Tenant;
use crate::cache::RequestKeys;

/// A parsed, API-neutral request.
#[derive(Debug)]
pub struct Request {
    /// Who sent it (from its credential).
    pub tenant: Tenant,
    /// The client's headers, its `x-routemesh-*` ones already removed.
    pub headers: HeaderMap,
    /// The model the client asked for: a router alias or a configured model.
    pub model: String,
    /// The text the router classifies (for chat: the last user message).
    pub prompt: String,
    /// The body in its API's own form, edited and encoded through its codec.
    pub payload: Box<dyn Payload>,
}

/// A request body in its API's format: what the pipeline may change in it
/// and how it goes upstream. Fields the router does not read travel
/// untouched.
pub trait Payload: fmt::Debug + Send + Sync {
    /// Rewrites every message text for which `f` returns a replacement;
    /// returns the sum of the counts `f` reported.
    fn redact(&mut self, f: &mut dyn FnMut(&str) -> Option<(String, usize)>) -> usize;

    /// Puts the decision's system prompt in.
    fn set_system_prompt(&mut self, sp: &SystemPrompt);

    /// The body for one candidate: `upstream_model` asked for, `reasoning`
    /// (when the decision sets it) written in `family`'s dialect.
    fn encode(
        &self,
        upstream_model: &str,
        reasoning: Option<Reasoning>,
        family: UpstreamFamily,
    ) -> Result<Bytes, EncodeError>;

    /// The cache's keys for this request: the prompt's and its context's.
    fn cache_keys(&self) -> RequestKeys;

    /// How answers to this request are read.
    fn answers(&self) -> &'static dyn AnswerFormat;
}

/// A body that could not be encoded again.
#[derive(Debug, thiserror::Error)]
#[error("cannot re-encode the request: {0}")]
pub struct EncodeError(pub String);

/// How an API's answers are read while they pass.
pub trait AnswerFormat: fmt::Debug + Send + Sync {
    /// The completion tokens the answer reports, from its last bytes.
    fn completion_tokens(&self, tail: &[u8]) -> Option<u32>;

    /// The events of a stream's `chunk`, counted toward an estimate of its
    /// completion tokens when it reports no usage (llama.cpp's server does
    /// not); `state` carries what the bytes before left open (start with
    /// `0`).
    fn stream_events(&self, chunk: &[u8], state: &mut u8) -> u32;

    /// The completion tokens `events` stream events stand for.
    fn tokens_of_events(&self, events: u32) -> Option<u32>;

    /// Whether a collected answer of `kind` is complete (worth storing).
    fn is_complete(&self, kind: AnswerKind, body: &[u8]) -> bool;
}
