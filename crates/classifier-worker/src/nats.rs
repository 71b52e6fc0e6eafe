//! Connecting to NATS with the options both binaries share (URL,
//! credentials file, TLS).

use std::time::Duration;

use routemesh_common::config::NatsConfig;

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials file {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
}

/// Connects as `name`. The first connection attempt must succeed (so a
/// typo fails at start); after that the client reconnects by itself.
pub async fn connect(config: &NatsConfig, name: &str) -> Result<async_nats::Client, ConnectError> {
    // async-nats uses rustls; one process-wide provider (ring) avoids the
    // two-provider panic (FACTS.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    if let Some(path) = &config.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| ConnectError::Credentials {
                path: path.display().to_string(),
                source,
            })?;
    }
    if let Some(ca) = &config.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &config.tls_client_cert {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    if config.require_tls {
        opts = opts.require_tls(true);
    }
    opts.connect(config.url.as_str())
        .await
        .map_err(|e| ConnectError::Connect {
            url: config.url.clone(),
            detail: e.to_string(),
        })
}
