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
    crate::install_tls_provider();
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
    // `nats://a:4222,nats://b:4222`: every server of a cluster (async-nats
    // does not split the string itself).
    let fail = |detail: String| ConnectError::Connect {
        url: config.url.clone(),
        detail,
    };
    let servers = config
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::parse::<async_nats::ServerAddr>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    opts.connect(servers).await.map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};

    use super::*;

    /// A nats-server on a free loopback port; killed on drop.
    struct Server(Child, u16);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn server() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .unwrap_or("nats-server");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (scripts/test.sh installs it)");
        let s = Server(child, port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            // Real: polling a child process (nats-server) until it listens.
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not start on {port}");
    }

    #[tokio::test]
    async fn a_comma_separated_url_lists_every_server() {
        let s = server();
        // The first server is down; the list still connects, to the second.
        let url = format!("nats://127.0.0.1:1, nats://127.0.0.1:{}", s.1);
        let client = connect(&NatsConfig::plain(url), "test")
            .await
            .expect("connects through the second server");
        assert_eq!(client.server_info().port, s.1);

        let bad = connect(&NatsConfig::plain("nats://127.0.0.1:1,nats://[::1"), "test").await;
        assert!(
            matches!(bad, Err(ConnectError::Connect { .. })),
            "a malformed entry is an error"
        );
    }
}
