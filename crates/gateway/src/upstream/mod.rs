//! The upstream pool: sends chat requests to OpenAI-compatible endpoints,
//! with retries, backoff and a circuit breaker per endpoint.
//!
//! Each upstream has one or more endpoints (weighted) and one HTTP client
//! (connection pool, its own connect timeout). [`UpstreamPool::forward`]
//! tries an endpoint chosen by weight among those whose breaker lets a
//! request through, preferring endpoints this request has not tried yet,
//! and retries with backoff while the failure happened before the first
//! byte of the response body: an answer is committed to only once its
//! first body byte has arrived, so a stream that breaks before it is
//! retried, one that breaks later is not. Falling back to another model is
//! the caller's business (a [`Failure`] says why this upstream gave up).
//!
//! The pure parts are [`breaker`] (the state machine) and [`policy`]
//! (weighted choice, backoff, what is retriable). API keys are read once at
//! start from the environment variables the config names, and never logged.

pub(crate) mod anthropic;
mod breaker;
mod policy;
#[cfg(test)]
mod tests;

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderValue, StatusCode};
use routemesh_common::Config;
use routemesh_common::config::{RetryPolicy, UpstreamApi, UpstreamId, UpstreamTimeouts};
use tokio::time::Instant;

use self::breaker::{Admission, Breaker, Transition};
use crate::telemetry::{UPSTREAM_ATTEMPTS_TOTAL, UPSTREAM_ENDPOINT_OPEN};

/// Most bytes of a retriable error's body kept to relay it if every
/// attempt fails.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// Forwarding failed before the upstream produced a response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{upstream}` is unreachable: {detail}")]
    Unreachable { upstream: String, detail: String },
    #[error("upstream `{upstream}` sent no response within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
}

/// Why a relayed body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Upstream(#[from] reqwest::Error),
    #[error("upstream `{0}` did not finish within its total timeout")]
    Deadline(String),
}

/// A response body as it arrives.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// A request as it goes to one upstream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The JSON body, `model` already the upstream's name for it.
    pub body: Bytes,
    /// The client's headers as forwarded.
    pub headers: HeaderMap,
    /// Which endpoint of the upstream's API it goes to.
    pub path: ApiPath,
}

/// An OpenAI-compatible endpoint, below an upstream's base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiPath {
    /// `/chat/completions`: what routed requests go to.
    ChatCompletions,
    /// `/embeddings`, passed through.
    Embeddings,
    /// `/completions` (legacy text completions), passed through.
    Completions,
}

impl ApiPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/chat/completions",
            Self::Embeddings => "/embeddings",
            Self::Completions => "/completions",
        }
    }
}

/// A response the gateway committed to: its first body byte has arrived
/// (or the body was empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The whole body, first chunk included, cut at the total timeout.
    pub body: BodyStream,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Every attempt on an upstream failed; the last one's result.
