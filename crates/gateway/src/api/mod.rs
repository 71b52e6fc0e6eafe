//! The wire formats the gateway speaks, one module per API: each parses
//! its requests into the pipeline's [`Request`](crate::pipeline::Request),
//! is the [`Payload`](crate::pipeline::Payload) codec that edits and
//! re-encodes them, reads its answers
//! ([`AnswerFormat`](crate::pipeline::AnswerFormat)) and writes its errors.
//! Front doors (HTTP, ext_proc) pick the API; nothing else reads its JSON.

pub mod anthropic;
pub mod client;
pub mod openai;
pub mod sse;
