//! The upstream pool: sends chat requests to OpenAI-compatible base URLs.
//!
//! One HTTP client (connection pool) for all upstreams; each upstream's API
//! key is read once at start from the environment variable the config names,
//! and never logged.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use routemesh_common::Config;
use routemesh_common::config::UpstreamId;

/// Forwarding failed before the upstream produced response headers.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{upstream}` is unreachable: {detail}")]
    Unreachable { upstream: String, detail: String },
    #[error("upstream `{upstream}` sent no response within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
}

#[derive(Debug)]
struct Upstream {
    name: String,
    chat_url: String,
    auth: Option<HeaderValue>,
    timeout: Duration,
}

/// All configured upstreams.
#[derive(Debug)]
pub struct UpstreamPool {
    client: reqwest::Client,
    upstreams: Vec<Upstream>,
}

impl UpstreamPool {
    /// Builds the pool, reading API keys from the environment.
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        install_tls_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let auth = u.api_key_env.as_deref().and_then(|var| match std::env::var(var) {
                    Ok(key) if !key.is_empty() => {
                        let mut v = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
                        v.set_sensitive(true);
                        Some(v)
                    }
                    _ => {
                        tracing::warn!(upstream = %u.name, env = %var, "API key variable is not set; sending no key");
                        None
                    }
                });
                Upstream {
                    name: u.name.clone(),
                    chat_url: format!("{}/chat/completions", u.base_url),
                    auth,
                    timeout: u.timeout,
                }
            })
            .collect();
        Ok(Self { client, upstreams })
    }

    /// Name of an upstream, for logs and errors.
    pub fn name(&self, id: UpstreamId) -> &str {
        &self.upstreams[id.0].name
    }

    /// POSTs a chat-completions body with `headers` (the client's, as
    /// forwarded) and waits for the response headers; the body is left for
    /// the caller to stream.
    pub async fn send_chat(
        &self,
        id: UpstreamId,
        body: Bytes,
        headers: http::HeaderMap,
    ) -> Result<reqwest::Response, UpstreamError> {
        let u = &self.upstreams[id.0];
        let mut req = self
            .client
            .post(&u.chat_url)
            .headers(headers)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = &u.auth {
            req = req.header(http::header::AUTHORIZATION, auth.clone());
        }
        match tokio::time::timeout(u.timeout, req.send()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_timeout() => Err(UpstreamError::Timeout {
                upstream: u.name.clone(),
                timeout: u.timeout,
            }),
            Ok(Err(e)) => Err(UpstreamError::Unreachable {
                upstream: u.name.clone(),
                detail: error_chain(&e),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                upstream: u.name.clone(),
                timeout: u.timeout,
            }),
        }
    }
}

/// Installs rustls' `ring` crypto provider for the process (once; later
/// calls are no-ops). reqwest is built without a provider of its own so that
/// exactly one is compiled in.
pub fn install_tls_provider() {
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `e` and its sources on one line (reqwest's top error says little alone).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