#[derive(Debug)]
pub enum Failure {
    /// No response: unreachable or timed out.
    Error(UpstreamError),
    /// No endpoint was asked: every one is ejected by its circuit breaker
    /// (the failures that opened them were already counted).
    NotAsked(UpstreamError),
    /// A retriable status (429, 502, 503, 504) with its body (up to 64 KiB).
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

#[derive(Debug)]
struct Endpoint {
    /// The base URL, without a trailing slash.
    url: String,
    weight: u32,
}

#[derive(Debug)]
struct Upstream {
    name: String,
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    /// One per endpoint, under one lock so a choice sees them all at once.
    breakers: Mutex<Vec<Breaker>>,
    auth: Option<HeaderValue>,
    /// The key alone, for an Anthropic upstream's `x-api-key`.
    key: Option<HeaderValue>,
    api: UpstreamApi,
    timeouts: UpstreamTimeouts,
    retries: RetryPolicy,
}

/// All configured upstreams.
#[derive(Debug)]
pub struct UpstreamPool {
    upstreams: Vec<Upstream>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Breaker updates are single assignments: a poisoned lock is consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UpstreamPool {
    /// Builds the pool, reading API keys from the environment.
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        routemesh_runtime::install_tls_provider();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
            let client = reqwest::Client::builder()
                .connect_timeout(u.timeouts.connect)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .build()?;
            let secret = u.api_key_env.as_deref().and_then(|var| match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    tracing::warn!(upstream = %u.name, env = %var, "API key variable is not set; sending no key");
                    None
                }
            });
            let sensitive = |text: String| {
                let mut v = HeaderValue::from_str(&text).ok()?;
                v.set_sensitive(true);
                Some(v)
            };
            let auth = secret
                .clone()
                .and_then(|k| sensitive(format!("Bearer {k}")));
            let key = secret.and_then(sensitive);
            for i in 0..u.endpoints.len() {
                endpoint_gauge(&u.name, i, false);
            }
            upstreams.push(Upstream {
                name: u.name.clone(),
                client,
                endpoints: u
                    .endpoints
                    .iter()
                    .map(|e| Endpoint {
                        url: e.url.clone(),
                        weight: e.weight,
                    })
                    .collect(),
                breakers: Mutex::new(vec![Breaker::new(u.breaker); u.endpoints.len()]),
                auth,
                key,
                api: u.api,
                timeouts: u.timeouts,
                retries: u.retries,
            });
        }
        Ok(Self { upstreams })
    }

    /// Name of an upstream, for logs and errors.
    pub fn name(&self, id: UpstreamId) -> &str {
        &self.upstreams[id.0].name
    }

    /// The `Authorization` value sent to upstream `id` (`Bearer` its API
    /// key), when it has a key.
    pub fn authorization(&self, id: UpstreamId) -> Option<&HeaderValue> {
        self.upstreams[id.0].auth.as_ref()
    }

    /// The `x-api-key` for upstream `id` (an Anthropic upstream's key).
    pub fn api_key(&self, id: UpstreamId) -> Option<&HeaderValue> {
        self.upstreams[id.0].key.as_ref()
    }

    /// POSTs a request (to `out.path`) to upstream `id`, retrying as its
    /// config says, until a response's first body byte arrives. `started`
    /// is when forwarding to this upstream began: its total timeout counts
    /// from it, and bounds the returned body too.
    pub async fn forward(
        &self,
        id: UpstreamId,
        out: &Outgoing,
        started: Instant,
    ) -> Result<Reply, Failure> {
        let u = &self.upstreams[id.0];
        if u.api == UpstreamApi::Anthropic {
            return u.forward_translated(out, started).await;
        }
        u.forward(out, started).await
    }

    /// Which API upstream `id` serves.
    pub fn api(&self, id: UpstreamId) -> UpstreamApi {
        self.upstreams[id.0].api
    }
}

