//! The gateway as an Envoy external processor
//! (`envoy.service.ext_proc.v3.ExternalProcessor`, gRPC).
//!
//! Teams that already run Envoy keep it in front; Envoy calls routemesh for
//! every chat request and forwards it upstream itself. One gRPC stream is
//! one HTTP request. The conversation, and what routemesh answers:
//!
//! 1. **request headers**: a chat completion (`POST …/chat/completions`)
//!    is kept for its body; the client's `x-routemesh-*` headers are
//!    removed; with `auth:` a request without a valid API key is answered
//!    401 at once. Any other request passes untouched.
//! 2. **request body** (Envoy's `BUFFERED` mode: the whole body in one
//!    message): parsed with the OpenAI codec ([`api::openai`]) and run
//!    through the same [`pipeline::prepare`] as the HTTP gateway:
//!    passthrough or classify → decide, the cache, the decision's edits. The answer is a body mutation (the request as the
//!    chosen model gets it: `model` rewritten, reasoning, system prompt,
//!    redaction), headers for Envoy's route table (`x-routemesh-model`,
//!    `x-routemesh-decision`, `x-routemesh-upstream`), the upstream's API
//!    key, the decision's header edits, and `clear_route_cache` so Envoy
//!    routes on the new headers. A block, a bad request or a cache hit is an
//!    immediate response instead (an OpenAI-style error, or the cached
//!    answer).
//! 3. **response headers and body**: answered at once, never changed but
//!    for the `x-routemesh-*` response headers; the body is only looked at
//!    ([`Watch`], the pipeline's one outcome rule): the outcome (failure,
//!    usage, SLO) goes to the learner and a complete 200 answer into the
//!    cache, in the background.
//!
//! Retries and fallbacks between endpoints are Envoy's (its route's retry
//! policy), not the gateway's upstream pool's.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Reply;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpBody,
    HttpHeaders, ImmediateResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderName, StatusCode, header};
use routemesh_cache::Answer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tracing::Instrument as _;

use crate::api::openai::{self, ApiError};
use crate::auth::{Auth, Tenant, bearer};
use crate::pipeline::headers::{self, HEADER_DECISION, HEADER_MODEL, HEADER_UPSTREAM};
use crate::pipeline::outcome::Watch;
use crate::pipeline::{self, Forwarding, Prepared, Record};
use crate::state::{AppState, Gateway};

/// Serves the external-processor API on `listener` until `shutdown`
/// resolves; streams in flight then finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    auth: Option<Arc<Auth>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Replies are small and latency-bound: no Nagle delay.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        })
    });
    tonic::transport::Server::builder()
        .add_service(ExternalProcessorServer::new(ExtProc { gateway, auth }))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The gRPC service: one [`Exchange`] per stream.
#[derive(Debug, Clone)]
pub struct ExtProc {
    gateway: Arc<Gateway>,
    auth: Option<Arc<Auth>>,
}

