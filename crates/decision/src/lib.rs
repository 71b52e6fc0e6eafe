//! The decision engine: signals in, a decision and its model out.
//!
//! Pure code: no IO, no clock, no async. [`sampler`] is the Thompson sampler
//! (Beta posteriors, cost-aware choice) that learning will drive. Rules are boolean trees over signal
//! predicates ([`routemesh_common::Expr`]); decisions are tried in priority
//! order and the first whose rule holds wins, else the configured default.

#![forbid(unsafe_code)]

mod eval;
pub mod sampler;

pub use eval::{Decided, decide, eval};
