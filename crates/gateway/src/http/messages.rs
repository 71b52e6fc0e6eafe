//! `POST /v1/messages`: the Anthropic Messages API over the same pipeline
//! as chat completions. The request is translated into chat completions
//! (what every upstream speaks), routed, cached and learned from as one;
//! the answer is translated back — a stream event by event as its chunks
//! arrive, a whole answer at once — and errors are in Anthropic's shape.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use routemesh_cache::AnswerKind;
use serde_json::Value;

use super::meta::RequestId;
use super::{collect_answer as collect, read_body, stream_response};
use crate::api::anthropic::answer::{self, StreamTranslator};
use crate::api::anthropic::{self, error};
use crate::api::openai::ApiError;
use crate::auth::Tenant;
use crate::pipeline::{self, Answer, Record, headers};
use crate::state::AppState;
use crate::upstream::BodyStream;

/// Whether `path` is served by this module (its errors are Anthropic's).
pub(super) fn is_messages_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

pub(super) async fn messages(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = Record::start(id.0).for_api("messages");
    let result = handle(&state, tenant, headers, body, &mut record).await;
    let mut resp = match result {
        Ok((answer, requested)) => {
            let model = record.model().unwrap_or(&requested).to_owned();
            let resp = render(answer, &model).await;
            record.count_answer(resp.status());
            resp
        }
        Err(e) => {
            let kind = e.outcome();
            let resp = error::render(&e).into_response();
            record.count_refusal(resp.status(), kind);
            resp
        }
    };
    resp.headers_mut().extend(record.headers());
    tracing::info!(
        request_id = %record.id(),
        decision = record.decision().unwrap_or("-"),
        model = record.model().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = record.started().elapsed().as_secs_f64() * 1e3,
        "message"
    );
    resp
}

async fn handle(
    state: &AppState,
    tenant: Tenant,
    mut headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut Record,
) -> Result<(Answer, String), ApiError> {
    let body = read_body(state, body)?;
    let m = anthropic::parse_messages(&body)?;
    // Anthropic's own headers mean nothing to a chat-completions upstream.
    let theirs: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("anthropic-"))
        .cloned()
        .collect();
    for name in theirs {
        headers.remove(name);
    }
    let requested = m.model.clone();
    let req = m.chat.into_request(tenant, headers);
    Ok((pipeline::run(state, req, record).await?, requested))
}

async fn render(answer: Answer, model: &str) -> Response {
    match answer {
        Answer::Cached(a) => match a.kind {
            AnswerKind::Sse => {
                let mut t = StreamTranslator::new(model);
                let mut events = t.feed(&a.body);
                events.extend(t.end());
                stream_response(StatusCode::OK, Body::from(events))
            }
            AnswerKind::Json => whole(StatusCode::OK, &a.body, model),
        },
        Answer::Relayed(r) => {
            let is_stream = headers::content_type(&r.headers)
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            if r.status.is_success() && is_stream {
                return stream_response(r.status, Body::from_stream(translate(r.body, model)));
            }
            let bytes = match collect(r.body).await {
                Ok(b) => b,
                Err(e) => {
                    return json(
                        StatusCode::BAD_GATEWAY,
                        &error::body(StatusCode::BAD_GATEWAY, &e),
                    );
                }
            };
            if r.status.is_success() {
                whole(r.status, &bytes, model)
            } else {
                json(r.status, &error::from_upstream(r.status, &bytes))
            }
        }
    }
}

/// A whole chat completion as a Messages answer.
fn whole(status: StatusCode, chat: &[u8], model: &str) -> Response {
    match serde_json::from_slice::<Value>(chat) {
        Ok(v) if v["choices"].is_array() => json(status, &answer::message(&v, model)),
        _ => json(
            StatusCode::BAD_GATEWAY,
            &error::body(
                StatusCode::BAD_GATEWAY,
                "the upstream's answer is not a chat completion",
            ),
        ),
    }
}

fn json(status: StatusCode, v: &Value) -> Response {
    let mut resp = Response::new(Body::from(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The upstream's chunk stream as Messages events, each upstream chunk
/// translated as it arrives; a stream that breaks ends with an `error`
/// event.
fn translate(
    body: BodyStream,
    model: &str,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let state = Some((body, StreamTranslator::new(model)));
    futures_util::stream::unfold(state, |state| async move {
        let (mut body, mut t) = state?;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let out = t.feed(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), Some((body, t))));
                    }
                }
                Some(Err(e)) => {
                    let mut out = Vec::new();
                    answer::emit(
                        &mut out,
                        "error",
                        &error::body(StatusCode::BAD_GATEWAY, &e.to_string()),
                    );
                    return Some((Ok(Bytes::from(out)), None));
                }
                None => {
                    let out = t.end();
                    return (!out.is_empty()).then(|| (Ok(Bytes::from(out)), None));
                }
            }
        }
    })
}
