//! What routemesh's binaries (the gateway and the classifier worker) need to
//! run, written once.
//!
//! [`install_tls_provider`] installs the process's rustls crypto provider;
//! [`nats::connect`] connects to NATS with URL, credentials and TLS;
//! [`exposition`] is the Prometheus recorder with its buckets and a metrics
//! listener of its own; [`shutdown_signal`] resolves on SIGINT or SIGTERM.
//! Nothing here knows a route, a model or the OpenAI API.

#![forbid(unsafe_code)]

pub mod exposition;
pub mod nats;
mod shutdown;
mod tls;

pub use shutdown::shutdown_signal;
pub use tls::install_tls_provider;
