//! Per-request metadata: the request id (and the tracing span carrying it),
//! the `x-routemesh-*` headers, the `Server-Timing` header, and the
//! request's metrics (recorded once, when the response is made).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use tracing::Instrument as _;

use super::error::ApiError;
use super::openai::{self, ChatRequest};
use super::{
    HEADER_CACHE, HEADER_CACHE_SIMILARITY, HEADER_CACHE_TIER, HEADER_DECISION, HEADER_DEGRADED,
    HEADER_MODEL, HEADER_REDACTED, HEADER_REQUEST_ID,
};
use crate::pipeline::{self, RoutePlan};
use crate::state::AppState;
use crate::telemetry::{self, Outcome, RequestMetrics};

/// What the gateway learned about a request, written into response headers
/// whether the request succeeded or not.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) id: String,
    pub(crate) started: Instant,
    pub(crate) decision: Option<String>,
    pub(crate) model: Option<String>,
    /// Pieces of personal data replaced before forwarding.
    pub(crate) redacted: usize,
    /// Why routing ran without embedding signals, if it did.
    pub(crate) degraded: Option<&'static str>,
    /// What the cache did; `None` when there is no cache.
    pub(crate) cache: Option<CacheTrace>,
    /// `(stage, duration)` in the order they happened.
    pub(crate) stages: Vec<(&'static str, Duration)>,
    /// Whether [`Trace::respond`] counts the request in the metrics (chat
    /// completions; not dry runs).
    counted: bool,
}

/// What the cache did for a request (the `x-routemesh-cache*` headers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CacheTrace {
    /// The decision's cache policy is `off`.
    Off,
    /// The client said `Cache-Control: no-cache`.
    Bypass,
    Miss,
    Hit {
        tier: &'static str,
        similarity: f32,
    },
}

impl CacheTrace {
    pub(crate) fn hit(h: &routemesh_cache::Hit) -> Self {
        Self::Hit {
            tier: match h.tier {
                routemesh_cache::Tier::Exact => "exact",
                routemesh_cache::Tier::Semantic => "semantic",
            },
            similarity: h.similarity,
        }
    }
}

/// The gateway's id for a request, set by [`request_id`] on every request.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// Middleware: gives every request an id (in its extensions) and every
/// response the `x-routemesh-request-id` header, errors and 404s included.
/// The request runs in a `request` span carrying `request_id`, so every
/// line it logs carries the id.
pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
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

impl Trace {
    pub(crate) fn start(id: RequestId) -> Self {
        Self {
            id: id.0,
            started: Instant::now(),
            decision: None,
            model: None,
            degraded: None,
            redacted: 0,
            cache: None,
            stages: Vec::with_capacity(4),
            counted: true,
        }
    }

    /// A trace for a dry run: headers as usual, nothing counted in the
    /// request metrics (nothing is forwarded).
    pub(crate) fn dry_run(id: RequestId) -> Self {
        Self {
            counted: false,
            ..Self::start(id)
        }
    }

