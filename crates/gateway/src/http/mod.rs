//! The HTTP surface: OpenAI-compatible endpoints, health, and the dry run.
//!
//! The only module that knows the OpenAI wire format ([`openai`]) and maps
//! errors to HTTP ([`error`]).

mod admin;
pub(crate) mod chat;
pub mod error;
mod feedback;
pub(crate) mod guard;
pub(crate) mod meta;
pub mod openai;
mod route;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use self::error::ApiError;
use std::sync::Arc;

use crate::auth::Auth;
use crate::state::{AppState, Gateway};

/// Response header naming the decision taken (or `passthrough`).
pub const HEADER_DECISION: &str = "x-routemesh-decision";
/// Response header naming the model that answered.
pub const HEADER_MODEL: &str = "x-routemesh-model";
/// Response header present when routing ran without some signals, e.g.
/// `classify=timeout`.
pub const HEADER_DEGRADED: &str = "x-routemesh-degraded";
/// Response header counting pieces of personal data replaced by
/// placeholders before the request went upstream.
pub const HEADER_REDACTED: &str = "x-routemesh-pii-redacted";
/// Response header saying what the cache did: `hit`, `miss`, `bypass`
/// (`Cache-Control: no-cache`) or `off` (the decision does not cache).
pub const HEADER_CACHE: &str = "x-routemesh-cache";
/// On a hit: `exact` or `semantic`.
pub const HEADER_CACHE_TIER: &str = "x-routemesh-cache-tier";
/// On a hit: cosine similarity of the prompt to the stored one (1 for exact).
pub const HEADER_CACHE_SIMILARITY: &str = "x-routemesh-cache-similarity";
/// Request header naming the chosen model's upstream, set for Envoy under
/// ext_proc (a cluster per upstream, when several models share a server).
pub const HEADER_UPSTREAM: &str = "x-routemesh-upstream";
/// Response header carrying the gateway's id for the request.
pub const HEADER_REQUEST_ID: &str = "x-routemesh-request-id";

/// The gateway's routes; `auth` (from the `auth:` section) guards them.
///
/// Layers, outermost first: client `x-routemesh-*` headers are stripped;
/// the request gets its id (so every response carries it, 401 and 403
/// included); credentials are checked and the tenant set; the body limit;
/// the handler.
pub fn router(gateway: Arc<Gateway>, auth: Option<Arc<Auth>>) -> Router {
    let limit = gateway.live().config.server.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
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
