//! `POST /v1/chat/completions`: plan the request, forward it, relay the answer.
//!
//! The upstream's body is relayed as it arrives, chunk by chunk, for both
//! streaming (SSE) and plain responses: the gateway never holds an answer
//! back. A copy is kept only to fill the cache (up to its entry limit).

use std::time::Instant;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use routemesh_common::config::{Candidate, HeaderEdits, ModelConfig, Reasoning};

use super::error::ApiError;
use super::guard::INTERNAL_PREFIX;
use super::meta::{self, CacheTrace, RequestId, Trace};
use super::openai::ChatRequest;
use crate::answer::{Outcomes, Watch};
use crate::auth::Tenant;
use crate::cache::{Consulted, Fill, ScopeNames};
use crate::pipeline::{Forward, Target};
use crate::state::AppState;
use crate::upstream::{BodyError, BodyStream, Failure, Outgoing, Reply};
use routemesh_cache::{Answer, AnswerKind};
use routemesh_classifier_worker::pii;

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut trace = Trace::start(id);
    let result = handle(&state, &tenant, &headers, body, &mut trace).await;
    let resp = trace.respond(result);
    tracing::info!(
        request_id = %trace.id,
        decision = trace.decision.as_deref().unwrap_or("-"),
        model = trace.model.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = trace.started.elapsed().as_secs_f64() * 1e3,
        "chat completion"
    );
    resp
}

async fn handle(
    state: &AppState,
    tenant: &Tenant,
    client_headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    trace: &mut Trace,
) -> Result<Response, ApiError> {
    let Forwarding {
        req,
        forward,
        decision,
        learn,
        mut fill,
    } = match prepare(state, tenant, client_headers, body, trace).await? {
        Prepared::Answered(resp) => return Ok(resp),
        Prepared::Forward(f) => *f,
    };
    let headers = forwarded_headers(client_headers, &forward.headers);
    let chosen = Candidate {
        reasoning: forward.reasoning,
        ..Candidate::new(forward.model)
    };
    let started = Instant::now();
    let upstream_started = tokio::time::Instant::now();
    let mut last = None;
    let mut answered = None;
    for (n, c) in std::iter::once(chosen)
        .chain(forward.fallbacks.iter().copied())
        .enumerate()
    {
        let m = state.config.model(c.model);
        if n > 0 {
            metrics::counter!("routemesh_upstream_fallbacks_total", "decision" => decision.clone())
                .increment(1);
            tracing::info!(
                request_id = %trace.id,
                decision = %decision,
                model = %m.name,
                "falling back to the next candidate model"
            );
        }
        trace.model = Some(m.name.clone());
        let out = Outgoing {
            body: upstream_body(&req, m, c.reasoning, state)?,
            headers: headers.clone(),
        };
        match state
            .upstreams
            .forward(m.upstream, &out, upstream_started)
            .await
        {
            Ok(answer) => {
                answered = Some((c.model, answer));
                break;
            }
            Err(failure) => {
                if let Some(o) = &learn {
                    o.for_model(&m.name).failed("upstream_error");
                }
                last = Some(failure);
            }
        }
    }
    trace.stages.push(("upstream", started.elapsed()));
    let Some((answered_by, upstream)) = answered else {
        return match last {
            Some(Failure::Status {
                status,
                headers,
                body,
            }) => {
                let body: BodyStream = Box::pin(futures_util::stream::iter([Ok(body)]));
                let reply = Reply {
                    status,
                    headers,
                    body,
                };
                Ok(relay(reply, Watch::default()))
            }
            Some(Failure::Error(e)) => Err(e.into()),
            None => Err(ApiError::bad_request("the decision has no candidate", None)),
        };
    };
    let mut learn = learn;
    if answered_by != forward.model {
        // The answer is another model's: the cache scope named the first.
        fill = None;
        let name = &state.config.model(answered_by).name;
        learn = learn.map(|o| o.for_model(name));
        if let Some(o) = &learn {
            state.learning.remember(&trace.id, &o.decision, &o.model);
        }
    }
    let status = upstream.status;
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(o) = learn {
            o.failed("upstream_error");
        }
        return Ok(relay(upstream, Watch::default()));
    }
    // A 4xx other than 429 is the request's fault, not the model's; only a
    // plain 200 is worth caching.
    let watch = Watch::new(
        learn.filter(|_| status.is_success()),
        fill.filter(|_| status == StatusCode::OK),
    );
    Ok(relay(upstream, watch))
}

