//! The routemesh gateway: routes each LLM API request to the model that
//! fits it.
//!
//! One [`pipeline`] carries every request from a parsed, API-neutral
//! [`pipeline::Request`] to a forwarded answer and its outcome (plan,
//! block, remember, cache, edits, the candidate walk, the outcome rule).
//! Front doors parse into it and render its results: [`http`] (axum: the
//! OpenAI-compatible API, the dry run, feedback, admin) and [`ext_proc`]
//! (Envoy's external processor, gRPC). Wire formats live in [`api`], one
//! module per API. Around the pipeline: [`classify`] embeds prompts
//! in-process or through a NATS worker pool; [`learning`] turns outcomes
//! and feedback into learner updates, locally or through JetStream;
//! [`cache`] scopes requests for the semantic cache and coalesces identical
//! misses; [`upstream`] forwards to the chosen model's upstream; [`server`]
//! wires state, listeners, readiness and shutdown; [`tracing_setup`]
//! installs the log and the optional OpenTelemetry span export.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cache;
pub mod classify;
pub mod config_file;
pub mod ext_proc;
pub mod http;
pub mod learning;
pub mod listener;
pub mod pipeline;
pub mod reload;
pub mod server;
mod startup;
pub mod state;
pub mod telemetry;
pub mod tracing_setup;
pub mod upstream;
