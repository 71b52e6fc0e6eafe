//! Errors in Anthropic's shape: `{"type": "error", "error": {"type",
//! "message"}}`, the status the gateway's error maps to, and the error
//! `type` Anthropic's SDKs read for that status.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::api::openai::ApiError;

/// Anthropic's error `type` for a status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error body for `status` with `message`.
pub fn body(status: StatusCode, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": error_type(status), "message": message } })
}

/// A gateway error as a Messages API response: its status and headers
/// (`Retry-After`, `WWW-Authenticate`) as for OpenAI clients, Anthropic's
/// body.
pub fn render(error: &ApiError) -> (StatusCode, HeaderMap, Bytes) {
    let (status, mut headers, _) = error.render();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = body(status, &error.to_string()).to_string();
    (status, headers, Bytes::from(body))
}

/// An upstream's error answer (chat-completions shape, or anything) in
/// Anthropic's shape, keeping its message.
pub fn from_upstream(status: StatusCode, upstream: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(upstream).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
                .or_else(|| v["error"].as_str())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(upstream);
            let text = text.trim();
            if text.is_empty() {
                format!("the upstream answered {status}")
            } else {
                text.chars().take(2000).collect()
            }
        });
    body(status, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_errors_keep_their_status_in_anthropics_shape() {
        let (status, headers, body) = render(&ApiError::bad_request("model: required", None));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "model: required");
        assert_eq!(error_type(StatusCode::UNAUTHORIZED), "authentication_error");
        assert_eq!(
            error_type(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error"
        );
        assert_eq!(error_type(StatusCode::BAD_GATEWAY), "api_error");
    }

    #[test]
    fn upstream_errors_keep_their_message() {
        let v = from_upstream(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":{"message":"slow down","type":"rate_limit"}}"#,
        );
        assert_eq!(
            v["error"],
            json!({ "type": "rate_limit_error", "message": "slow down" })
        );
        let v = from_upstream(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
