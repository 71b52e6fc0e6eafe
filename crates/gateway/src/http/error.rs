//! API errors and their one mapping to HTTP status + OpenAI error body.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::auth::Denied;
use crate::classify::ClassifyFailure;
use crate::learning::FeedbackError;
use crate::pipeline::PlanError;
use crate::upstream::UpstreamError;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing or ill-typed field.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The last user message is longer than `server.max_prompt_chars`.
    #[error(
        "the prompt (the last user message) is {chars} characters long; \
         this gateway accepts at most {limit}"
    )]
    PromptTooLong { chars: usize, limit: usize },
    /// No valid API key (401), or no valid admin token (403).
    #[error("{0}")]
    Denied(#[from] Denied),
    #[error(
        "the model `{model}` does not exist; GET /v1/models lists the models and router aliases"
    )]
    ModelNotFound { model: String },
    #[error("no route for {method} {path}")]
    NoSuchEndpoint { method: String, path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the router is starting: the encoder model is still loading")]
    NotReady,
    /// The decision taken blocks the request; the message is the config's.
    #[error("{message}")]
    Blocked { message: String },
    /// The classifier failed and the config says to refuse (`on_unavailable: reject`).
    #[error("{0}")]
    Classify(#[from] ClassifyFailure),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{0}")]
    Feedback(#[from] FeedbackError),
    #[error("the cache is disabled (set `cache.enabled: true` in the config)")]
    CacheDisabled,
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::UnknownModel(model) => Self::ModelNotFound { model },
            PlanError::NotReady => Self::NotReady,
            PlanError::Classify(e) => Self::Classify(e),
        }
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param,
        }
    }

    /// Status, OpenAI error `type`, and `code`.
    pub(super) fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadRequest { .. } => (S::BAD_REQUEST, "invalid_request_error", "invalid_request"),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
            ),
            Self::PromptTooLong { .. } => (
                S::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            Self::Denied(d) if d.is_admin() => (S::FORBIDDEN, "invalid_request_error", "forbidden"),
            Self::Denied(_) => (S::UNAUTHORIZED, "invalid_request_error", "invalid_api_key"),
            Self::ModelNotFound { .. } => {
                (S::NOT_FOUND, "invalid_request_error", "model_not_found")
            }
            Self::NoSuchEndpoint { .. } => (S::NOT_FOUND, "invalid_request_error", "unknown_url"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
            ),
            Self::NotReady => (S::SERVICE_UNAVAILABLE, "service_unavailable", "not_ready"),
            Self::Blocked { .. } => (S::BAD_REQUEST, "invalid_request_error", "content_blocked"),
            Self::Classify(_) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "classifier_unavailable",
            ),
            Self::Upstream(UpstreamError::Unreachable { .. }) => {
                (S::BAD_GATEWAY, "upstream_error", "upstream_unreachable")
            }
            Self::Upstream(UpstreamError::Timeout { .. }) => {
                (S::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout")
            }
            Self::Feedback(FeedbackError::Unknown(_)) => {
                (S::NOT_FOUND, "invalid_request_error", "request_not_found")
            }
            Self::Feedback(FeedbackError::AlreadyRated(_)) => (
                S::CONFLICT,
                "invalid_request_error",
                "feedback_already_given",
            ),
            Self::CacheDisabled => (S::NOT_FOUND, "invalid_request_error", "cache_disabled"),
            Self::Feedback(FeedbackError::Unavailable(_)) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "learning_unavailable",
            ),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => param.as_deref(),
            Self::ModelNotFound { .. } => Some("model"),
            Self::PromptTooLong { .. } => Some("messages"),
            Self::Feedback(FeedbackError::Unknown(_) | FeedbackError::AlreadyRated(_)) => {
                Some("request_id")
            }
            _ => None,
        }
    }
}

/// `{"error": {...}}` as the OpenAI API writes it.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code) = self.parts();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code, error = %self, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind,
                param: self.param(),
                code,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme is expected.
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
