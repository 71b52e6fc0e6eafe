//! Integration tests of the gateway: the real `routemesh` binary, the real
//! MiniLM model, fake upstreams (loadtest's fixture) on loopback.

#![allow(unreachable_pub)]

mod harness;

mod api;
mod auth;
mod cache;
mod config_cli;
mod envoy_config;
mod errors;
mod ext_proc;
mod heads;
mod learning;
mod lifecycle;
mod mesh;
mod metrics;
mod openai_client;
mod otel;
mod pii;
mod routing;
mod streaming;
mod upstream;