/// What to do with a chat request once it is planned.
pub(crate) enum Prepared {
    /// Answer with this now (a cache hit).
    Answered(Response),
    /// Send it to the chosen model.
    Forward(Box<Forwarding>),
}

/// A planned request on its way to a model.
pub(crate) struct Forwarding {
    /// The request with the decision's edits applied (redaction, system
    /// prompt); the model's own (reasoning, `model`) come with
    /// [`upstream_body`].
    pub(crate) req: ChatRequest,
    pub(crate) forward: Forward,
    pub(crate) decision: String,
    /// Where the outcome goes; `None` for passthrough.
    pub(crate) learn: Option<Outcomes>,
    /// Where a complete answer is stored; `None` when it is not.
    pub(crate) fill: Option<Box<Fill>>,
}

/// Reads, plans and, when the plan says so, answers a chat request from the
/// cache or edits it for forwarding: everything before the upstream, which
/// the HTTP gateway calls itself and Envoy calls under ext_proc. A block is
/// an error; the trace records decision, model, cache and stages.
pub(crate) async fn prepare(
    state: &AppState,
    tenant: &Tenant,
    client_headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    trace: &mut Trace,
) -> Result<Prepared, ApiError> {
    let (mut req, plan) = meta::read_and_plan(state, body, trace).await?;
    let forward = match plan.target {
        Target::Block { message } => return Err(ApiError::Blocked { message }),
        Target::Model(f) => f,
    };
    let model = state.config.model(forward.model);
    // Only routed requests teach the learner: a passthrough names its model.
    let learn = plan.routed.is_some().then(|| Outcomes {
        learning: state.learning.clone(),
        decision: plan.decision.clone(),
        model: model.name.clone(),
        slo: forward.slo,
        started: trace.started,
    });
    if let Some(o) = &learn {
        // A cached answer came from this same model (the model is part of
        // the cache scope), so feedback on it teaches the right arm.
        state.learning.remember(&trace.id, &o.decision, &o.model);
    }

    // The cache: answer from it, or note what to store.
    let mut fill = None;
    if let Some(layer) = &state.cache {
        let policy = layer.policy(forward.cache);
        let embedding = plan
            .routed
            .as_ref()
            .and_then(|r| r.embedding.as_ref())
            .map(|e| e.vector.as_slice());
        let timeout = state.config.upstream(model.upstream).timeouts.first_byte;
        let names = ScopeNames {
            tenant,
            decision: &plan.decision,
            model: &model.name,
        };
        match layer.plan(&req, names, client_headers, policy, embedding) {
            None => trace.cache = Some(CacheTrace::Off),
            Some(cp) => match layer.consult(cp, timeout, &mut trace.stages).await {
                Consulted::Hit(h) => {
                    trace.cache = Some(CacheTrace::hit(&h));
                    return Ok(Prepared::Answered(cached_response(&h.answer)));
                }
                Consulted::Miss { fill: f, bypassed } => {
                    trace.cache = Some(if bypassed {
                        CacheTrace::Bypass
                    } else {
                        CacheTrace::Miss
                    });
                    fill = f;
                }
            },
        }
    }

    trace.redacted = edit_request(state, &forward, &mut req);
    Ok(Prepared::Forward(Box::new(Forwarding {
        req,
        forward,
        decision: plan.decision,
        learn,
        fill,
    })))
}

