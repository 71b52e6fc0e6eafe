//! Per-request metadata on the HTTP surface: the request id and the
//! tracing span carrying it, given to every request (errors and 404s
//! included) before anything else runs.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument as _;

use crate::pipeline::headers::HEADER_REQUEST_ID;

/// The gateway's id for a request, set by [`request_id`] on every request.
#[derive(Debug, Clone)]
pub(super) struct RequestId(pub(super) String);

/// Middleware: gives every request an id (in its extensions) and every
/// response the `x-routemesh-request-id` header, errors and 404s included.
/// The request runs in a `request` span carrying `request_id`, so every
/// line it logs carries the id.
pub(super) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = req.uri().path(),
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().entry(HEADER_REQUEST_ID).or_insert(v);
    }
    resp
}