    /// `classify;dur=1.234, decide;dur=0.004, upstream;dur=20.5, total;dur=22.1`
    /// (milliseconds), as the Server-Timing standard writes it.
    fn server_timing(&self) -> String {
        let mut out = String::new();
        let total = ("total", self.started.elapsed());
        for (name, d) in self.stages.iter().chain(std::iter::once(&total)) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{name};dur={:.3}", d.as_secs_f64() * 1e3);
        }
        out
    }

    /// Records the plan: decision, model (if any) and, when routed, the
    /// classify and decide stages.
    pub(crate) fn record(&mut self, plan: &RoutePlan, model: Option<&str>) {
        if let Some(r) = &plan.routed {
            self.stages.push(("classify", r.classify));
            self.stages.push(("decide", r.decide));
        }
        self.decision = Some(plan.decision.clone());
        self.model = model.map(str::to_owned);
        self.degraded = plan
            .routed
            .as_ref()
            .and_then(|r| r.degraded.as_ref())
            .map(|f| f.reason());
    }

    /// The response for a handler's result, with the trace's headers; counts
    /// the request and records its stage latencies (the one place request
    /// metrics are recorded).
    pub(crate) fn respond(&self, result: Result<Response, ApiError>) -> Response {
        let (outcome, mut resp) = match result {
            Ok(resp) => (self.answered(resp.status()), resp),
            Err(e) => {
                let outcome = refused(&e);
                (outcome, e.into_response())
            }
        };
        let outcome = match outcome {
            // A 4xx/5xx of the gateway's own, whatever its cause.
            None if resp.status().is_server_error() => Outcome::Unavailable,
            None => Outcome::ClientError,
            Some(o) => o,
        };
        self.finish(&mut resp);
        if self.counted {
            telemetry::record_request(&RequestMetrics {
                decision: self.decision.as_deref(),
                model: self.model.as_deref(),
                outcome,
                stages: &self.stages,
                total: self.started.elapsed(),
            });
        }
        resp
    }

    /// The outcome of a response the handler made: from the cache, or the
    /// upstream's status relayed.
    fn answered(&self, status: StatusCode) -> Option<Outcome> {
        Some(if matches!(self.cache, Some(CacheTrace::Hit { .. })) {
            Outcome::CacheHit
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::UpstreamError
        } else if status.is_client_error() {
            Outcome::ClientError
        } else {
            Outcome::Ok
        })
    }

    /// Adds the `x-routemesh-*` and `server-timing` headers.
    fn finish(&self, resp: &mut Response) {
        let headers = resp.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        if let Some(d) = &self.decision {
            set(HEADER_DECISION, d);
        }
        if let Some(m) = &self.model {
            set(HEADER_MODEL, m);
        }
        if self.redacted > 0 {
            set(HEADER_REDACTED, &self.redacted.to_string());
        }
        if let Some(reason) = self.degraded {
            set(HEADER_DEGRADED, &format!("classify={reason}"));
        }
        match self.cache {
            None => {}
            Some(CacheTrace::Off) => set(HEADER_CACHE, "off"),
            Some(CacheTrace::Bypass) => set(HEADER_CACHE, "bypass"),
            Some(CacheTrace::Miss) => set(HEADER_CACHE, "miss"),
            Some(CacheTrace::Hit { tier, similarity }) => {
                set(HEADER_CACHE, "hit");
                set(HEADER_CACHE_TIER, tier);
                set(HEADER_CACHE_SIMILARITY, &format!("{similarity:.4}"));
            }
        }
        set("server-timing", &self.server_timing());
    }
}

/// The outcome of an error the gateway answers itself, where its kind says
/// more than its status; `None`: by status (4xx client, 5xx unavailable).
fn refused(e: &ApiError) -> Option<Outcome> {
    match e {
        ApiError::Blocked { .. } => Some(Outcome::Blocked),
        ApiError::Upstream(_) => Some(Outcome::UpstreamError),
        _ => None,
    }
}

/// Reads, parses and plans a chat-completions body: the part the chat
/// endpoint and the dry run share. Records the plan on the trace.
pub(crate) async fn read_and_plan(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    trace: &mut Trace,
) -> Result<(ChatRequest, RoutePlan), ApiError> {
    let limit = state.config.server.max_body_bytes;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit },
        _ => ApiError::bad_request(format!("cannot read the request body: {rejection}"), None),
    })?;
    let mut req = openai::parse_chat(&body)?;
    openai::check_prompt_length(&req, state.config.server.max_prompt_chars)?;
    let prompt = std::mem::take(&mut req.prompt);
    let plan = pipeline::plan(state, &trace.id, &req.model, prompt).await?;
    let model = plan
        .target
        .model()
        .map(|m| state.config.model(m).name.as_str());
    trace.record(&plan, model);
    Ok((req, plan))
}
