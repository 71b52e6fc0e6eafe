//! The gateway's header rules, for every front door: which names are the
//! gateway's own (`x-routemesh-*`), which client headers go upstream, which
//! upstream headers come back, and the headers a stored answer is served
//! with.
//!
//! One place for each rule: the HTTP surface and ext_proc both strip,
//! forward and relay through these functions.

use http::{HeaderMap, HeaderName, HeaderValue, header};
use routemesh_cache::{Answer, AnswerKind};
use routemesh_common::config::HeaderEdits;

/// Prefix of the header names that are the gateway's own.
pub const INTERNAL_PREFIX: &str = "x-routemesh-";

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
/// Per-stage latencies (`classify;dur=1.2, …, total;dur=22.1`, ms).
pub const HEADER_SERVER_TIMING: &str = "server-timing";

/// Whether `name` is one of the gateway's own headers.
pub fn is_internal(name: &HeaderName) -> bool {
    name.as_str().starts_with(INTERNAL_PREFIX)
}

/// Removes every `x-routemesh-*` header; returns the names removed (once
/// each), for a front door that has to tell its proxy what to drop.
pub fn strip_internal(headers: &mut HeaderMap) -> Vec<HeaderName> {
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| is_internal(n)).cloned().collect();
    for name in &spoofed {
        headers.remove(name);
    }
    spoofed
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

/// Client headers the gateway never forwards: framing, the client's own
/// credentials (the upstream gets the gateway's key), cookies.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::ACCEPT_ENCODING,
    header::AUTHORIZATION,
    header::COOKIE,
];

/// The other credential header a client may send (Anthropic's clients).
const API_KEY: &str = "x-api-key";

fn hop_by_hop(name: &HeaderName) -> bool {
    NOT_RELAYED.contains(name) || name.as_str() == "keep-alive"
}

/// The client's end-to-end headers as they go upstream, edited as the
/// decision says (`edits.remove` dropped, `edits.add` set).
pub fn forwarded(client: &HeaderMap, edits: &HeaderEdits) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in client {
        if hop_by_hop(name)
            || NOT_FORWARDED.contains(name)
            || name.as_str() == API_KEY
            || is_internal(name)
            || edits.remove.iter().any(|r| r == name.as_str())
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

/// The upstream's response headers as the client gets them: no hop-by-hop
/// headers, none of the upstream's own `x-routemesh-*`, and an event
/// stream marked as not to be buffered or cached by proxies on the way.
pub fn relayed(mut headers: HeaderMap) -> HeaderMap {
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| hop_by_hop(n) || is_internal(n))
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
    if content_type(&headers).is_some_and(|ct| ct.starts_with("text/event-stream")) {
        mark_stream(&mut headers);
    }
    headers
}

/// The headers a stored answer is served with.
pub fn cached(answer: &Answer) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(ct) = HeaderValue::from_str(&answer.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if answer.kind == AnswerKind::Sse {
        mark_stream(&mut headers);
    }
    headers
}

/// The `Content-Type` of a message, when it has a readable one.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn mark_stream(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = forwarded(&client, &edits);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["openai-organization", "x-team"]);
        assert_eq!(out["x-team"], "math");
    }

    #[test]
    fn relayed_headers_lose_hop_by_hop_and_internal_names() {
        let mut up = HeaderMap::new();
        up.insert(header::CONNECTION, HeaderValue::from_static("close"));
        up.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        up.insert("x-routemesh-model", HeaderValue::from_static("upstream's"));
        up.insert("x-request-id", HeaderValue::from_static("abc"));
        up.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let out = relayed(up);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-type",
                "x-accel-buffering",
                "x-request-id"
            ]
        );
    }

    #[test]
    fn internal_names_are_stripped_once_each() {
        let mut h = HeaderMap::new();
        h.append("x-routemesh-decision", HeaderValue::from_static("a"));
        h.append("x-routemesh-decision", HeaderValue::from_static("b"));
        h.insert("x-routemeshy", HeaderValue::from_static("kept"));
        let removed = strip_internal(&mut h);
        assert_eq!(removed, ["x-routemesh-decision"]);
        assert!(h.contains_key("x-routemeshy"));
        assert_eq!(h.len(), 1);
    }
}
