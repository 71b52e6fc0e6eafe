//! A FAKE OpenAI-compatible upstream: a test fixture and load-harness target, not a model.
//!
//! It answers `POST /v1/chat/completions` (JSON or SSE streaming) with canned or echoed words,
//! with controllable latency, token rate, reply length and injected failures, so the gateway can
//! be tested and benchmarked without a GPU. It also serves `GET /v1/models`, `GET /healthz` and
//! `GET /stats` (`{"requests": N, "last_authorization": …, "last_body": …, "last_headers": …}`:
//! chat requests seen, and the last one as received). Every response carries
//! `x-fake-upstream: NAME`.

mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use self::wire::{ChatRequest, Envelope, Usage};

/// The response header naming the fake that answered.
pub const IDENTITY_HEADER: &str = "x-fake-upstream";

/// How a fake upstream behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Identity: sent in `x-fake-upstream` and as the first word of canned replies.
    pub name: String,
    /// Models this fake serves; empty means any model is accepted.
    pub served_models: Vec<String>,
    /// Time before the first byte of every chat response (headers included).
    pub latency: Duration,
    /// Token rate: streamed chunks are spaced `1/rate` s and non-streaming replies wait
    /// `tokens/rate` s more. `0` means unlimited.
    pub tokens_per_sec: f64,
    /// Words in a canned reply (before `max_tokens` capping).
    pub reply_tokens: u32,
    /// Fraction in `[0, 1]` of valid requests answered with HTTP 500.
    pub error_rate: f64,
    /// Seed of the RNG that draws injected failures.
    pub seed: u64,
    /// Reply with the last user message's text instead of canned words.
    pub echo: bool,
    /// Cut every streamed answer off (the connection breaks, no `[DONE]`)
    /// after this many content chunks; `None` streams to the end.
    pub break_stream_after: Option<usize>,
    /// Answer the first `count` chat requests with HTTP `status` (an
    /// OpenAI-style error body), then normally: a flaky upstream.
    pub fail_first: Option<(u32, u16)>,
    /// The first this many streamed answers send their headers and then
    /// break the connection before any body byte.
    pub break_first_streams: u32,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            name: "fake".to_owned(),
            served_models: Vec::new(),
            latency: Duration::ZERO,
            tokens_per_sec: 0.0,
            reply_tokens: 16,
            error_rate: 0.0,
            seed: 0,
            echo: false,
            break_stream_after: None,
            fail_first: None,
            break_first_streams: 0,
        }
    }
}

/// A [`FakeConfig`] that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FakeConfigError {
    #[error("name {0:?} must be non-empty and a valid HTTP header value")]
    Name(String),
    #[error("error rate {0} must be within [0, 1]")]
    ErrorRate(f64),
    #[error("tokens per second {0} must be a finite number >= 0")]
    TokensPerSec(f64),
    #[error("fail_first status {0} is not an HTTP error status (400..=599)")]
    FailStatus(u16),
}

impl FakeConfig {
    /// Checks the values a command line or a test could get wrong.
    pub fn validate(&self) -> Result<(), FakeConfigError> {
        self.identity().map(drop)?;
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(FakeConfigError::ErrorRate(self.error_rate));
        }
        if !self.tokens_per_sec.is_finite() || self.tokens_per_sec < 0.0 {
            return Err(FakeConfigError::TokensPerSec(self.tokens_per_sec));
        }
        if let Some((_, status)) = self.fail_first
            && !(400..=599).contains(&status)
        {
            return Err(FakeConfigError::FailStatus(status));
        }
        Ok(())
    }

    fn identity(&self) -> Result<HeaderValue, FakeConfigError> {
        HeaderValue::from_str(&self.name)
            .ok()
            .filter(|_| !self.name.is_empty())
            .ok_or_else(|| FakeConfigError::Name(self.name.clone()))
    }

    /// Time to produce `tokens` tokens at the configured rate (zero when unlimited).
    fn token_time(&self, tokens: usize) -> Duration {
        if self.tokens_per_sec > 0.0 {
            Duration::try_from_secs_f64(tokens as f64 / self.tokens_per_sec)
                .unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }
}

/// Shared state of one fake.
#[derive(Debug)]
struct Fake {
    cfg: FakeConfig,
    requests: AtomicU64,
    /// Streamed answers started (for `break_first_streams`).
    streams: AtomicU64,
    /// The `Authorization` header of the last chat request (a fixture may
    /// show it: tests check that the gateway sends the configured key).
    last_authorization: Mutex<Option<String>>,
    /// The last chat request: its JSON body and its headers (lower-case
    /// names, the authorization header left out).
    last_request: Mutex<Option<(Value, serde_json::Map<String, Value>)>>,
    rng: Mutex<StdRng>,
}

