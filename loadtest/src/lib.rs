//! Test fixtures and benchmarks for routemesh: a FAKE OpenAI-compatible upstream (`fake`),
//! the routing replay benchmark (`replay`, its upstream simulated from recorded answers) and
//! the gateway latency benchmark (`bench`), with the `Server-Timing` parser it uses.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cache_bench;
pub mod fake;
pub mod loadgen;
pub mod mesh_bench;
pub mod multihost;
pub mod nats_server;
pub mod replay;
pub mod server_timing;

/// Installs rustls' `ring` crypto provider for the process (later calls are
/// no-ops). The workspace builds reqwest without a provider of its own (one
/// provider, shared with async-nats), so any process that builds a reqwest
/// client must call this first; the fake and the benchmark do.
pub fn install_tls_provider() {
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
