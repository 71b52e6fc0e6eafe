//! `POST /v1/chat/completions`: plan the request, forward it, relay the answer.
//!
//! The upstream's body is relayed as it arrives, chunk by chunk, for both
//! streaming (SSE) and plain responses: the gateway never holds an answer
//! back. A copy is kept only to fill the cache (up to its entry limit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use routemesh_common::config::{Candidate, HeaderEdits, ModelConfig, Reasoning};
use routemesh_common::wire::OutcomeEvent;

use super::error::ApiError;
use super::meta::{self, CacheTrace, RequestId, Trace};
use super::openai::ChatRequest;
use crate::auth::Tenant;
use crate::cache::{CacheLayer, CachePlan, InFlight, Joined, ScopeNames};
use crate::learning::Learning;
use crate::pipeline::Target;
use crate::state::AppState;
use crate::upstream::{BodyError, BodyStream, Failure, Outgoing, Reply};
use routemesh_cache::{Answer, AnswerKind, Hit, Insert, LookupResult, Tier};
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
            Some(cp) => match consult(layer, cp, timeout, trace).await {
                Consulted::Hit(resp) => return Ok(resp),
                Consulted::Miss(f) => fill = f,
            },
        }
    }

    if !forward.redact_pii.is_empty() {
        let kinds = &forward.redact_pii;
        let redacted = req.redact_text(|text| {
            let spans: Vec<_> = state
                .pii
                .detect(text)
                .into_iter()
                .filter(|s| kinds.contains(&s.kind))
                .collect();
            (!spans.is_empty()).then(|| (pii::redact(text, &spans), spans.len()))
        });
        trace.redacted = redacted;
    }
    if let Some(sp) = &forward.system_prompt {
        req.set_system_prompt(sp);
    }
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
            metrics::counter!("routemesh_upstream_fallbacks_total", "decision" => plan.decision.clone())
                .increment(1);
            tracing::info!(
                request_id = %trace.id,
                decision = %plan.decision,
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
    let watch = Watch {
        outcomes: learn.filter(|_| status.is_success()),
        fill: fill.filter(|_| status == StatusCode::OK),
    };
    Ok(relay(upstream, watch))
}

