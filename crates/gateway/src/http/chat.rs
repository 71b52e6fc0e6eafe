//! `POST /v1/chat/completions`: plan the request, forward it, relay the answer.
//!
//! The upstream's body is relayed as it arrives, chunk by chunk, for both
//! streaming (SSE) and plain responses: the gateway never buffers an answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use routemesh_common::config::HeaderEdits;
use routemesh_common::wire::OutcomeEvent;

use super::error::ApiError;
use super::meta::{self, RequestId, Trace};
use crate::learning::Learning;
use crate::pipeline::Target;
use crate::state::AppState;
use routemesh_classifier_worker::pii;

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut trace = Trace::start(id);
    let result = handle(&state, &headers, body, &mut trace).await;
    let resp = trace.respond(result);
    tracing::info!(
        request_id = %trace.id,
        decision = trace.decision.as_deref().unwrap_or("-"),
        model = trace.model.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = trace.started.elapsed().as_secs_f64() * 1e3,
        "chat completion"
    );
    resp
}

async fn handle(
    state: &AppState,
    client_headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    trace: &mut Trace,
) -> Result<Response, ApiError> {
    let (mut req, plan) = meta::read_and_plan(state, body, trace).await?;
    let forward = match plan.target {
        Target::Block { message } => return Err(ApiError::Blocked { message }),
        Target::Model(f) => f,
    };
    let model = state.config.model(forward.model);
    // Only routed requests teach the learner: a passthrough names its model.
    let learn = plan.routed.is_some().then(|| Outcomes {
        learning: state.learning.clone(),
        decision: plan.decision.clone(),
        model: model.name.clone(),
        slo: forward.slo,
        started: trace.started,
    });
    if let Some(o) = &learn {
        state.learning.remember(&trace.id, &o.decision, &o.model);
    }
    if !forward.redact_pii.is_empty() {
        let kinds = &forward.redact_pii;
        let redacted = req.redact_text(|text| {
            let spans: Vec<_> = state
                .pii
                .detect(text)
                .into_iter()
                .filter(|s| kinds.contains(&s.kind))
                .collect();
            (!spans.is_empty()).then(|| (pii::redact(text, &spans), spans.len()))
        });
        trace.redacted = redacted;
    }
    if let Some(sp) = &forward.system_prompt {
        req.set_system_prompt(sp);
    }
    if let Some(r) = forward.reasoning {
        req.set_reasoning(r, state.config.upstream(model.upstream).family);
    }
    let upstream_body = req
        .upstream_body(&model.upstream_model)
        .map_err(|e| ApiError::bad_request(format!("cannot re-encode the request: {e}"), None))?;
    let headers = forwarded_headers(client_headers, &forward.headers);
    let started = Instant::now();
    let sent = state
        .upstreams
        .send_chat(model.upstream, upstream_body.into(), headers)
        .await;
    trace.stages.push(("upstream", started.elapsed()));
    let upstream = match sent {
        Ok(u) => u,
        Err(e) => {
            if let Some(o) = learn {
                o.failed("upstream_error");
            }
            return Err(e.into());
        }
    };
    let status = upstream.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(o) = learn {
            o.failed("upstream_error");
        }
        return Ok(relay(upstream, None));
    }
    // A 4xx other than 429 is the request's fault, not the model's.
    Ok(relay(upstream, learn.filter(|_| status.is_success())))
}

/// Where a routed request's implicit outcome goes.
struct Outcomes {
    learning: Arc<Learning>,
    decision: String,
    model: String,
    slo: Option<Duration>,
    started: Instant,
}

impl Outcomes {
    /// Reward 0: the model did not answer.
    fn failed(self, source: &str) {
        let event = OutcomeEvent::new(self.decision, self.model, Some(0.0), source);
        self.learning.report_in_background(event);
    }

    /// The answer ended: an SLO miss is a reward of 0; otherwise only the
    /// usage (when the answer reported it) is recorded, since whether the
    /// answer was good is for feedback to say.
    fn finished(self, completion_tokens: Option<u32>) {
        let slow = self.slo.is_some_and(|slo| self.started.elapsed() > slo);
        let reward = slow.then_some(0.0);
        if reward.is_none() && completion_tokens.is_none() {
            return;
        }
        let source = if slow { "slo" } else { "usage" };
        let mut event = OutcomeEvent::new(self.decision, self.model, reward, source);
        event.completion_tokens = completion_tokens;
        self.learning.report_in_background(event);
    }
}