impl Upstream {
    /// Chat completions to and from an Anthropic upstream: the request
    /// translated (what cannot be is a 400 in OpenAI's shape, no endpoint
    /// asked), then the answer, errors included.
    async fn forward_translated(&self, out: &Outgoing, started: Instant) -> Result<Reply, Failure> {
        let body = match anthropic::request(&out.body) {
            Ok(b) => b,
            Err(message) => {
                let body = serde_json::json!({ "error": {
                    "message": message, "type": "invalid_request_error", "param": null,
                    "code": "not_translatable",
                }});
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return Err(Failure::Status {
                    status: StatusCode::BAD_REQUEST,
                    headers,
                    body: Bytes::from(body.to_string()),
                });
            }
        };
        let translated = Outgoing {
            body: Bytes::from(body),
            headers: out.headers.clone(),
            path: out.path,
        };
        match self.forward(&translated, started).await {
            Ok(reply) => Ok(self.translate_reply(reply).await),
            Err(Failure::Status {
                status,
                mut headers,
                body,
            }) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Err(Failure::Status {
                    status,
                    headers,
                    body: Bytes::from(anthropic::error(&body).to_string()),
                })
            }
            Err(other) => Err(other),
        }
    }

    /// A Messages answer as a chat-completions one.
    async fn translate_reply(&self, reply: Reply) -> Reply {
        let Reply {
            status,
            mut headers,
            body,
        } = reply;
        let is_stream = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if status.is_success() && is_stream {
            return Reply {
                status,
                headers,
                body: anthropic::chunks(body),
            };
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let translated = match collect(body, 64 << 20).await {
            Ok(bytes) => Ok(Bytes::from(anthropic::whole(status, &bytes).to_string())),
            Err(e) => Err(e),
        };
        Reply {
            status,
            headers,
            body: Box::pin(futures_util::stream::iter([translated])),
        }
    }

    async fn forward(&self, out: &Outgoing, started: Instant) -> Result<Reply, Failure> {
        let u = self;
        let deadline = started + u.timeouts.total;
        let mut tried = vec![false; u.endpoints.len()];
        let mut last = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let Some(admitted) = u.admit(&tried) else {
                attempts_counter(&u.name, "breaker_open");
                tracing::info!(upstream = %u.name, attempt, "every endpoint is ejected by its circuit breaker");
                return Err(last.unwrap_or_else(|| {
                    Failure::NotAsked(UpstreamError::Unreachable {
                        upstream: u.name.clone(),
                        detail: "every endpoint is ejected by its circuit breaker".into(),
                    })
                }));
            };
            let ep = admitted.endpoint;
            tried[ep] = true;
            let now = Instant::now();
            let first_byte_by = (now + u.timeouts.first_byte).min(deadline);
            let failed = match u.attempt(ep, out, first_byte_by, deadline).await {
                Ok(answer) => {
                    let outcome = if answer.status.is_server_error() {
                        admitted.failure();
                        "error"
                    } else {
                        admitted.success();
                        "ok"
                    };
                    attempts_counter(&u.name, outcome);
                    return Ok(answer);
                }
                Err(f) => f,
            };
            if failed.endpoint_failure() {
                admitted.failure();
            } else {
                admitted.success();
            }
            let reason = failed.reason();
            let timed_out = matches!(failed, Attempt::Timeout);
            let retry_after = failed.retry_after();
            last = Some(failed.into_failure(u, first_byte_by == deadline));
            if attempt <= u.retries.attempts {
                let wait = policy::backoff(&u.retries, attempt, retry_after, &mut rand::rng());
                if Instant::now() + wait < deadline {
                    attempts_counter(&u.name, "retry");
                    tracing::info!(
                        upstream = %u.name,
                        endpoint = ep,
                        attempt,
                        reason,
                        wait_ms = wait.as_millis() as u64,
                        "upstream attempt failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            attempts_counter(&u.name, if timed_out { "timeout" } else { "error" });
            tracing::info!(upstream = %u.name, endpoint = ep, attempt, reason, "upstream attempt failed; giving up on this upstream");
            return Err(last.unwrap_or_else(|| unreachable_failure(u)));
        }
    }
}

fn unreachable_failure(u: &Upstream) -> Failure {
    Failure::Error(UpstreamError::Unreachable {
        upstream: u.name.clone(),
        detail: "no attempt was made".into(),
    })
}

/// How one attempt failed.
enum Attempt {
    /// No response, or it broke before its first body byte.
    Transport {
        detail: String,
        reason: &'static str,
    },
    /// No first byte in time.
    Timeout,
    /// A retriable status.
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
}

impl Attempt {
    fn reason(&self) -> &'static str {
        match self {
            Self::Transport { reason, .. } => reason,
            Self::Timeout => "timeout",
            Self::Status { status, .. } => match status.as_u16() {
                429 => "status_429",
                502 => "status_502",
                503 => "status_503",
                _ => "status_504",
            },
        }
    }

    fn endpoint_failure(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout => true,
            Self::Status { status, .. } => policy::endpoint_failure(*status),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { headers, .. } => policy::retry_after(headers),
            _ => None,
        }
    }

    /// `total`: the attempt was cut by the total timeout, not its own.
    fn into_failure(self, u: &Upstream, total: bool) -> Failure {
        match self {
            Self::Transport { detail, .. } => Failure::Error(UpstreamError::Unreachable {
                upstream: u.name.clone(),
                detail,
            }),
            Self::Timeout => Failure::Error(UpstreamError::Timeout {
                upstream: u.name.clone(),
                timeout: if total {
                    u.timeouts.total
                } else {
                    u.timeouts.first_byte
                },
            }),
            Self::Status {
                status,
                headers,
                body,
            } => Failure::Status {
                status,
                headers,
                body,
            },
        }
    }
}

fn transport(e: &reqwest::Error) -> Attempt {
    let reason = if e.is_timeout() {
        "connect_timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "closed"
    };
    Attempt::Transport {
        detail: error_chain(e),
        reason,
    }
}

type ReqwestBody = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