impl ExtProc {
    pub fn new(gateway: Arc<Gateway>, auth: Option<Arc<Auth>>) -> Self {
        Self { gateway, auth }
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProc {
    type ProcessStream = Replies;

    async fn process(
        &self,
        request: tonic::Request<tonic::Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Self::ProcessStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let span = tracing::info_span!("ext_proc", request_id = %id);
        // Each request runs start to end on the config version current now.
        let mut exchange = Exchange::new(self.gateway.snapshot(), self.auth.clone(), id);
        tokio::spawn(
            async move {
                while let Some(message) = inbound.next().await {
                    let message = match message {
                        Ok(m) => m,
                        Err(status) => {
                            tracing::debug!(%status, "Envoy closed the stream");
                            break;
                        }
                    };
                    let Some(message) = message.request else {
                        continue;
                    };
                    if let Message::ResponseBody(body) = message {
                        // The answer is never held back: reply first, look after.
                        if tx.send(Ok(continue_body(false))).await.is_err() {
                            break;
                        }
                        exchange.response_body(&body);
                        continue;
                    }
                    let reply = exchange.handle(message).await;
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
            }
            .instrument(span),
        );
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One HTTP request's conversation with Envoy.
struct Exchange {
    state: AppState,
    auth: Option<Arc<Auth>>,
    id: String,
    phase: Phase,
}

/// Where the conversation is.
enum Phase {
    /// Before the request headers.
    Start,
    /// Not a chat completion: everything passes unchanged.
    Ignored,
    /// A chat completion whose body is arriving.
    Request(Box<Pending>),
    /// Sent upstream; waiting for the answer's headers.
    Forwarded {
        record: Box<Record>,
        sent: Instant,
        watch: Watch,
    },
    /// The answer is passing.
    Answer { watch: Watch },
    /// Answered here, or over.
    Done,
}

/// A chat request before its body is complete.
struct Pending {
    record: Record,
    headers: HeaderMap,
    tenant: Tenant,
    body: Vec<u8>,
}

impl Exchange {
    fn new(state: AppState, auth: Option<Arc<Auth>>, id: String) -> Self {
        Self {
            state,
            auth,
            id,
            phase: Phase::Start,
        }
    }

    /// The reply to one message (response bodies: [`Self::response_body`]).
    async fn handle(&mut self, message: Message) -> ProcessingResponse {
        match message {
            Message::RequestHeaders(h) => self.request_headers(&h),
            Message::RequestBody(b) => self.request_body(b).await,
            Message::ResponseHeaders(h) => self.response_headers(&h),
            Message::ResponseBody(b) => {
                self.response_body(&b);
                continue_body(false)
            }
            Message::RequestTrailers(_) => {
                reply(Reply::RequestTrailers(TrailersResponse::default()))
            }
            Message::ResponseTrailers(_) => {
                // Trailers end the answer.
                if let Phase::Answer { watch } = std::mem::replace(&mut self.phase, Phase::Done) {
                    watch.ended();
                }
                reply(Reply::ResponseTrailers(TrailersResponse::default()))
            }
        }
    }

    fn request_headers(&mut self, h: &HttpHeaders) -> ProcessingResponse {
        let (pseudo, mut headers) = read_headers(h);
        // The client's `x-routemesh-*` headers never reach the upstream.
        let spoofed: Vec<String> = headers::strip_internal(&mut headers)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        let strip = HeadersResponse {
            response: Some(CommonResponse {
                header_mutation: (!spoofed.is_empty()).then(|| HeaderMutation {
                    set_headers: Vec::new(),
                    remove_headers: spoofed,
                }),
                ..CommonResponse::default()
            }),
        };
        if !is_chat(&pseudo) {
            self.phase = Phase::Ignored;
            return reply(Reply::RequestHeaders(strip));
        }
        let record = Record::start(self.id.clone());
        let tenant = match &self.auth {
            Some(auth) => match auth.tenant(bearer(&headers)) {
                Ok(t) => t.clone(),
                Err(denied) => {
                    self.phase = Phase::Done;
                    return self.immediate(&record, Local::Error(denied.into()));
                }
            },
            None => {
                Tenant::from_credential(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
            }
        };
        if h.end_of_stream {
            self.phase = Phase::Done;
            let e = ApiError::bad_request("the request has no body", None);
            return self.immediate(&record, Local::Error(e));
        }
        self.phase = Phase::Request(Box::new(Pending {
            record,
            headers,
            tenant,
            body: Vec::new(),
        }));
        reply(Reply::RequestHeaders(strip))
    }

    async fn request_body(&mut self, b: HttpBody) -> ProcessingResponse {
        let Phase::Request(pending) = &mut self.phase else {
            return continue_body(true);
        };
        pending.body.extend_from_slice(&b.body);
        let limit = self.state.config.server.max_body_bytes;
        if pending.body.len() > limit {
            let Phase::Request(p) = std::mem::replace(&mut self.phase, Phase::Done) else {
                unreachable!("matched above")
            };
            let e = ApiError::PayloadTooLarge { limit };
            return self.immediate(&p.record, Local::Error(e));
        }
        if !b.end_of_stream {
            // Envoy's STREAMED mode: the pieces are held back here and the
            // whole edited body goes with the last one. (Envoy has chosen
            // the route by then: route on the headers needs BUFFERED.)
            return reply(Reply::RequestBody(BodyResponse {
                response: Some(CommonResponse {
                    body_mutation: Some(BodyMutation {
                        mutation: Some(Mutation::ClearBody(true)),
                    }),
                    ..CommonResponse::default()
                }),
            }));
        }
        let Phase::Request(p) = std::mem::replace(&mut self.phase, Phase::Done) else {
            unreachable!("matched above")
        };
        let Pending {
            mut record,
            headers,
            tenant,
            body,
        } = *p;
        let state = self.state.clone();
        let req = match openai::parse_chat(&body) {
            Ok(chat) => chat.into_request(tenant, headers),
            Err(e) => return self.immediate(&record, Local::Error(e)),
        };
        let f = match pipeline::prepare(&state, req, &mut record).await {
            Err(refusal) => return self.immediate(&record, Local::Error(refusal.into())),
            Ok(Prepared::Cached(answer)) => return self.immediate(&record, Local::Cached(answer)),
            Ok(Prepared::Forward(f)) => f,
        };
        match f.body(&state) {
            Ok(body) => self.forward(&state, *f, body, record),
            Err(refusal) => self.immediate(&record, Local::Error(refusal.into())),
        }
    }

    /// The edited body and the headers Envoy routes on.
    fn forward(
        &mut self,
        state: &AppState,
        f: Forwarding,
        body: bytes::Bytes,
        record: Record,
    ) -> ProcessingResponse {
        let model = state.config.model(f.model());
        let mut set = vec![
            overwrite(HEADER_MODEL, model.name.as_bytes()),
            overwrite(HEADER_DECISION, f.decision().as_bytes()),
            overwrite(
                HEADER_UPSTREAM,
                state.config.upstream(model.upstream).name.as_bytes(),
            ),
            overwrite(
                header::CONTENT_LENGTH.as_str(),
                body.len().to_string().as_bytes(),
            ),
        ];
        let mut remove = Vec::new();
        // The upstream gets the gateway's key for it, never the client's.
        match state.upstreams.authorization(model.upstream) {
            Some(key) => set.push(overwrite(header::AUTHORIZATION.as_str(), key.as_bytes())),
            None => remove.push(header::AUTHORIZATION.as_str().to_owned()),
        }
        let edits = f.header_edits();
        for (name, value) in &edits.add {
            set.push(overwrite(name, value.as_bytes()));
        }
        remove.extend(edits.remove.iter().cloned());
        self.phase = Phase::Forwarded {
            record: Box::new(record),
            sent: Instant::now(),
            watch: f.into_watch(),
        };
        reply(Reply::RequestBody(BodyResponse {
            response: Some(CommonResponse {
                header_mutation: Some(HeaderMutation {
                    set_headers: set,
                    remove_headers: remove,
                }),
                body_mutation: Some(BodyMutation {
                    mutation: Some(Mutation::Body(body.to_vec())),
                }),
                clear_route_cache: true,
                ..CommonResponse::default()
            }),
        }))
    }

    fn response_headers(&mut self, h: &HttpHeaders) -> ProcessingResponse {
        let Phase::Forwarded {
            mut record,
            sent,
            mut watch,
        } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return reply(Reply::ResponseHeaders(HeadersResponse::default()));
        };
        let (pseudo, headers) = read_headers(h);
        let status = pseudo
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK);
        record.upstream_answered(sent.elapsed());
        watch.answered(status, &headers);
        // The request's metrics, and the gateway's headers on the answer.
        record.count_answer(status);
        let ours = record.headers();
        let set: Vec<HeaderValueOption> = ours
            .iter()
            .map(|(n, v)| overwrite(n.as_str(), v.as_bytes()))
            .collect();
        // The upstream's own `x-routemesh-*` headers are not relayed.
        let remove = headers
            .keys()
            .filter(|n| headers::is_internal(n) && !ours.contains_key(*n))
            .map(|n| n.as_str().to_owned())
            .collect();
        if h.end_of_stream {
            watch.ended();
        } else {
            self.phase = Phase::Answer { watch };
        }
        reply(Reply::ResponseHeaders(HeadersResponse {
            response: Some(CommonResponse {
                header_mutation: Some(HeaderMutation {
                    set_headers: set,
                    remove_headers: remove,
                }),
                ..CommonResponse::default()
            }),
        }))
    }

    /// Looks at a piece of the answer (already answered: CONTINUE).
    fn response_body(&mut self, b: &HttpBody) {
        let Phase::Answer { watch, .. } = &mut self.phase else {
            return;
        };
        watch.chunk(&b.body);
        if b.end_of_stream
            && let Phase::Answer { watch } = std::mem::replace(&mut self.phase, Phase::Done)
        {
            watch.ended();
        }
    }

    /// The response Envoy sends the client itself: an error or a cached
    /// answer, with the gateway's headers; counted in the metrics.
    fn immediate(&self, record: &Record, local: Local) -> ProcessingResponse {
        let (status, mut headers, body) = match local {
            Local::Cached(answer) => {
                record.count_answer(StatusCode::OK);
                (
                    StatusCode::OK,
                    headers::cached(&answer),
                    answer.body.clone(),
                )
            }
            Local::Error(e) => {
                let kind = e.outcome();
                let (status, headers, body) = e.render();
                record.count_refusal(status, kind);
                (status, headers, body)
            }
        };
        headers.extend(record.headers());
        let set: Vec<HeaderValueOption> = headers
            .iter()
            .map(|(n, v)| overwrite(n.as_str(), v.as_bytes()))
            .collect();
        reply(Reply::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus {
                code: i32::from(status.as_u16()),
            }),
            headers: Some(HeaderMutation {
                set_headers: set,
                remove_headers: Vec::new(),
            }),
            body: body.to_vec(),
            grpc_status: None,
            details: format!("routemesh_{}", status.as_u16()),
        }))
    }
}

/// What Envoy is told to answer by itself.
enum Local {
    /// A stored answer (a cache hit).
    Cached(Arc<Answer>),
    /// An error, in the OpenAI shape.
    Error(ApiError),
}

/// The pseudo-headers routemesh reads.
#[derive(Debug, Default)]
struct Pseudo {
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
}

/// Envoy's header list as pseudo-headers and a [`HeaderMap`] (a value is in
/// `raw_value` in current Envoy, in `value` in older ones; names Envoy
/// sends are lower-case; a name or value `http` refuses is skipped).
fn read_headers(h: &HttpHeaders) -> (Pseudo, HeaderMap) {
    let mut pseudo = Pseudo::default();
    let mut map = HeaderMap::new();
    for hv in h.headers.iter().flat_map(|m| &m.headers) {
        let value: &[u8] = if hv.raw_value.is_empty() {
            hv.value.as_bytes()
        } else {
            &hv.raw_value
        };
        match hv.key.as_str() {
            ":method" => pseudo.method = std::str::from_utf8(value).ok().map(str::to_owned),
            ":path" => pseudo.path = std::str::from_utf8(value).ok().map(str::to_owned),
            ":status" => {
                pseudo.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            k if k.starts_with(':') => {}
            k => {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_bytes(value),
                ) {
                    map.append(n, v);
                }
            }
        }
    }
    (pseudo, map)
}

/// Whether the request is an OpenAI chat completion (any path prefix, so a
/// route like `/openai/v1/chat/completions` works too).
fn is_chat(p: &Pseudo) -> bool {
    let path = p.path.as_deref().unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    p.method.as_deref() == Some("POST") && path.ends_with("/chat/completions")
}

/// A header set to one value, replacing any the message had.
fn overwrite(name: &str, value: &[u8]) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: String::new(),
            raw_value: value.to_vec(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

fn reply(response: Reply) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(response),
        ..ProcessingResponse::default()
    }
}