/// Client headers the gateway never forwards: framing, the client's own
/// credentials (the upstream gets the gateway's key), cookies and the
/// gateway's headers.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::ACCEPT_ENCODING,
    header::AUTHORIZATION,
    header::COOKIE,
];

/// The client's end-to-end headers, edited as the decision says.
fn forwarded_headers(client: &HeaderMap, edits: &HeaderEdits) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in client {
        let n = name.as_str();
        if NOT_RELAYED.contains(name)
            || NOT_FORWARDED.contains(name)
            || n == "keep-alive"
            || n.starts_with("x-routemesh-")
            || edits.remove.iter().any(|r| r == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    for (name, value) in &edits.add {
        // Names and values were checked when the config was loaded.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.insert(n, v);
        }
    }
    out
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus framing the gateway redoes itself.
const NOT_RELAYED: &[HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Streams the upstream's status, headers and body back to the client;
/// with `outcomes`, reports how the answer ended once it has.
fn relay(upstream: reqwest::Response, outcomes: Option<Outcomes>) -> Response {
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for name in NOT_RELAYED {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    let routemesh: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-routemesh-"))
        .cloned()
        .collect();
    for name in routemesh {
        headers.remove(name);
    }
    let sse = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    let body = match outcomes {
        None => Body::from_stream(upstream.bytes_stream()),
        Some(outcomes) => Body::from_stream(observed(upstream.bytes_stream(), outcomes)),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Bytes of the end of an answer kept to find its `usage`.
const TAIL: usize = 4096;

/// Passes the body through unchanged, keeping its last bytes; at the end
/// reports the outcome (usage, SLO), or a failure if the stream broke.
/// A client that hangs up early reports nothing.
fn observed<S>(body: S, outcomes: Outcomes) -> impl Stream<Item = Result<Bytes, reqwest::Error>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
{
    futures_util::stream::unfold(
        (Box::pin(body), Some(outcomes), Vec::<u8>::new()),
        |(mut body, mut outcomes, mut tail)| async move {
            match body.next().await {
                Some(Ok(chunk)) => {
                    tail.extend_from_slice(&chunk);
                    if tail.len() > TAIL {
                        tail.drain(..tail.len() - TAIL);
                    }
                    Some((Ok(chunk), (body, outcomes, tail)))
                }
                Some(Err(e)) => {
                    if let Some(o) = outcomes.take() {
                        o.failed("upstream_error");
                    }
                    Some((Err(e), (body, outcomes, tail)))
                }
                None => {
                    if let Some(o) = outcomes.take() {
                        o.finished(completion_tokens(&tail));
                    }
                    None
                }
            }
        },
    )
}

/// The last `"completion_tokens": N` in a JSON body or SSE stream.
fn completion_tokens(tail: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"completion_tokens\"";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &tail[at + KEY.len()..];
    let rest = rest
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == b':'))
        .map(|i| &rest[i..])?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_at_the_end_of_json_and_sse_bodies() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens": 42,"total_tokens":47}}"#;
        assert_eq!(completion_tokens(json), Some(42));
        let sse = b"data: {\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        assert_eq!(completion_tokens(sse), Some(7));
        assert_eq!(completion_tokens(b"data: {\"choices\":[]}"), None);
    }

    #[test]
    fn client_headers_are_forwarded_minus_credentials_and_edits() {
        let mut client = HeaderMap::new();
        client.insert("authorization", HeaderValue::from_static("Bearer client"));
        client.insert("x-routemesh-model", HeaderValue::from_static("spoof"));
        client.insert("x-user", HeaderValue::from_static("alice"));
        client.insert("openai-organization", HeaderValue::from_static("org"));
        client.insert("x-team", HeaderValue::from_static("client"));
        let edits = HeaderEdits {
            add: vec![("x-team".into(), "math".into())],
            remove: vec!["x-user".into()],
        };
        let out = forwarded_headers(&client, &edits);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["openai-organization", "x-team"]);
        assert_eq!(out["x-team"], "math");
    }
}
