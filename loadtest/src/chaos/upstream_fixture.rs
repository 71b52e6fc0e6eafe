//! A controllable FAKE OpenAI-compatible upstream (a test fixture, not a model), run as
//! `chaos upstream-fixture` so the upstream scenario can also SIGKILL it. `POST /chaos/mode`
//! with one of these bodies switches how `POST /v1/chat/completions` answers:
//!
//! - `ok`: a canned answer (JSON, or SSE with `"stream": true`) at once;
//! - `slow`: the same, streamed at 10 chunks per second (20 chunks);
//! - `stall`: accepts the request and never answers;
//! - `error:STATUS`: an OpenAI-style error with that status;
//! - `cut:N`: streams N content chunks, then breaks the connection (a JSON answer breaks
//!   halfway through).
//!
//! Every response carries `x-fake-upstream: NAME`, as loadtest's `fake-upstream` does, so a
//! client can tell an answer relayed from it from one the gateway made.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::ChaosError;

/// How the fixture answers chat requests now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Slow,
    Stall,
    Error(u16),
    Cut(usize),
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "ok" => Ok(Self::Ok),
            "slow" => Ok(Self::Slow),
            "stall" => Ok(Self::Stall),
            _ => {
                if let Some(code) = s.strip_prefix("error:") {
                    code.parse()
                        .map(Self::Error)
                        .map_err(|e| format!("{s}: {e}"))
                } else if let Some(n) = s.strip_prefix("cut:") {
                    n.parse().map(Self::Cut).map_err(|e| format!("{s}: {e}"))
                } else {
                    Err(format!(
                        "unknown mode `{s}` (ok, slow, stall, error:STATUS, cut:N)"
                    ))
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Fixture {
    name: HeaderValue,
    mode: Arc<Mutex<Mode>>,
}

/// Serves the fixture on `listen` until the process ends; prints
/// `fake-upstream listening on http://ADDR` once bound.
pub async fn serve(listen: &str, name: &str) -> Result<(), ChaosError> {
    let fixture = Fixture {
        name: HeaderValue::from_str(name).map_err(|e| ChaosError::setup(format!("name: {e}")))?,
        mode: Arc::new(Mutex::new(Mode::Ok)),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chaos/mode", post(set_mode))
        .with_state(fixture);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "fake-upstream listening on http://{addr}")?;
        out.flush()?;
    }
    axum::serve(listener, app).await?;
    Ok(())
}

async fn set_mode(State(f): State<Fixture>, body: String) -> Response {
    match body.parse::<Mode>() {
        Ok(m) => {
            if let Ok(mut mode) = f.mode.lock() {
                *mode = m;
            }
            (StatusCode::OK, "ok").into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn chat(State(f): State<Fixture>, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = req["model"].as_str().unwrap_or("unknown").to_owned();
    let stream = req["stream"].as_bool().unwrap_or(false);
    let mode = f.mode.lock().map(|m| m.clone()).unwrap_or(Mode::Ok);
    let mut res = match mode {
        Mode::Stall => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        Mode::Error(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({ "error": { "message": "injected by the chaos fixture", "type": "server_error", "param": null, "code": null } });
            (status, axum::Json(body)).into_response()
        }
        Mode::Ok => answer(&model, stream, 8, None, None),
        Mode::Slow => answer(&model, stream, 20, Some(Duration::from_millis(100)), None),
        Mode::Cut(n) => answer(&model, stream, n + 8, None, Some(n)),
    };
    res.headers_mut().insert("x-fake-upstream", f.name.clone());
    res
}

/// A canned answer of `words` words; `spacing` between streamed chunks; `cut` breaks it.
fn answer(
    model: &str,
    stream: bool,
    words: usize,
    spacing: Option<Duration>,
    cut: Option<usize>,
) -> Response {
    let id = "chatcmpl-chaos";
    if !stream {
        let text = (0..words)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let body = json!({
            "id": id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1 },
        })
        .to_string()
        .into_bytes();
        if cut.is_some() {
            let half = Bytes::copy_from_slice(&body[..body.len() / 2]);
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::other("cut by the chaos fixture")),
            ];
            let mut res = Response::new(Body::from_stream(futures_util::stream::iter(parts)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return res;
        }
        let mut res = Response::new(Body::from(body));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return res;
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        let c = json!({ "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
    events.extend((0..words).map(|i| chunk(json!({ "content": format!(" word{i}") }), None)));
    events.push(chunk(json!({}), Some("stop")));
    events.push("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let events = events.clone();
        async move {
            let event = events.get(i)?.clone();
            if i > 0
                && let Some(d) = spacing
            {
                tokio::time::sleep(d).await;
            }
            if cut.is_some_and(|n| i > n) {
                // Let the chunks before it reach the gateway, then break.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Some((
                    Err(std::io::Error::other("cut by the chaos fixture")),
                    usize::MAX - 1,
                ));
            }
            Some((Ok::<_, std::io::Error>(Bytes::from(event)), i + 1))
        }
    });
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    res
}

/// Switches a running fixture's mode.
pub async fn set(client: &reqwest::Client, base: &str, mode: &str) -> Result<(), ChaosError> {
    let r = client
        .post(format!("{base}/chaos/mode"))
        .body(mode.to_owned())
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(ChaosError::setup(format!(
            "fixture refused mode `{mode}`: {}",
            r.status()
        )));
    }
    Ok(())
}
