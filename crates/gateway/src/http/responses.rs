//! `POST /v1/responses`: the OpenAI Responses API over the same pipeline
//! as chat completions. The request is translated into chat completions,
//! routed, cached and learned from as one; the answer is translated back
//! into a `response` object, or its typed events as the chunks arrive.

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
use crate::api::openai::ApiError;
use crate::api::openai::responses::{self, Echo, ResponsesStream};
use crate::auth::Tenant;
use crate::pipeline::{self, Answer, Record, headers};
use crate::state::AppState;
use crate::upstream::BodyStream;

pub(super) async fn responses(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = Record::start(id.0).for_api("responses");
    let result = handle(&state, tenant, headers, body, &mut record).await;
    let mut resp = match result {
        Ok((answer, requested, echo)) => {
            let model = record.model().unwrap_or(&requested).to_owned();
            let resp = render(answer, &model, &echo).await;
            record.count_answer(resp.status());
            resp
        }
        Err(e) => {
            let kind = e.outcome();
            let resp = e.into_response();
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
        "response"
    );
    resp
}

async fn handle(
    state: &AppState,
    tenant: Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut Record,
) -> Result<(Answer, String, Echo), ApiError> {
    let body = read_body(state, body)?;
    let r = responses::parse_responses(&body)?;
    let (requested, echo) = (r.model.clone(), r.echo.clone());
    let req = r.chat.into_request(tenant, headers);
    Ok((pipeline::run(state, req, record).await?, requested, echo))
}

async fn render(answer: Answer, model: &str, echo: &Echo) -> Response {
    match answer {
        Answer::Cached(a) => match a.kind {
            AnswerKind::Sse => {
                let mut s = ResponsesStream::new(model, echo);
                let mut events = s.feed(&a.body);
                events.extend(s.end());
                stream_response(StatusCode::OK, Body::from(events))
            }
            AnswerKind::Json => whole(StatusCode::OK, &a.body, model, echo),
        },
        Answer::Relayed(r) => {
            let is_stream = headers::content_type(&r.headers)
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            if r.status.is_success() && is_stream {
                return stream_response(
                    r.status,
                    Body::from_stream(translate(r.body, model, echo)),
                );
            }
            let bytes = match collect(r.body).await {
                Ok(b) => b,
                Err(e) => return upstream_failed(&e),
            };
            if r.status.is_success() {
                whole(r.status, &bytes, model, echo)
            } else {
                // Upstream errors are already in OpenAI's shape: relayed.
                let mut resp = Response::new(Body::from(bytes));
                *resp.status_mut() = r.status;
                if let Some(ct) = r.headers.get(header::CONTENT_TYPE) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                resp
            }
        }
    }
}

fn whole(status: StatusCode, chat: &[u8], model: &str, echo: &Echo) -> Response {
    match serde_json::from_slice::<Value>(chat) {
        Ok(v) if v["choices"].is_array() => {
            let mut resp =
                Response::new(Body::from(responses::response(&v, model, echo).to_string()));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => upstream_failed("the upstream's answer is not a chat completion"),
    }
}

fn upstream_failed(message: &str) -> Response {
    let body = serde_json::json!({ "error": {
        "message": message, "type": "upstream_error", "param": null, "code": "upstream_invalid",
    }});
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn translate(
    body: BodyStream,
    model: &str,
    echo: &Echo,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let state = Some((body, ResponsesStream::new(model, echo)));
    futures_util::stream::unfold(state, |state| async move {
        let (mut body, mut s) = state?;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let out = s.feed(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), Some((body, s))));
                    }
                }
                Some(Err(e)) => {
                    let out = responses::failed_event(&e.to_string());
                    return Some((Ok(Bytes::from(out)), None));
                }
                None => {
                    let out = s.end();
                    return (!out.is_empty()).then(|| (Ok(Bytes::from(out)), None));
                }
            }
        }
    })
}
