//! `POST /v1/messages` (Anthropic's Messages API) and `POST /v1/responses`
//! (OpenAI's Responses API) over the same pipeline as chat completions.
//! The request is translated into chat completions by its API's codec
//! ([`Api::parse`]), routed, cached and learned from as one; the answer is
//! translated back ([`Client`]) — a stream event by event as its chunks
//! arrive, a whole answer at once — and errors are in the API's shape.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use routemesh_cache::AnswerKind;

use super::meta::RequestId;
use super::{collect_answer as collect, read_body, stream_response};
use crate::api::client::{Api, Client, ClientStream};
use crate::auth::Tenant;
use crate::pipeline::{self, Answer, Record, headers};
use crate::state::AppState;
use crate::upstream::BodyStream;

/// Whether `path` is served by the Messages handler (its errors are
/// Anthropic's).
pub(super) fn is_messages_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

pub(super) async fn messages(
    state: State<AppState>,
    id: Extension<RequestId>,
    tenant: Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(Api::Messages, state, id, tenant, headers, body).await
}

pub(super) async fn responses(
    state: State<AppState>,
    id: Extension<RequestId>,
    tenant: Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(Api::Responses, state, id, tenant, headers, body).await
}

async fn serve(
    api: Api,
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = Record::start(id.0).for_api(api.label());
    let planned = async {
        let body = read_body(&state, body)?;
        let (req, client) = api.parse(&body, tenant, headers)?;
        Ok::<_, crate::api::openai::ApiError>((
            pipeline::run(&state, req, &mut record).await?,
            client,
        ))
    };
    let mut resp = match planned.await {
        Ok((answer, client)) => {
            let resp = render(answer, &client, record.model()).await;
            record.count_answer(resp.status());
            resp
        }
        Err(e) => {
            let kind = e.outcome();
            let resp = api.render_error(&e).into_response();
            record.count_refusal(resp.status(), kind);
            resp
        }
    };
    resp.headers_mut().extend(record.headers());
    tracing::info!(
        request_id = %record.id(),
        api = api.label(),
        decision = record.decision().unwrap_or("-"),
        model = record.model().unwrap_or("-"),
        status = resp.status().as_u16(),
        ms = record.started().elapsed().as_secs_f64() * 1e3,
        "translated"
    );
    resp
}

/// The pipeline's chat-completions answer in the client's API; `model`:
/// the model that answered.
async fn render(answer: Answer, client: &Client, model: Option<&str>) -> Response {
    match answer {
        Answer::Cached(a) => {
            let (content_type, body) = client.cached(&a, model);
            match a.kind {
                AnswerKind::Sse => stream_response(StatusCode::OK, Body::from(body)),
                AnswerKind::Json => json(StatusCode::OK, content_type, body),
            }
        }
        Answer::Relayed(r) => {
            let is_stream = headers::content_type(&r.headers)
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            if let (true, Some(events)) = (r.status.is_success() && is_stream, client.stream(model))
            {
                return stream_response(r.status, Body::from_stream(translate(r.body, events)));
            }
            let (status, body) = match collect(r.body).await {
                Ok(bytes) => client.whole(r.status, &bytes, model),
                Err(e) => (StatusCode::BAD_GATEWAY, client.failed(&e)),
            };
            json(status, HeaderValue::from_static("application/json"), body)
        }
    }
}

fn json(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp
}

/// The upstream's chunk stream as the client's events, each upstream chunk
/// translated as it arrives; a stream that breaks ends with the API's
/// error event.
fn translate(
    body: BodyStream,
    events: ClientStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    futures_util::stream::unfold(Some((body, events)), |state| async move {
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
                    let out = t.broken(&e.to_string());
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
