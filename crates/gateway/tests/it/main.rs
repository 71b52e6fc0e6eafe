//! Integration tests of the gateway: the real `routemesh` binary, the real
//! MiniLM model, fake upstreams on loopback; the harness is
//! `routemesh_test_support::gateway`.

#![allow(unreachable_pub)]

mod anthropic_client;
mod api;
mod auth;
mod cache;
mod config_cli;
mod dialects;
mod envoy_config;
mod errors;
mod ext_proc;
mod ext_proc_apis;
mod heads;
mod learning;
mod lifecycle;
mod listener;
mod mesh;
mod metrics;
mod openai_client;
mod otel;
mod pii;
mod prompts;
mod real_model;
mod routing;
mod streaming;
mod upstream;