impl Fake {
    fn serves(&self, model: &str) -> bool {
        self.cfg.served_models.is_empty() || self.cfg.served_models.iter().any(|m| m == model)
    }

    /// Draws once per valid request, so a seed gives the same failure sequence every run.
    fn should_fail(&self) -> bool {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.random::<f64>() < self.cfg.error_rate
    }
}

/// Builds the fake's router. Fails only if `cfg` does not [validate](FakeConfig::validate).
pub fn router(cfg: FakeConfig) -> Result<Router, FakeConfigError> {
    cfg.validate()?;
    let identity = cfg.identity()?;
    let fake = Arc::new(Fake {
        rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
        requests: AtomicU64::new(0),
        streams: AtomicU64::new(0),
        last_authorization: Mutex::new(None),
        last_request: Mutex::new(None),
        cfg,
    });
    let header = HeaderName::from_static(IDENTITY_HEADER);
    Ok(Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/stats", get(stats))
        .fallback(not_found)
        .with_state(fake)
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let (header, identity) = (header.clone(), identity.clone());
            async move {
                res.headers_mut().insert(header, identity);
                res
            }
        })))
}

/// Serves a fake on an already-bound listener until the process ends.
pub async fn serve(cfg: FakeConfig, listener: TcpListener) -> Result<(), FakeError> {
    let app = router(cfg)?;
    // Streamed chunks go out as they come: no Nagle delay on small writes.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.map_err(FakeError::Io)
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("invalid fake-upstream configuration: {0}")]
    Config(#[from] FakeConfigError),
    #[error("fake-upstream server failed: {0}")]
    Io(std::io::Error),
}

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let seq = fake.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *fake
        .last_authorization
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = auth;
    let seen_headers = headers
        .iter()
        .filter(|(k, _)| *k != header::AUTHORIZATION)
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_owned(),
                Value::String(v.to_str().ok()?.to_owned()),
            ))
        })
        .collect();
    *fake.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Some((
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        seen_headers,
    ));
    let request = match wire::parse_request(&body) {
        Ok(request) => request,
        Err(message) => {
            return error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
                None,
            );
        }
    };
    if !fake.serves(&request.model) {
        let message = format!("The model `{}` does not exist.", request.model);
        return error(
            StatusCode::NOT_FOUND,
            &message,
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        );
    }
    let fail = fake.should_fail();
    if !fake.cfg.latency.is_zero() {
        tokio::time::sleep(fake.cfg.latency).await;
    }
    if let Some((count, status)) = fake.cfg.fail_first
        && seq <= u64::from(count)
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let message = format!(
            "Injected failure {seq} of {count} from fake upstream `{}`.",
            fake.cfg.name
        );
        return error(status, &message, "server_error", None, None);
    }
    if fail {
        let message = format!("Injected failure from fake upstream `{}`.", fake.cfg.name);
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &message,
            "server_error",
            None,
            None,
        );
    }
    let reply = Reply::new(&fake.cfg, &request, seq);
    if let Some(tool) = request.tool_to_call() {
        return tool_call_reply(&reply, &tool, &request);
    }
    if request.is_stream() {
        let n = fake.streams.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= u64::from(fake.cfg.break_first_streams) {
            return broken_stream();
        }
        stream_reply(&fake.cfg, reply, request.include_usage())
    } else {
        let wait = fake.cfg.token_time(reply.pieces.len());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let content = reply.pieces.concat();
        Json(wire::completion(
            &reply.env,
            &content,
            reply.finish,
            reply.usage,
        ))
        .into_response()
    }
}

