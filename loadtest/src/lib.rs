//! Test fixtures and benchmarks for routemesh: a FAKE OpenAI-compatible upstream (`fake`) and
//! the gateway latency benchmark (`bench`), with the `Server-Timing` parser it uses.
#![forbid(unsafe_code)]

pub mod bench;
pub mod fake;
pub mod server_timing;