/// The body for candidate `model`: its reasoning in its upstream's dialect,
/// `model` rewritten to its upstream name.
fn upstream_body(
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

/// What the cache said about a request.
enum Consulted {
    /// Answered from the cache.
    Hit(Response),
    /// Go upstream; store the answer as this says (`None`: do not).
    Miss(Option<Fill>),
}

/// Looks the request up (unless the client said `no-cache`); on a miss,
/// waits for an identical request already calling the upstream, or becomes
/// that request.
async fn consult(
    layer: &Arc<CacheLayer>,
    cp: CachePlan,
    upstream_timeout: Duration,
    trace: &mut Trace,
) -> Consulted {
    let d = cp.directives;
    let mut hit = None;
    let mut leader = None;
    if !d.no_cache {
        let started = Instant::now();
        hit = hit_of(layer.lookup(&cp, false).await);
        trace.stages.push(("cache", started.elapsed()));
        if hit.is_none() && !d.no_store {
            // Waiting for an identical request's upstream call is its own
            // stage: it is upstream time, not cache time.
            let started = Instant::now();
            let joined = layer.join(&cp, upstream_timeout).await;
            if !matches!(joined, Joined::Leader(_)) {
                trace.stages.push(("coalesce", started.elapsed()));
            }
            match joined {
                Joined::Leader(guard) => leader = Some(guard),
                Joined::Waited => {
                    let started = Instant::now();
                    hit = hit_of(layer.lookup(&cp, true).await);
                    trace.stages.push(("cache", started.elapsed()));
                }
                Joined::Alone => {}
            }
        }
    }
    if let Some(h) = hit {
        trace.cache = Some(CacheTrace::Hit {
            tier: match h.tier {
                Tier::Exact => "exact",
                Tier::Semantic => "semantic",
            },
            similarity: h.similarity,
        });
        return Consulted::Hit(cached_response(&h.answer));
    }
    trace.cache = Some(if d.no_cache {
        CacheTrace::Bypass
    } else {
        CacheTrace::Miss
    });
    let fill = (!d.no_store).then(|| Fill {
        layer: layer.clone(),
        plan: cp,
        buf: Vec::new(),
        _leader: leader,
    });
    Consulted::Miss(fill)
}

fn hit_of(result: LookupResult) -> Option<Hit> {
    match result {
        LookupResult::Hit(h) => Some(h),
        LookupResult::Miss | LookupResult::TimedOut | LookupResult::Unavailable => None,
    }
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

/// An answer being collected for the cache as it is relayed.
struct Fill {
    layer: Arc<CacheLayer>,
    plan: CachePlan,
    buf: Vec<u8>,
    /// Set when identical requests wait for this one: they look again when
    /// it is dropped, which is after the insert.
    _leader: Option<InFlight>,
}

impl Fill {
    /// Keeps `chunk`; false once the answer is too big to store.
    fn push(&mut self, chunk: &[u8]) -> bool {
        if self.buf.len() + chunk.len() > self.layer.max_entry_bytes() {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// Stores the answer if it is complete: valid JSON, or an event stream
    /// that ended with `data: [DONE]`.
    fn finish(self, content_type: Option<&str>) {
        let content_type = content_type.unwrap_or("application/json").to_owned();
        let kind = if content_type.starts_with("text/event-stream") {
            AnswerKind::Sse
        } else {
            AnswerKind::Json
        };
        let complete = match kind {
            AnswerKind::Sse => self.buf.trim_ascii_end().ends_with(b"data: [DONE]"),
            AnswerKind::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&self.buf).is_ok(),
        };
        if !complete {
            tracing::debug!("incomplete answer: not cached");
            return;
        }
        self.layer.cache.insert(Insert {
            scope: self.plan.scope,
            key: self.plan.key,
            vector: self.plan.vector,
            answer: Answer {
                kind,
                content_type,
                body: Bytes::from(self.buf),
            },
            ttl: Some(self.plan.ttl),
        });
    }
}

/// Where a routed request's implicit outcome goes.
#[derive(Clone)]
struct Outcomes {
    learning: Arc<Learning>,
    decision: String,
    model: String,
    slo: Option<Duration>,
    started: Instant,
}

impl Outcomes {
    /// The same request's outcome for another candidate model.
    fn for_model(&self, model: &str) -> Self {
        Self {
            model: model.to_owned(),
            ..self.clone()
        }
    }

    /// Reward 0: the model did not answer.
    fn failed(self, source: &str) {
        let event = OutcomeEvent::new(self.decision, self.model, Some(0.0), source);
        self.learning.report_in_background(event);
    }

    /// The answer ended: an SLO miss is a reward of 0; otherwise only the
    /// usage (when the answer reported it) is recorded, since whether the
    /// answer was good is for feedback to say.
    fn finished(self, completion_tokens: Option<u32>) {
        let slow = self.slo.is_some_and(|slo| self.started.elapsed() > slo);
        let reward = slow.then_some(0.0);
        if reward.is_none() && completion_tokens.is_none() {
            return;
        }
        let source = if slow { "slo" } else { "usage" };
        let mut event = OutcomeEvent::new(self.decision, self.model, reward, source);
        event.completion_tokens = completion_tokens;
        self.learning.report_in_background(event);
    }
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
            || n.starts_with("x-routemesh-")
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

/// What to do with an answer while it is relayed.
#[derive(Default)]
struct Watch {
    /// Report how it ended (usage, SLO, a broken stream).
    outcomes: Option<Outcomes>,
    /// Store it in the cache once complete.
    fill: Option<Fill>,
}

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
        .filter(|k| k.as_str().starts_with("x-routemesh-"))
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
    let body = if watch.outcomes.is_none() && watch.fill.is_none() {
        Body::from_stream(upstream.body)
    } else {
        Body::from_stream(observed(upstream.body, watch, content_type))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Bytes of the end of an answer kept to find its `usage`.
const TAIL: usize = 4096;

/// Passes the body through unchanged, keeping its last bytes (and, to fill
/// the cache, all of them up to the entry limit); at the end reports the
/// outcome (usage, SLO) and stores the answer, or reports a failure if the
/// stream broke. A client that hangs up early reports and stores nothing.
fn observed<S>(
    body: S,
    watch: Watch,
    content_type: Option<String>,
) -> impl Stream<Item = Result<Bytes, BodyError>>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
{
    futures_util::stream::unfold(
        (Box::pin(body), watch, Vec::<u8>::new()),
        move |(mut body, mut watch, mut tail)| {
            let content_type = content_type.clone();
            async move {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        tail.extend_from_slice(&chunk);
                        if tail.len() > TAIL {
                            tail.drain(..tail.len() - TAIL);
                        }
                        if watch.fill.as_mut().is_some_and(|f| !f.push(&chunk)) {
                            tracing::debug!("answer larger than cache.max_entry_bytes: not cached");
                            watch.fill = None;
                        }
                        Some((Ok(chunk), (body, watch, tail)))
                    }
                    Some(Err(e)) => {
                        watch.fill = None;
                        if let Some(o) = watch.outcomes.take() {
                            o.failed("upstream_error");
                        }
                        Some((Err(e), (body, watch, tail)))
                    }
                    None => {
                        if let Some(f) = watch.fill.take() {
                            f.finish(content_type.as_deref());
                        }
                        if let Some(o) = watch.outcomes.take() {
                            o.finished(completion_tokens(&tail));
                        }
                        None
                    }
                }
            }
        },
    )
}

/// The last `"completion_tokens": N` in a JSON body or SSE stream.
fn completion_tokens(tail: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"completion_tokens\"";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &tail[at + KEY.len()..];
    let rest = rest
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == b':'))
        .map(|i| &rest[i..])?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_at_the_end_of_json_and_sse_bodies() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens": 42,"total_tokens":47}}"#;
        assert_eq!(completion_tokens(json), Some(42));
        let sse = b"data: {\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        assert_eq!(completion_tokens(sse), Some(7));
        assert_eq!(completion_tokens(b"data: {\"choices\":[]}"), None);
    }

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
