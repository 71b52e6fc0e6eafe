//! The decision engine: signals in, a decision and its model out.
//!
//! Rules are boolean trees over signal predicates
//! ([`routemesh_common::Expr`]); decisions are tried in priority order and
//! the first whose rule holds wins, else the configured default. `eval` and
//! [`sampler`] (the Thompson sampler learning will drive: Beta posteriors,
//! cost-aware choice) are pure: no IO, no clock, no async, the RNG an
//! argument. [`store`] is the IO shell: posteriors persisted in sled.

#![forbid(unsafe_code)]

mod eval;
pub mod sampler;
pub mod store;

pub use eval::{Decided, decide, eval};
