//! `POST /v1/chat/completions`: plan the request, forward it, relay the answer.
//!
//! The upstream's body is relayed as it arrives, chunk by chunk, for both
//! streaming (SSE) and plain responses: the gateway never buffers an answer.

use std::time::Instant;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use http::{HeaderName, HeaderValue, header};

use super::error::ApiError;
use super::meta::{self, RequestId, Trace};
use crate::pipeline::Target;
use crate::state::AppState;
use routemesh_classifier_worker::pii;

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut trace = Trace::start(id);
    let result = handle(&state, body, &mut trace).await;
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
    body: Result<Bytes, BytesRejection>,
    trace: &mut Trace,
) -> Result<Response, ApiError> {
    let (mut req, plan) = meta::read_and_plan(state, body, trace).await?;
    let (model, redact_pii) = match plan.target {
        Target::Block { message } => return Err(ApiError::Blocked { message }),
        Target::Model { model, redact_pii } => (state.config.model(model), redact_pii),
    };
    if !redact_pii.is_empty() {
        let redacted = req.redact_text(|text| {
            let spans: Vec<_> = state
                .pii
                .detect(text)
                .into_iter()
                .filter(|s| redact_pii.contains(&s.kind))
                .collect();
            (!spans.is_empty()).then(|| (pii::redact(text, &spans), spans.len()))
        });
        trace.redacted = redacted;
    }
    let upstream_body = req
        .upstream_body(&model.upstream_model)
        .map_err(|e| ApiError::bad_request(format!("cannot re-encode the request: {e}"), None))?;
    let started = Instant::now();
    let upstream = state
        .upstreams
        .send_chat(model.upstream, upstream_body.into())
        .await?;
    trace.stages.push(("upstream", started.elapsed()));
    Ok(relay(upstream))
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

/// Streams the upstream's status, headers and body back to the client.
fn relay(upstream: reqwest::Response) -> Response {
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
    let mut resp = Response::new(Body::from_stream(upstream.bytes_stream()));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
