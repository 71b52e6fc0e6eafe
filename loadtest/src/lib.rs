//! Benchmarks for routemesh: the gateway latency benchmark (`bench`), with the `Server-Timing`
//! parser it uses, the load generator (`loadgen`), the mesh and cache benchmarks, the
//! multi-host test's driver, the chaos suite (`chaos`) and the routing replay benchmark
//! (`replay`, its upstream simulated from recorded answers). The fixtures they run against (the
//! FAKE upstream, the nats-server launcher) are in routemesh-test-support; the `fake-upstream`
//! binary is here.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cache_bench;
pub mod chaos;
pub mod loadgen;
pub mod mesh_bench;
pub mod multihost;
pub mod replay;
pub mod server_timing;
