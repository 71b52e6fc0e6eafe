//! `POST /v1/chat/completions`: parse (OpenAI's codec), run the pipeline,
//! render its answer.
//!
//! The upstream's body is relayed as it arrives, chunk by chunk, for both
//! streaming (SSE) and plain responses: the gateway never holds an answer
//! back.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use http::HeaderMap;

use super::meta::RequestId;
use super::read_body;
use crate::api::openai::{self, ApiError};
use crate::auth::Tenant;
use crate::pipeline::{self, Answer, Record, headers};
use crate::state::AppState;

pub(super) async fn chat_completions(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = Record::start(id.0);
    let result = handle(&state, tenant, headers, body, &mut record).await;
    let resp = respond(&record, result);
    tracing::info!(
        request_id = %record.id(),
        decision = record.decision().unwrap_or("-"),
        model = record.model().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = record.started().elapsed().as_secs_f64() * 1e3,
        "chat completion"
    );
    resp
}

async fn handle(
    state: &AppState,
    tenant: Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut Record,
) -> Result<Answer, ApiError> {
    let body = read_body(state, body)?;
    let req = openai::parse_chat(&body)?.into_request(tenant, headers);
    Ok(pipeline::run(state, req, record).await?)
}

/// The response for the pipeline's result, with the record's headers;
/// counts the request.
fn respond(record: &Record, result: Result<Answer, ApiError>) -> Response {
    let mut resp = match result {
        Ok(answer) => {
            let resp = render(answer);
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
    resp
}

fn render(answer: Answer) -> Response {
    match answer {
        Answer::Cached(a) => {
            let mut resp = Response::new(Body::from(a.body.clone()));
            *resp.headers_mut() = headers::cached(&a);
            resp
        }
        Answer::Relayed(r) => {
            let mut resp = Response::new(Body::from_stream(r.body));
            *resp.status_mut() = r.status;
            *resp.headers_mut() = r.headers;
            resp
        }
    }
}