impl Upstream {
    /// Chooses an endpoint and lets the request through its breaker.
    fn admit(&self, tried: &[bool]) -> Option<Admitted<'_>> {
        let now = Instant::now().into_std();
        let mut breakers = lock(&self.breakers);
        let open: Vec<(usize, u32)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|&(i, _)| breakers[i].available(now))
            .map(|(i, e)| (i, e.weight))
            .collect();
        let fresh: Vec<(usize, u32)> = open.iter().copied().filter(|&(i, _)| !tried[i]).collect();
        let pool = if fresh.is_empty() { &open } else { &fresh };
        let endpoint = policy::pick_weighted(pool, &mut rand::rng())?;
        let admission = breakers[endpoint].admit(now)?;
        Some(Admitted {
            upstream: self,
            endpoint,
            admission,
            settled: false,
        })
    }

    /// One attempt on endpoint `ep`, until the response's first body byte.
    async fn attempt(
        &self,
        ep: usize,
        out: &Outgoing,
        first_byte_by: Instant,
        deadline: Instant,
    ) -> Result<Reply, Attempt> {
        let path = match self.api {
            UpstreamApi::OpenAi => out.path.as_str(),
            UpstreamApi::Anthropic => "/messages",
        };
        let mut req = self
            .client
            .post(format!("{}{path}", self.endpoints[ep].url))
            .headers(out.headers.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(out.body.clone());
        match self.api {
            UpstreamApi::OpenAi => {
                if let Some(auth) = &self.auth {
                    req = req.header(http::header::AUTHORIZATION, auth.clone());
                }
            }
            UpstreamApi::Anthropic => {
                req = req.header("anthropic-version", anthropic::VERSION);
                if let Some(key) = &self.key {
                    req = req.header("x-api-key", key.clone());
                }
            }
        }
        let work = async {
            let resp = req.send().await.map_err(|e| transport(&e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body: ReqwestBody = Box::pin(resp.bytes_stream());
            if policy::retriable_status(status) {
                let body = read_capped(&mut body, ERROR_BODY_CAP).await;
                return Err(Attempt::Status {
                    status,
                    headers,
                    body,
                });
            }
            let first = match body.next().await {
                Some(Ok(chunk)) => Some(chunk),
                None => None,
                Some(Err(e)) => {
                    return Err(Attempt::Transport {
                        detail: error_chain(&e),
                        reason: "broken_before_first_byte",
                    });
                }
            };
            Ok(Reply {
                status,
                headers,
                body: bounded(first, body, deadline, self.name.clone()),
            })
        };
        match tokio::time::timeout_at(first_byte_by, work).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Timeout),
        }
    }

    fn settle(&self, endpoint: usize, change: impl FnOnce(&mut Breaker) -> Transition) {
        let transition = change(&mut lock(&self.breakers)[endpoint]);
        match transition {
            Transition::None => {}
            Transition::Opened => {
                endpoint_gauge(&self.name, endpoint, true);
                tracing::warn!(upstream = %self.name, endpoint, "endpoint ejected by its circuit breaker");
            }
            Transition::Closed => {
                endpoint_gauge(&self.name, endpoint, false);
                tracing::info!(upstream = %self.name, endpoint, "endpoint back: a probe succeeded");
            }
        }
    }
}

/// A request let through an endpoint's breaker; dropped without a result
/// (the client left), it frees its probe slot.
struct Admitted<'a> {
    upstream: &'a Upstream,
    endpoint: usize,
    admission: Admission,
    settled: bool,
}

impl Admitted<'_> {
    fn success(mut self) {
        self.settled = true;
        let a = self.admission;
        self.upstream.settle(self.endpoint, |b| b.success(a));
    }

    fn failure(mut self) {
        self.settled = true;
        let a = self.admission;
        let now = Instant::now().into_std();
        self.upstream.settle(self.endpoint, |b| b.failure(a, now));
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled {
            lock(&self.upstream.breakers)[self.endpoint].abandoned(self.admission);
        }
    }
}

/// Reads up to `cap` bytes of a body (an error's), keeping what arrived.
async fn read_capped(body: &mut ReqwestBody, cap: usize) -> Bytes {
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= cap {
            break;
        }
    }
    Bytes::from(buf)
}

/// The first chunk, then the rest of the body, cut at `deadline`.
fn bounded(first: Option<Bytes>, rest: ReqwestBody, deadline: Instant, name: String) -> BodyStream {
    let head = futures_util::stream::iter(first.map(Ok));
    let tail = futures_util::stream::unfold(Some(rest), move |rest| {
        let name = name.clone();
        async move {
            let mut rest = rest?;
            match tokio::time::timeout_at(deadline, rest.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(rest))),
                Ok(Some(Err(e))) => Some((Err(BodyError::Upstream(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(BodyError::Deadline(name)), None)),
            }
        }
    });
    Box::pin(head.chain(tail))
}

fn attempts_counter(upstream: &str, outcome: &'static str) {
    metrics::counter!(UPSTREAM_ATTEMPTS_TOTAL, "upstream" => upstream.to_owned(), "outcome" => outcome)
        .increment(1);
}

fn endpoint_gauge(upstream: &str, endpoint: usize, open: bool) {
    metrics::gauge!(UPSTREAM_ENDPOINT_OPEN, "upstream" => upstream.to_owned(), "endpoint" => endpoint.to_string())
        .set(if open { 1.0 } else { 0.0 });
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

/// A body read whole, up to `cap` bytes (the rest is not read): an answer
/// to translate, or an error answer kept to relay.
pub(crate) async fn collect(mut body: BodyStream, cap: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while out.len() < cap {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]);
            }
            None => break,
        }
    }
    Ok(out)
}
