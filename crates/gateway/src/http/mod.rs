//! The HTTP front door: the OpenAI-compatible endpoints over the
//! [`pipeline`](crate::pipeline) (chat completions: parse with
//! [`api::openai`](crate::api::openai), run, render), the dry run,
//! feedback, the admin API, health, and the axum plumbing (request ids,
//! auth, body limits, errors as responses).

mod admin;
mod chat;
mod feedback;
mod guard;
mod meta;
mod passthrough;
mod route;
mod translated;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use std::sync::Arc;

use crate::api::openai::ApiError;
use crate::auth::Auth;
use crate::state::{AppState, Gateway};

/// The gateway's routes; `auth` (from the `auth:` section) guards them.
///
/// Layers, outermost first: client `x-routemesh-*` headers are stripped;
/// the request gets its id (so every response carries it, 401 and 403
/// included); credentials are checked and the tenant set; the body is read
/// whole under the size limit and `server.timeouts.body_read`; the
/// handler.
pub fn router(gateway: Arc<Gateway>, auth: Option<Arc<Auth>>) -> Router {
    let limit = gateway.live().config.server.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(translated::messages))
        .route("/v1/responses", post(translated::responses))
        .route("/v1/embeddings", post(passthrough::embeddings))
        .route("/v1/completions", post(passthrough::completions))
        .route("/v1/route", post(route::dry_run))
        .route("/v1/feedback", post(feedback::feedback))
        .route("/admin/learning", get(feedback::learning))
        .route("/admin/cache", get(admin::cache_stats))
        .route("/admin/cache/invalidate", post(admin::cache_invalidate))
        .route("/admin/cache/flush", post(admin::cache_flush))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            read_whole_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            guard::authenticate,
        ))
        .layer(axum::middleware::from_fn(meta::request_id))
        .layer(axum::middleware::from_fn(guard::strip_internal_headers))
        .with_state(gateway)
}

/// `GET /v1/models`: router aliases first, then every configured model.
async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = &state.config;
    let aliases = config
        .router
        .aliases
        .iter()
        .map(|a| json!({ "id": a, "object": "model", "created": 0, "owned_by": "routemesh" }));
    let models = config.models.iter().map(|m| {
        json!({
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": config.upstream(m.upstream).name,
        })
    });
    Json(json!({ "object": "list", "data": aliases.chain(models).collect::<Vec<_>>() }))
}

/// `GET /healthz`: the process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once routing can run (encoder loaded or worker pool
/// answering, route examples embedded), 503 before.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready().is_some() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "loading" })),
        )
            .into_response()
    }
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::NoSuchEndpoint {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, headers, body) = self.render();
        (status, headers, body).into_response()
    }
}

impl FromRef<Arc<Gateway>> for AppState {
    fn from_ref(gateway: &Arc<Gateway>) -> Self {
        gateway.snapshot()
    }
}

/// The request body read under `server.max_body_bytes`: past it a 413,
/// any other failure to read it a 400.
fn read_body(
    state: &AppState,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.config.server.max_body_bytes;
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        _ => ApiError::bad_request(format!("cannot read the request body: {rejection}"), None),
    })
}

/// Reads the request body whole before the handler: at most
/// `server.max_body_bytes` (else 413) within `server.timeouts.body_read`
/// (else 408, and the connection is closed). While it reads, the
/// connection counts as still sending (the listener may evict it at its
/// connection limit).
async fn read_whole_body(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body_util::BodyExt as _;
    let server = &state.config.server;
    let (parts, body) = request.into_parts();
    let reading = parts
        .extensions
        .get::<crate::listener::ConnHandle>()
        .map(|c| c.0.reading_body());
    let limit = server.max_body_bytes;
    let read = http_body_util::Limited::new(body, limit).collect();
    let error = match tokio::time::timeout(server.timeouts.body_read, read).await {
        Ok(Ok(collected)) => {
            drop(reading);
            let body = axum::body::Body::from(collected.to_bytes());
            return next
                .run(axum::extract::Request::from_parts(parts, body))
                .await;
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            ApiError::PayloadTooLarge { limit }
        }
        Ok(Err(e)) => ApiError::bad_request(format!("cannot read the request body: {e}"), None),
        Err(_) => ApiError::BodyTimeout(server.timeouts.body_read),
    };
    let mut response = error_response(parts.uri.path(), error);
    // The rest of the body may still be on its way: do not read it.
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// `error` in the error shape of the API `path` belongs to: Anthropic's
/// for the Messages API, OpenAI's for everything else.
fn error_response(path: &str, error: ApiError) -> Response {
    if translated::is_messages_path(path) {
        crate::api::anthropic::error::render(&error).into_response()
    } else {
        error.into_response()
    }
}

/// The most bytes of a non-streamed answer (or an error) a translating
/// front door reads to translate it.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// A whole upstream answer, for a front door that translates it (at most
/// [`MAX_ANSWER_BYTES`]).
async fn collect_answer(body: crate::upstream::BodyStream) -> Result<Vec<u8>, String> {
    crate::upstream::collect(body, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| e.to_string())
}

/// An event-stream response (no caching, no proxy buffering) with `body`.
fn stream_response(status: StatusCode, body: axum::body::Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    h.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    resp
}
