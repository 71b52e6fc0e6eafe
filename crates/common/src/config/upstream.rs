//! The validated `upstreams:` entries: endpoints, timeouts, retries and the
//! circuit breaker of each upstream.

use std::time::Duration;

/// One OpenAI-compatible upstream (a vLLM server, a hosted API), served by
/// one or more endpoints.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Where requests go; never empty (`base_url` is one endpoint of weight 1).
    pub endpoints: Vec<UpstreamEndpoint>,
    /// Environment variable holding the API key, sent as a bearer token.
    pub api_key_env: Option<String>,
    pub timeouts: UpstreamTimeouts,
    pub retries: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Which API dialect it speaks beyond the common OpenAI subset.
    pub family: UpstreamFamily,
    /// Which API it serves: chat completions, or Anthropic's Messages.
    pub api: UpstreamApi,
}

/// The API an upstream serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamApi {
    /// OpenAI-compatible: `/chat/completions`, `/embeddings`, `/completions`.
    #[default]
    OpenAi,
    /// Anthropic's `/messages` (the gateway translates chat completions).
    Anthropic,
}

/// The dialect of an upstream, for the parameters that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFamily {
    /// OpenAI and compatible hosted APIs: `reasoning_effort`.
    OpenAi,
    /// vLLM (and SGLang): `chat_template_kwargs.enable_thinking`.
    Vllm,
}

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamEndpoint {
    /// Base URL without a trailing slash, e.g. `http://10.0.0.5:8000/v1`.
    pub url: String,
    /// Share of the traffic, relative to the other endpoints' (≥ 1).
    pub weight: u32,
}

/// How long forwarding may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamTimeouts {
    /// Longest wait for a TCP (and TLS) connection to an endpoint.
    pub connect: Duration,
    /// Longest wait, per attempt, for the first byte of the response body
    /// (headers included).
    pub first_byte: Duration,
    /// Longest the whole forwarding may take, every attempt, backoff and
    /// the relayed body included (≥ `first_byte`).
    pub total: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Retries of one upstream, before falling back to the next candidate model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (0: no retries).
    pub attempts: u32,
    /// The first retry waits about this long; each further one twice as long.
    pub backoff: Duration,
    /// No wait is longer than this (a `Retry-After` included).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// The circuit breaker each endpoint of an upstream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that eject an endpoint.
    pub failures: u32,
    /// How long an ejected endpoint gets no traffic before it is probed.
    pub open_for: Duration,
    /// Requests let through at once to probe an endpoint (half-open).
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(10),
            probes: 1,
        }
    }
}
