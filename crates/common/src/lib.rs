//! Shared vocabulary of routemesh: configuration, signals and the rule tree.
//!
//! This crate does no IO. The gateway reads the config file; this crate turns
//! its text into a validated [`config::Config`].

#![forbid(unsafe_code)]

pub mod config;
pub mod rules;
pub mod signals;
pub mod wire;

pub use config::Config;
pub use rules::{Expr, Predicate};
pub use signals::{PiiKind, PiiSpan, Signals};
