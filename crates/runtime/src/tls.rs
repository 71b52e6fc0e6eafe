//! The process's rustls crypto provider, installed once for every TLS user
//! (reqwest, async-nats, the OTLP exporter).

/// Installs rustls' `ring` crypto provider for the process (once; later
/// calls are no-ops). reqwest is built without a provider of its own and
/// async-nats uses ring too, so exactly one provider is compiled in and none
/// is ever chosen twice (the two-provider panic, FACTS.md). Call it before
/// the first TLS client is built.
pub fn install_tls_provider() {
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
