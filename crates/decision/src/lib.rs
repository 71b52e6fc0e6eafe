//! The decision engine: signals in, a decision and its model out.
//!
//! Rules are boolean trees over signal predicates
//! ([`routemesh_common::Expr`]); decisions are tried in priority order and
//! the first whose rule holds wins, else the configured default. `eval` and
//! [`sampler`] (Beta posteriors, cost-aware Thompson choice) are pure: no
//! IO, no clock, no async, the RNG an argument. [`learner`] holds the
//! learned state and applies outcome events (idempotent by id); [`store`]
//! persists it in sled.

#![forbid(unsafe_code)]

mod eval;
pub mod learner;
pub mod sampler;
pub mod store;

pub use eval::{Action, Decided, decide, eval};
pub use learner::{Applied, ArmSnapshot, Learner};