/// A request with tools: the fake calls the first, streamed (the call's
/// arguments in two chunks) or not.
fn tool_call_reply(reply: &Reply, tool: &str, request: &ChatRequest) -> Response {
    let arguments = json!({ "query": request.last_user_text() }).to_string();
    let env = &reply.env;
    if !request.is_stream() {
        return Json(wire::tool_call_completion(
            env,
            tool,
            &arguments,
            reply.usage,
        ))
        .into_response();
    }
    let (head, tail) = halves(&arguments);
    let mut call = wire::tool_call(env, tool, head);
    call["index"] = json!(0);
    let mut events = vec![
        wire::chunk(
            env,
            json!({ "role": "assistant", "content": null, "tool_calls": [call] }),
            None,
        ),
        wire::chunk(
            env,
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": tail } }] }),
            None,
        ),
        wire::chunk(env, json!({}), Some("tool_calls")),
    ]
    .into_iter()
    .map(|c| c.to_string())
    .collect::<Vec<_>>();
    if request.include_usage() {
        events.push(wire::usage_chunk(env, reply.usage).to_string());
    }
    events.push("[DONE]".to_owned());
    let body: String = events.iter().map(|e| wire::sse_event(e)).collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// `text` cut in two near its middle, at a character boundary.
fn halves(text: &str) -> (&str, &str) {
    let mut at = text.len() / 2;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.split_at(at)
}

/// What the fake answers to one valid request.
#[derive(Debug)]
struct Reply {
    env: Envelope,
    pieces: Vec<String>,
    finish: &'static str,
    usage: Usage,
}

impl Reply {
    fn new(cfg: &FakeConfig, request: &ChatRequest, seq: u64) -> Self {
        let mut pieces = if let Some(result) = request.tool_result() {
            wire::split_pieces(&format!("[{}] the tool said: {result}", cfg.name))
        } else if cfg.echo {
            wire::split_pieces(&request.last_user_text())
        } else {
            wire::canned_pieces(&cfg.name, cfg.reply_tokens)
        };
        let limit = request
            .token_limit()
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let finish = if pieces.len() > limit {
            pieces.truncate(limit);
            "length"
        } else {
            "stop"
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            env: Envelope {
                id: format!("chatcmpl-{}-{seq}", cfg.name),
                created,
                model: request.model.clone(),
            },
            usage: Usage {
                prompt: request.prompt_tokens(),
                completion: pieces.len() as u64,
            },
            pieces,
            finish,
        }
    }
}

/// An SSE response whose chunks are produced (and flushed) one at a time, spaced by the rate.
fn stream_reply(cfg: &FakeConfig, reply: Reply, include_usage: bool) -> Response {
    let spacing = cfg.token_time(1);
    let env = &reply.env;
    let mut events = Vec::with_capacity(reply.pieces.len() + 4);
    let first = wire::chunk(env, json!({ "role": "assistant", "content": "" }), None);
    events.push((Duration::ZERO, first.to_string()));
    for piece in &reply.pieces {
        let chunk = wire::chunk(env, json!({ "content": piece }), None);
        events.push((spacing, chunk.to_string()));
    }
    let last = wire::chunk(env, json!({}), Some(reply.finish));
    events.push((Duration::ZERO, last.to_string()));
    if include_usage {
        events.push((
            Duration::ZERO,
            wire::usage_chunk(env, reply.usage).to_string(),
        ));
    }
    events.push((Duration::ZERO, "[DONE]".to_owned()));
    // The role chunk, then `n` content chunks, then a broken connection.
    let cut = cfg.break_stream_after.map(|n| n + 1);
    let body = futures_util::stream::iter(events.into_iter().enumerate()).then(
        move |(i, (wait, payload))| async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if cut.is_some_and(|c| i >= c) {
                return Err(std::io::Error::other("stream cut off (break_stream_after)"));
            }
            Ok(Bytes::from(wire::sse_event(&payload)))
        },
    );
    let mut res = Response::new(Body::from_stream(body));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// An SSE response whose connection breaks after the headers, before any
/// body byte.
fn broken_stream() -> Response {
    let body = futures_util::stream::once(async {
        // Let the headers go out first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<Bytes, _>(std::io::Error::other(
            "stream cut off (break_first_streams)",
        ))
    });
    let mut res = Response::new(Body::from_stream(body));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    res
}