/// Applies the decision's edits that hold for every candidate: personal
/// data redacted, the system prompt set. Returns how many pieces of
/// personal data were replaced.
fn edit_request(state: &AppState, forward: &Forward, req: &mut ChatRequest) -> usize {
    let mut redacted = 0;
    if !forward.redact_pii.is_empty() {
        let kinds = &forward.redact_pii;
        redacted = req.redact_text(|text| {
            let spans: Vec<_> = state
                .pii
                .detect(text)
                .into_iter()
                .filter(|s| kinds.contains(&s.kind))
                .collect();
            (!spans.is_empty()).then(|| (pii::redact(text, &spans), spans.len()))
        });
    }
    if let Some(sp) = &forward.system_prompt {
        req.set_system_prompt(sp);
    }
    redacted
}

/// The body for candidate `model`: its reasoning in its upstream's dialect,
/// `model` rewritten to its upstream name.
pub(crate) fn upstream_body(
    req: &ChatRequest,
    model: &ModelConfig,
    reasoning: Option<Reasoning>,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    let mut req = req.clone();
    if let Some(r) = reasoning {
        req.set_reasoning(r, state.config.upstream(model.upstream).family);
    }
    req.upstream_body(&model.upstream_model)
        .map(Bytes::from)
        .map_err(|e| ApiError::bad_request(format!("cannot re-encode the request: {e}"), None))
}

/// A stored answer as the response to this request.
fn cached_response(answer: &Answer) -> Response {
    let mut resp = Response::new(Body::from(answer.body.clone()));
    let headers = resp.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&answer.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    if answer.kind == AnswerKind::Sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    resp
}

/// Client headers the gateway never forwards: framing, the client's own
/// credentials (the upstream gets the gateway's key), cookies and the
/// gateway's headers.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::ACCEPT_ENCODING,
    header::AUTHORIZATION,
    header::COOKIE,
];

/// The client's end-to-end headers, edited as the decision says.
fn forwarded_headers(client: &HeaderMap, edits: &HeaderEdits) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in client {
        let n = name.as_str();
        if NOT_RELAYED.contains(name)
            || NOT_FORWARDED.contains(name)
            || n == "keep-alive"
            || n.starts_with(INTERNAL_PREFIX)
            || edits.remove.iter().any(|r| r == n)
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

/// Streams the upstream's status, headers and body back to the client,
/// doing what `watch` says once the answer has ended.
fn relay(upstream: Reply, mut watch: Watch) -> Response {
    let status = upstream.status;
    let mut headers = upstream.headers;
    for name in NOT_RELAYED {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    let routemesh: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(INTERNAL_PREFIX))
        .cloned()
        .collect();
    for name in routemesh {
        headers.remove(name);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sse = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    // A compressed body would be stored compressed and replayed without its
    // encoding: not cached.
    if headers.contains_key(header::CONTENT_ENCODING) {
        watch.fill = None;
    }
    let body = if watch.is_idle() {
        Body::from_stream(upstream.body)
    } else {
        Body::from_stream(observed(upstream.body, watch, content_type))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Passes the body through unchanged while `watch` looks at it; at the
/// end it reports the outcome and stores the answer, or reports a failure
/// if the stream broke. A client that hangs up early reports and stores
/// nothing.
fn observed<S>(
    body: S,
    watch: Watch,
    content_type: Option<String>,
) -> impl Stream<Item = Result<Bytes, BodyError>>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
{
    futures_util::stream::unfold(
        (Box::pin(body), Some(watch)),
        move |(mut body, mut watch)| {
            let content_type = content_type.clone();
            async move {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        if let Some(w) = watch.as_mut() {
                            w.chunk(&chunk);
                        }
                        Some((Ok(chunk), (body, watch)))
                    }
                    Some(Err(e)) => {
                        if let Some(w) = watch.take() {
                            w.broke();
                        }
                        Some((Err(e), (body, watch)))
                    }
                    None => {
                        if let Some(w) = watch.take() {
                            w.ended(content_type.as_deref());
                        }
                        None
                    }
                }
            }
        },
    )
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
        let out = forwarded_headers(&client, &edits);
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(names, ["openai-organization", "x-team"]);
        assert_eq!(out["x-team"], "math");
    }
}
