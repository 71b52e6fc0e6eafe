//! The gateway's errors and their one mapping to an HTTP status and
//! OpenAI's error body — for every front door that speaks this API.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::auth::Denied;
use crate::learning::FeedbackError;
use crate::pipeline::Refusal;
use crate::telemetry::Outcome;
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
    /// No valid API key (401), or no valid admin token (403).
    #[error("{0}")]
    Denied(#[from] Denied),
    #[error("no route for {method} {path}")]
    NoSuchEndpoint { method: String, path: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The pipeline answered the request itself.
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Feedback(#[from] FeedbackError),
    #[error("the cache is disabled (set `cache.enabled: true` in the config)")]
    CacheDisabled,
    /// The body did not arrive within `server.timeouts.body_read`.
    #[error("the request body did not arrive within {0:?} (server.timeouts.body_read)")]
    BodyTimeout(std::time::Duration),
    /// A request hyper could not parse, refused before any handler.
    #[error("{}", malformed_message(*.0))]
    Malformed(StatusCode),
    /// Every connection slot is busy with a request.
    #[error("the gateway is at its connection limit of {0} (server.max_connections); retry")]
    AtCapacity(usize),
}

fn malformed_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::URI_TOO_LONG => "the request URI is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request has too many headers or headers too large"
        }
        _ => {
            "malformed HTTP/1.1 request: bad request line, header, Content-Length or Transfer-Encoding"
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

    /// The request's outcome when the error's kind says more than its
    /// status.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            Self::Refused(r) => r.outcome(),
            _ => None,
        }
    }

    /// Status, OpenAI error `type`, and `code`.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadRequest { .. } => (S::BAD_REQUEST, "invalid_request_error", "invalid_request"),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
            ),
            Self::Refused(Refusal::PromptTooLong { .. }) => (
                S::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            Self::Denied(d) if d.is_admin() => (S::FORBIDDEN, "invalid_request_error", "forbidden"),
            Self::Denied(_) => (S::UNAUTHORIZED, "invalid_request_error", "invalid_api_key"),
            Self::Refused(Refusal::UnknownModel(_)) => {
                (S::NOT_FOUND, "invalid_request_error", "model_not_found")
            }
            Self::NoSuchEndpoint { .. } => (S::NOT_FOUND, "invalid_request_error", "unknown_url"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
            ),
            Self::Refused(Refusal::NotReady) => {
                (S::SERVICE_UNAVAILABLE, "service_unavailable", "not_ready")
            }
            Self::Refused(Refusal::Blocked { .. }) => {
                (S::BAD_REQUEST, "invalid_request_error", "content_blocked")
            }
            Self::Refused(Refusal::Classify(_)) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "classifier_unavailable",
            ),
            Self::Refused(Refusal::Upstream(UpstreamError::Unreachable { .. })) => {
                (S::BAD_GATEWAY, "upstream_error", "upstream_unreachable")
            }
            Self::Refused(Refusal::Upstream(UpstreamError::Timeout { .. })) => {
                (S::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout")
            }
            Self::Refused(Refusal::Encode(_) | Refusal::NoCandidate) => {
                (S::BAD_REQUEST, "invalid_request_error", "invalid_request")
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
            Self::BodyTimeout(_) => (
                S::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
            ),
            Self::Malformed(status) if *status == S::URI_TOO_LONG => {
                (*status, "invalid_request_error", "uri_too_long")
            }
            Self::Malformed(status) if *status == S::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                (*status, "invalid_request_error", "headers_too_large")
            }
            Self::Malformed(_) => (S::BAD_REQUEST, "invalid_request_error", "malformed_request"),
            Self::AtCapacity(_) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "too_many_connections",
            ),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => param.as_deref(),
            Self::Refused(Refusal::UnknownModel(_)) => Some("model"),
            Self::Refused(Refusal::PromptTooLong { .. }) => Some("messages"),
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

impl ApiError {
    /// The error as a response: status, headers and OpenAI's JSON error
    /// body (`Retry-After` on a 503, `WWW-Authenticate` on a 401).
    pub fn render(&self) -> (StatusCode, HeaderMap, Bytes) {
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
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme is expected.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        (status, headers, Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_too_long_is_openais_context_length_error() {
        let e = ApiError::from(Refusal::PromptTooLong { chars: 6, limit: 5 });
        let (status, _, code) = e.parts();
        assert_eq!((status.as_u16(), code), (400, "context_length_exceeded"));
        assert_eq!(e.param(), Some("messages"));
        let (_, headers, body) = e.render();
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn blocks_and_upstream_failures_say_more_than_their_status() {
        let blocked = ApiError::from(Refusal::Blocked {
            message: "no".into(),
        });
        assert_eq!(blocked.outcome(), Some(Outcome::Blocked));
        assert_eq!(ApiError::from(Refusal::NotReady).outcome(), None);
    }
}