/// A body message passed on unchanged (`request`: the request's body,
/// else the response's).
fn continue_body(request: bool) -> ProcessingResponse {
    let r = BodyResponse::default();
    reply(if request {
        Reply::RequestBody(r)
    } else {
        Reply::ResponseBody(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderMap as EnvoyHeaderMap;

    fn headers(pairs: &[(&str, &str)], raw: bool) -> HttpHeaders {
        HttpHeaders {
            headers: Some(EnvoyHeaderMap {
                headers: pairs
                    .iter()
                    .map(|(k, v)| HeaderValue {
                        key: (*k).to_owned(),
                        value: if raw { String::new() } else { (*v).to_owned() },
                        raw_value: if raw {
                            v.as_bytes().to_vec()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect(),
            }),
            ..HttpHeaders::default()
        }
    }

    #[test]
    fn headers_are_read_from_raw_or_string_values() {
        for raw in [true, false] {
            let h = headers(
                &[
                    (":method", "POST"),
                    (":path", "/v1/chat/completions?x=1"),
                    ("authorization", "Bearer k"),
                    ("x-routemesh-model", "spoof"),
                ],
                raw,
            );
            let (pseudo, map) = read_headers(&h);
            assert!(is_chat(&pseudo), "{pseudo:?}");
            assert_eq!(map["authorization"], "Bearer k");
            assert_eq!(map["x-routemesh-model"], "spoof");
            assert!(!map.contains_key(":path"));
        }
    }

    #[test]
    fn only_posted_chat_completions_are_routed() {
        let of = |method: &str, path: &str| {
            is_chat(&Pseudo {
                method: Some(method.into()),
                path: Some(path.into()),
                status: None,
            })
        };
        assert!(of("POST", "/v1/chat/completions"));
        assert!(of("POST", "/openai/v1/chat/completions"));
        assert!(!of("GET", "/v1/chat/completions"));
        assert!(!of("POST", "/v1/completions"));
        assert!(!of("POST", "/v1/models"));
    }
}