async fn models(State(fake): State<Arc<Fake>>) -> Json<Value> {
    let data: Vec<Value> = fake
        .cfg
        .served_models
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": fake.cfg.name }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `POST /v1/messages`: Anthropic's Messages API, canned: with `tools`
/// and no tool result in the last turn, a `tool_use` of the first tool
/// (`{"query": <last user text>}`); after a tool result, "the tool said:
/// …"; else canned words. Streamed as Messages events when asked. Needs
/// `x-api-key` when the fake was started with an expected key? No: it
/// records what it got (`/stats`), like the chat endpoint.
async fn messages(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.requests.fetch_add(1, Ordering::Relaxed);
    *fake
        .last_authorization
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("x-api-key {k}"));
    if headers.get("anthropic-version").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "anthropic-version: header is required" } })),
        )
            .into_response();
    }
    let turns = body["messages"].as_array().cloned().unwrap_or_default();
    let last = turns.last().cloned().unwrap_or(Value::Null);
    let blocks = last["content"].as_array().cloned().unwrap_or_default();
    let tool_result = blocks
        .iter()
        .find(|b| b["type"] == "tool_result")
        .map(|b| b["content"].as_str().unwrap_or_default().to_owned());
    let user_text = match &last["content"] {
        Value::String(s) => s.clone(),
        _ => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let tool = body["tools"][0]["name"]
        .as_str()
        .filter(|_| tool_result.is_none());
    let name = &fake.cfg.name;
    let id = format!("msg_{name}");
    let model = body["model"].clone();
    let (content, stop) = match (tool, &tool_result) {
        (Some(t), _) => (
            vec![
                json!({ "type": "tool_use", "id": format!("toolu_{name}"), "name": t, "input": { "query": user_text } }),
            ],
            "tool_use",
        ),
        (None, Some(r)) => (
            vec![json!({ "type": "text", "text": format!("[{name}] the tool said: {r}") })],
            "end_turn",
        ),
        (None, None) => (
            vec![
                json!({ "type": "text", "text": wire::canned_pieces(name, fake.cfg.reply_tokens).concat() }),
            ],
            "end_turn",
        ),
    };
    let usage = json!({ "input_tokens": 7, "output_tokens": fake.cfg.reply_tokens });
    if body["stream"] != true {
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop, "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let mut events = vec![(
        "message_start",
        json!({ "type": "message_start", "message": { "id": id, "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "usage": { "input_tokens": 7, "output_tokens": 0 } } }),
    )];
    for (i, block) in content.iter().enumerate() {
        if block["type"] == "text" {
            events.push(("content_block_start", json!({ "type": "content_block_start", "index": i, "content_block": { "type": "text", "text": "" } })));
            for piece in wire::split_pieces(block["text"].as_str().unwrap_or_default()) {
                events.push(("content_block_delta", json!({ "type": "content_block_delta", "index": i, "delta": { "type": "text_delta", "text": piece } })));
            }
        } else {
            events.push(("content_block_start", json!({ "type": "content_block_start", "index": i,
                "content_block": { "type": "tool_use", "id": block["id"], "name": block["name"], "input": {} } })));
            let args = block["input"].to_string();
            let (a, b) = halves(&args);
            for part in [a, b] {
                events.push(("content_block_delta", json!({ "type": "content_block_delta", "index": i, "delta": { "type": "input_json_delta", "partial_json": part } })));
            }
        }
        events.push((
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": i }),
        ));
        events.push(("ping", json!({ "type": "ping" })));
    }
    events.push(("message_delta", json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": fake.cfg.reply_tokens } })));
    events.push(("message_stop", json!({ "type": "message_stop" })));
    let text: String = events
        .iter()
        .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
        .collect();
    ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response()
}

/// `POST /v1/embeddings`: a deterministic 8-dimension vector per input
/// (a string or an array of strings), from the text's bytes.
async fn embeddings(State(fake): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "input: a string or strings",
                "invalid_request_error",
                Some("input"),
                None,
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut v = [0f32; 8];
            for (k, b) in text.bytes().enumerate() {
                v[k % 8] += f32::from(b) / 255.0;
            }
            json!({ "object": "embedding", "index": i, "embedding": v })
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.len().div_ceil(4)).sum();
    (
        [("x-fake-upstream", fake.cfg.name.clone())],
        Json(json!({
            "object": "list", "data": data, "model": body["model"],
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        })),
    )
        .into_response()
}

/// `POST /v1/completions`: the legacy text completion, canned words.
async fn completions(State(fake): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    let text = wire::canned_pieces(&fake.cfg.name, fake.cfg.reply_tokens).concat();
    Json(json!({
        "id": format!("cmpl-{}", fake.cfg.name), "object": "text_completion", "created": 0,
        "model": body["model"],
        "choices": [{ "text": text, "index": 0, "logprobs": null, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 1, "completion_tokens": fake.cfg.reply_tokens, "total_tokens": 1 + fake.cfg.reply_tokens },
    }))
    .into_response()
}

async fn stats(State(fake): State<Arc<Fake>>) -> Json<Value> {
    let auth = fake
        .last_authorization
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (last_body, last_headers) = fake
        .last_request
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or((Value::Null, serde_json::Map::new()));
    Json(json!({
        "requests": fake.requests.load(Ordering::Relaxed),
        "last_authorization": auth,
        "last_body": last_body,
        "last_headers": last_headers,
    }))
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "Unknown path.",
        "invalid_request_error",
        None,
        None,
    )
}

fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    (status, Json(wire::error_body(message, kind, param, code))).into_response()
}
