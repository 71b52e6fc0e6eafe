//! `POST /v1/embeddings` and `POST /v1/completions`: passed through, not
//! routed, to the configured model the body names, with that upstream's
//! key, retries and circuit breakers; the answer is relayed as it comes.
//! A router alias (`auto`) means the model `router.embeddings` /
//! `router.completions` names (decision `embeddings` / `completions`), and
//! is refused without one: these requests carry no prompt the decisions
//! were written for.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::meta::RequestId;
use super::read_body;
use crate::api::openai::ApiError;
use crate::pipeline::{Refusal, headers};
use crate::state::AppState;
use crate::upstream::{ApiPath, Failure, Outgoing};

pub(super) async fn embeddings(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    client: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    pass(&state, &id, client, body, ApiPath::Embeddings).await
}

pub(super) async fn completions(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    client: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    pass(&state, &id, client, body, ApiPath::Completions).await
}

async fn pass(
    state: &AppState,
    id: &RequestId,
    client: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    path: ApiPath,
) -> Response {
    let started = tokio::time::Instant::now();
    let (model, decision, mut resp) = match forward(state, client, body, path, started).await {
        Ok((model, decision, resp)) => (Some(model), Some(decision), resp),
        Err(e) => (None, None, e.into_response()),
    };
    if let Some(m) = model.as_deref().and_then(|m| HeaderValue::from_str(m).ok()) {
        resp.headers_mut().insert(headers::HEADER_MODEL, m);
    }
    if let Some(d) = decision {
        resp.headers_mut()
            .insert(headers::HEADER_DECISION, HeaderValue::from_static(d));
    }
    tracing::info!(
        request_id = %id.0,
        path = path.as_str(),
        model = model.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "passed through"
    );
    resp
}

async fn forward(
    state: &AppState,
    client: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    path: ApiPath,
    started: tokio::time::Instant,
) -> Result<(String, &'static str, Response), ApiError> {
    let body = read_body(state, body)?;
    let mut value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not valid JSON: {e}"), None)
    })?;
    let name = match value.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "model: a non-empty string is required",
                Some("model".into()),
            ));
        }
    };
    let config = &state.config;
    let (id, decision) = match config.model_id(&name) {
        Some(id) => (id, "passthrough"),
        None if config.is_alias(&name) => {
            let (chosen, key, decision) = match path {
                ApiPath::Embeddings => {
                    (config.router.embeddings, "router.embeddings", "embeddings")
                }
                _ => (
                    config.router.completions,
                    "router.completions",
                    "completions",
                ),
            };
            let Some(id) = chosen else {
                return Err(ApiError::bad_request(
                    format!(
                        "`{name}` is a router alias, and `{key}` names no model for it: name a configured model (GET /v1/models)",
                    ),
                    Some("model".into()),
                ));
            };
            (id, decision)
        }
        None => return Err(Refusal::UnknownModel(name).into()),
    };
    let m = config.model(id);
    if state.upstreams.api(m.upstream) == routemesh_common::config::UpstreamApi::Anthropic {
        return Err(ApiError::bad_request(
            format!(
                "model `{name}` is served by an Anthropic upstream, which has no {} endpoint",
                path.as_str()
            ),
            Some("model".into()),
        ));
    }
    value["model"] = Value::String(m.upstream_model.clone());
    let out = Outgoing {
        body: Bytes::from(value.to_string()),
        headers: headers::forwarded(&client, &Default::default()),
        path,
    };
    let reply = match state.upstreams.forward(m.upstream, &out, started).await {
        Ok(reply) => reply,
        Err(Failure::Status {
            status,
            headers: h,
            body,
        }) => {
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = status;
            *resp.headers_mut() = headers::relayed(h);
            return Ok((m.name.clone(), decision, resp));
        }
        Err(Failure::Error(e) | Failure::NotAsked(e)) => {
            return Err(Refusal::Upstream(e).into());
        }
    };
    let mut resp = Response::new(Body::from_stream(reply.body));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = headers::relayed(reply.headers);
    Ok((m.name.clone(), decision, resp))
}
