//! The routemesh gateway: an OpenAI-compatible HTTP front that routes each
//! request to the model that fits it.
//!
//! [`http`] is the only module that knows the OpenAI wire format;
//! [`pipeline`] turns a request into a [`pipeline::RoutePlan`] (classify,
//! decide, choose a candidate); [`classify`] embeds prompts in-process or
//! through a NATS worker pool; [`learning`] turns outcomes and feedback
//! into learner updates, locally or through JetStream; [`cache`] keys
//! requests for the semantic cache and coalesces identical misses; [`upstream`]
//! forwards to the chosen model's upstream; [`server`] wires state,
//! listener, readiness and shutdown; [`ext_proc`] serves the same
//! planning to Envoy as an external processor (gRPC); [`tracing_setup`] installs the log and
//! the optional OpenTelemetry span export.

#![forbid(unsafe_code)]

pub mod answer;
pub mod auth;
pub mod cache;
pub mod classify;
pub mod config_file;
pub mod ext_proc;
pub mod http;
pub mod learning;
pub mod pipeline;
pub mod reload;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tracing_setup;
pub mod upstream;
