//! The edge of the HTTP surface: client `x-routemesh-*` headers removed,
//! credentials checked, the request's [`Tenant`] put in its extensions.
//!
//! Which path needs what is decided here, once, with the default closed:
//! `/healthz` and `/readyz` are open, `/admin/*` needs the admin token, and
//! every other path — the `/v1` API and any path not (yet) known — an API
//! key. A route added later is therefore never open by accident.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::api::openai::ApiError;
use crate::auth::{Auth, Denied, Tenant, credential};
use crate::pipeline::headers::strip_internal;
use crate::telemetry::{AUTH_REJECTIONS_TOTAL, TENANT_REQUESTS_TOTAL};

/// Middleware: removes every request header whose name starts with
/// `x-routemesh-`, before any other middleware or handler sees it. Those
/// names are the gateway's (responses carry them); a client can neither
/// set them for the gateway nor send them to an upstream.
pub(super) async fn strip_internal_headers(mut req: Request, next: Next) -> Response {
    strip_internal(req.headers_mut());
    next.run(req).await
}

/// What a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Open,
    Admin,
    Api,
}

impl Access {
    fn of(path: &str) -> Self {
        match path {
            "/healthz" | "/readyz" => Self::Open,
            p if p == "/admin" || p.starts_with("/admin/") => Self::Admin,
            _ => Self::Api,
        }
    }
}

/// Middleware: with `auth` configured, refuses a request without the
/// credential its path needs (401 / 403, OpenAI-style) and runs an API
/// request in an `auth` span carrying its tenant; without, lets everything
/// through. Either way an API request gets its [`Tenant`] extension.
pub(super) async fn authenticate(
    State(auth): State<Option<Arc<Auth>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let access = Access::of(req.uri().path());
    let Some(auth) = auth else {
        let tenant = Tenant::of_open_request(req.headers());
        req.extensions_mut().insert(tenant);
        return next.run(req).await;
    };
    let key = credential(req.headers());
    let checked = match access {
        Access::Open => return next.run(req).await,
        Access::Admin => auth.admin(key).map(|()| None),
        Access::Api => auth.tenant(key).cloned().map(Some),
    };
    match checked {
        Err(denied) => refuse(req.uri().path(), denied),
        Ok(None) => next.run(req).await,
        Ok(Some(tenant)) => {
            metrics::counter!(TENANT_REQUESTS_TOTAL, "tenant" => tenant.to_string()).increment(1);
            let span = tracing::info_span!("auth", tenant = %tenant);
            req.extensions_mut().insert(tenant);
            next.run(req).instrument(span).await
        }
    }
}

fn refuse(path: &str, denied: Denied) -> Response {
    let scope = if denied.is_admin() { "admin" } else { "api" };
    metrics::counter!(
        AUTH_REJECTIONS_TOTAL,
        "scope" => scope,
        "reason" => denied.reason()
    )
    .increment(1);
    tracing::debug!(scope, reason = denied.reason(), "request refused");
    super::error_response(path, ApiError::Denied(denied))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{HeaderMap, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn paths_are_closed_unless_named_open() {
        let check = |path, access| assert_eq!(Access::of(path), access, "{path}");
        check("/healthz", Access::Open);
        check("/readyz", Access::Open);
        check("/admin/cache", Access::Admin);
        check("/admin", Access::Admin);
        check("/v1/chat/completions", Access::Api);
        check("/v1/models", Access::Api);
        check("/administrator", Access::Api);
        check("/healthz/x", Access::Api);
        check("/", Access::Api);
    }

    /// A handler that answers with the names of the headers it saw.
    async fn seen(headers: HeaderMap) -> String {
        let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names.join(",")
    }

    #[tokio::test]
    async fn internal_headers_never_reach_a_handler() {
        let app = Router::new()
            .route("/", get(seen))
            .layer(axum::middleware::from_fn(strip_internal_headers));
        let req = Request::get("/")
            .header("x-routemesh-tenant", "someone-else")
            .header("X-RouteMesh-Request-Id", "spoofed")
            .header("x-routemesh-decision", "a")
            .header("x-routemesh-decision", "b")
            .header("x-routemeshy", "kept: not the prefix")
            .header("x-team", "kept")
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 10)
            .await
            .expect("body");
        assert_eq!(&body[..], b"x-routemeshy,x-team");
    }
}
