//! The gateway as an Envoy external processor
//! (`envoy.service.ext_proc.v3.ExternalProcessor`, gRPC).
//!
//! Teams that already run Envoy keep it in front; Envoy calls routemesh for
//! every routed request and forwards it upstream itself. One gRPC stream
//! is one HTTP request. The conversation, and what routemesh answers:
//!
//! 1. **request headers**: a chat completion, an Anthropic message or an
//!    OpenAI response (`POST …/chat/completions`, `…/messages`,
//!    `…/responses`: [`Api::of_path`]) is kept for its body; the client's
//!    `x-routemesh-*` headers are removed; with `auth:` a request without a
//!    valid API key (`Authorization: Bearer` or `x-api-key`) is answered
//!    401 at once. Any other request passes untouched.
//! 2. **request body** (Envoy's `BUFFERED` mode: the whole body in one
//!    message): parsed by its API's codec into chat completions
//!    ([`Api::parse`]) and run through the same [`pipeline::prepare`] as
//!    the HTTP gateway: passthrough or classify → decide, the cache, the
//!    decision's edits. The answer is a body mutation (the request as the
//!    chosen model gets it: `model` rewritten, reasoning, system prompt,
//!    redaction; for an `api: anthropic` upstream a Messages request),
//!    `:path` set to the upstream's endpoint when it is not the client's,
//!    headers for Envoy's route table (`x-routemesh-model`,
//!    `x-routemesh-decision`, `x-routemesh-upstream`), the upstream's API
//!    key (the client's `authorization`, `x-api-key` and `anthropic-*`
//!    removed), the decision's header edits, and `clear_route_cache` so
//!    Envoy routes on the new headers. A block, a bad request or a cache hit
//!    is an immediate response instead (an error in the client's API's
//!    shape, or the cached answer in its API).
//! 3. **response headers and body**: when the upstream speaks the client's
//!    API (chat completions both sides), answered at once and never changed
//!    but for the `x-routemesh-*` response headers; otherwise each body
//!    chunk is replaced by its translation as it passes (a stream event by
//!    event, a whole answer at its end): upstream → chat completions →
//!    client ([`Translation`]). Either way the chat completions are watched
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
use routemesh_common::config::UpstreamApi;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tracing::Instrument as _;

use crate::api::client::{Api, Client, ClientStream};
use crate::api::openai::ApiError;
use crate::auth::{Auth, Tenant, credential};
use crate::pipeline::headers::{self, HEADER_DECISION, HEADER_MODEL, HEADER_UPSTREAM};
use crate::pipeline::outcome::Watch;
use crate::pipeline::{self, Forwarding, Prepared, Record};
use crate::state::{AppState, Gateway};
use crate::upstream::anthropic;

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
                        if exchange.translates() {
                            let out = exchange.translate_body(&body);
                            if tx.send(Ok(replace_body(out))).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        // An answer passed as it is never waits: reply
                        // first, look after.
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
    /// The client's API (errors are in its shape).
    api: Api,
    phase: Phase,
}

/// Where the conversation is.
enum Phase {
    /// Before the request headers.
    Start,
    /// Not a routed request: everything passes unchanged.
    Ignored,
    /// A routed request whose body is arriving.
    Request(Box<Pending>),
    /// Sent upstream; waiting for the answer's headers.
    Forwarded {
        record: Box<Record>,
        sent: Instant,
        watch: Watch,
        translation: Option<Box<Translation>>,
    },
    /// The answer is passing.
    Answer {
        watch: Watch,
        translation: Option<Box<Translation>>,
    },
    /// Answered here, or over.
    Done,
}

/// A request before its body is complete.
struct Pending {
    record: Record,
    headers: HeaderMap,
    tenant: Tenant,
    body: Vec<u8>,
    /// The path before the API's endpoint (`/v1`).
    prefix: String,
}

/// An answer on its way from an upstream of one API to a client of
/// another: the upstream's dialect into chat completions (what the watch
/// and the cache read), then into the client's API.
struct Translation {
    client: Client,
    /// The model that answered (its configured name).
    model: String,
    /// The upstream speaks Anthropic's Messages API.
    from_messages: bool,
    /// Set by the answer's headers.
    mode: Mode,
}

enum Mode {
    /// Before the answer's headers.
    Unknown,
    /// An event stream, translated chunk by chunk.
    Stream {
        up: Option<Box<anthropic::Chunks>>,
        down: Option<ClientStream>,
    },
    /// A whole body (an answer or an error), held until its end.
    Whole { status: StatusCode, held: Vec<u8> },
}

impl Translation {
    /// How the answer is translated, given its headers; edits them to fit
    /// (the length changes; a whole answer is JSON).
    fn answered(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        set: &mut Vec<HeaderValueOption>,
        remove: &mut Vec<String>,
    ) {
        let is_stream = status.is_success()
            && headers::content_type(headers).is_some_and(|ct| ct.starts_with("text/event-stream"));
        if headers.contains_key(header::CONTENT_LENGTH) {
            remove.push(header::CONTENT_LENGTH.as_str().to_owned());
        }
        self.mode = if is_stream {
            Mode::Stream {
                up: self.from_messages.then(Box::default),
                down: self.client.stream(Some(&self.model)),
            }
        } else {
            set.push(overwrite(
                header::CONTENT_TYPE.as_str(),
                b"application/json",
            ));
            Mode::Whole {
                status,
                held: Vec::new(),
            }
        };
    }

    /// The client's bytes for the next piece of the answer; what the
    /// watch reads goes to `watch`.
    fn feed(&mut self, bytes: &[u8], end: bool, watch: &mut Watch) -> Vec<u8> {
        match &mut self.mode {
            Mode::Unknown => bytes.to_vec(),
            Mode::Stream { up, down } => {
                let translated;
                let chat: &[u8] = match up {
                    Some(up) => {
                        translated = up.feed(bytes);
                        translated.as_bytes()
                    }
                    None => bytes,
                };
                watch.chunk(chat);
                let Some(down) = down else {
                    return chat.to_vec();
                };
                let mut out = down.feed(chat);
                if end {
                    out.extend(down.end());
                }
                out
            }
            Mode::Whole { status, held } => {
                held.extend_from_slice(bytes);
                if !end {
                    return Vec::new();
                }
                let held = std::mem::take(held);
                let chat = if self.from_messages {
                    anthropic::whole(*status, &held).to_string().into_bytes()
                } else {
                    held
                };
                watch.chunk(&chat);
                // The status went with the headers: only the body changes.
                self.client
                    .whole(*status, &chat, Some(&self.model))
                    .1
                    .to_vec()
            }
        }
    }
}

impl Exchange {
    fn new(state: AppState, auth: Option<Arc<Auth>>, id: String) -> Self {
        Self {
            state,
            auth,
            id,
            api: Api::ChatCompletions,
            phase: Phase::Start,
        }
    }

    /// Whether the answer's body is being translated (so replaced chunk by
    /// chunk, not passed).
    fn translates(&self) -> bool {
        matches!(
            self.phase,
            Phase::Answer {
                translation: Some(_),
                ..
            }
        )
    }

    /// The translation of a piece of the answer.
    fn translate_body(&mut self, b: &HttpBody) -> Vec<u8> {
        let Phase::Answer {
            watch,
            translation: Some(t),
        } = &mut self.phase
        else {
            return b.body.clone();
        };
        let out = t.feed(&b.body, b.end_of_stream, watch);
        if b.end_of_stream
            && let Phase::Answer { watch, .. } = std::mem::replace(&mut self.phase, Phase::Done)
        {
            watch.ended();
        }
        out
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
                if let Phase::Answer { watch, .. } = std::mem::replace(&mut self.phase, Phase::Done)
                {
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
        let Some((api, prefix)) = routed(&pseudo) else {
            self.phase = Phase::Ignored;
            return reply(Reply::RequestHeaders(strip));
        };
        self.api = api;
        let prefix = prefix.to_owned();
        let record = Record::start(self.id.clone()).for_api(api.label());
        let tenant = match &self.auth {
            Some(auth) => match auth.tenant(credential(&headers)) {
                Ok(t) => t.clone(),
                Err(denied) => {
                    self.phase = Phase::Done;
                    return self.immediate(&record, Local::Error(denied.into()));
                }
            },
            None => Tenant::of_open_request(&headers),
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
            prefix,
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
            prefix,
        } = *p;
        // What only the client may see: its key, and Anthropic's headers
        // (an Anthropic upstream gets the gateway's).
        let client_only: Vec<String> = headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|n| *n == "x-api-key" || n.starts_with("anthropic-"))
            .map(str::to_owned)
            .collect();
        let state = self.state.clone();
        let (req, client) = match self.api.parse(&body, tenant, headers) {
            Ok(parsed) => parsed,
            Err(e) => return self.immediate(&record, Local::Error(e)),
        };
        let f = match pipeline::prepare(&state, req, &mut record).await {
            Err(refusal) => return self.immediate(&record, Local::Error(refusal.into())),
            Ok(Prepared::Cached(answer)) => {
                let model = record.model().map(str::to_owned);
                return self.immediate(&record, Local::Cached(answer, client, model));
            }
            Ok(Prepared::Forward(f)) => f,
        };
        let body = match f.body(&state) {
            Ok(body) => body,
            Err(refusal) => return self.immediate(&record, Local::Error(refusal.into())),
        };
        let target = Target {
            client,
            prefix,
            client_only,
        };
        self.forward(&state, *f, body, record, target)
    }

    /// The edited body (in the upstream's API) and the headers Envoy routes
    /// on.
    fn forward(
        &mut self,
        state: &AppState,
        f: Forwarding,
        body: bytes::Bytes,
        record: Record,
        target: Target,
    ) -> ProcessingResponse {
        let model = state.config.model(f.model());
        let upstream_api = state.upstreams.api(model.upstream);
        let (body, endpoint) = match upstream_api {
            UpstreamApi::OpenAi => (body, Api::ChatCompletions.endpoint()),
            UpstreamApi::Anthropic => match anthropic::request(&body) {
                Ok(b) => (bytes::Bytes::from(b), Api::Messages.endpoint()),
                Err(message) => {
                    let e = ApiError::bad_request(message, None);
                    return self.immediate(&record, Local::Error(e));
                }
            },
        };
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
        if endpoint != self.api.endpoint() {
            let path = format!("{}{endpoint}", target.prefix);
            set.push(overwrite(":path", path.as_bytes()));
        }
        let mut remove = target.client_only;
        // The upstream gets the gateway's key for it, never the client's.
        match upstream_api {
            UpstreamApi::OpenAi => match state.upstreams.authorization(model.upstream) {
                Some(key) => set.push(overwrite(header::AUTHORIZATION.as_str(), key.as_bytes())),
                None => remove.push(header::AUTHORIZATION.as_str().to_owned()),
            },
            UpstreamApi::Anthropic => {
                remove.push(header::AUTHORIZATION.as_str().to_owned());
                set.push(overwrite(
                    "anthropic-version",
                    anthropic::VERSION.as_bytes(),
                ));
                if let Some(key) = state.upstreams.api_key(model.upstream) {
                    set.push(overwrite("x-api-key", key.as_bytes()));
                }
            }
        }
        let edits = f.header_edits();
        for (name, value) in &edits.add {
            set.push(overwrite(name, value.as_bytes()));
        }
        remove.extend(edits.remove.iter().cloned());
        // A header set here (the upstream's own key) is not also removed.
        remove.retain(|n| {
            !set.iter()
                .any(|o| o.header.as_ref().is_some_and(|h| h.key == *n))
        });
        let from_messages = upstream_api == UpstreamApi::Anthropic;
        let translation = (from_messages || self.api != Api::ChatCompletions).then(|| {
            Box::new(Translation {
                client: target.client,
                model: model.name.clone(),
                from_messages,
                mode: Mode::Unknown,
            })
        });
        self.phase = Phase::Forwarded {
            record: Box::new(record),
            sent: Instant::now(),
            watch: f.into_watch(),
            translation,
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
            mut translation,
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
        let mut set: Vec<HeaderValueOption> = ours
            .iter()
            .map(|(n, v)| overwrite(n.as_str(), v.as_bytes()))
            .collect();
        // The upstream's own `x-routemesh-*` headers are not relayed.
        let mut remove: Vec<String> = headers
            .keys()
            .filter(|n| headers::is_internal(n) && !ours.contains_key(*n))
            .map(|n| n.as_str().to_owned())
            .collect();
        if let Some(t) = &mut translation {
            t.answered(status, &headers, &mut set, &mut remove);
        }
        if h.end_of_stream {
            watch.ended();
        } else {
            self.phase = Phase::Answer { watch, translation };
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

    /// Looks at a piece of an answer passed as it is (already answered:
    /// CONTINUE).
    fn response_body(&mut self, b: &HttpBody) {
        let Phase::Answer { watch, .. } = &mut self.phase else {
            return;
        };
        watch.chunk(&b.body);
        if b.end_of_stream
            && let Phase::Answer { watch, .. } = std::mem::replace(&mut self.phase, Phase::Done)
        {
            watch.ended();
        }
    }

    /// The response Envoy sends the client itself: an error or a cached
    /// answer, in the client's API, with the gateway's headers; counted in
    /// the metrics.
    fn immediate(&self, record: &Record, local: Local) -> ProcessingResponse {
        let (status, mut headers, body) = match local {
            Local::Cached(answer, client, model) => {
                record.count_answer(StatusCode::OK);
                let mut headers = headers::cached(&answer);
                let (content_type, body) = client.cached(&answer, model.as_deref());
                headers.insert(header::CONTENT_TYPE, content_type);
                (StatusCode::OK, headers, body)
            }
            Local::Error(e) => {
                let kind = e.outcome();
                let (status, headers, body) = self.api.render_error(&e);
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
    /// A stored answer (a cache hit), for this client, from this model.
    Cached(Arc<Answer>, Client, Option<String>),
    /// An error (in the client's API's shape).
    Error(ApiError),
}

/// Where a planned request goes, besides its model.
struct Target {
    client: Client,
    /// The path before the client's endpoint.
    prefix: String,
    /// The client's headers no upstream gets.
    client_only: Vec<String>,
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

/// The API of a routed request and the path before its endpoint: a
/// POST to chat completions, messages or responses under any prefix (a
/// route like `/openai/v1/chat/completions` works too).
fn routed(p: &Pseudo) -> Option<(Api, &str)> {
    match (p.method.as_deref(), p.path.as_deref()) {
        (Some("POST"), Some(path)) => Api::of_path(path),
        _ => None,
    }
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

/// A response body chunk replaced by `bytes` (cleared when empty).
fn replace_body(bytes: Vec<u8>) -> ProcessingResponse {
    let mutation = if bytes.is_empty() {
        Mutation::ClearBody(true)
    } else {
        Mutation::Body(bytes)
    };
    reply(Reply::ResponseBody(BodyResponse {
        response: Some(CommonResponse {
            body_mutation: Some(BodyMutation {
                mutation: Some(mutation),
            }),
            ..CommonResponse::default()
        }),
    }))
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
            assert_eq!(
                routed(&pseudo),
                Some((Api::ChatCompletions, "/v1")),
                "{pseudo:?}"
            );
            assert_eq!(map["authorization"], "Bearer k");
            assert_eq!(map["x-routemesh-model"], "spoof");
            assert!(!map.contains_key(":path"));
        }
    }

    #[test]
    fn only_posted_chat_messages_and_responses_are_routed() {
        let of = |method: &str, path: &str| {
            routed(&Pseudo {
                method: Some(method.into()),
                path: Some(path.into()),
                status: None,
            })
            .map(|(api, _)| api)
        };
        assert_eq!(
            of("POST", "/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(
            of("POST", "/openai/v1/chat/completions"),
            Some(Api::ChatCompletions)
        );
        assert_eq!(of("POST", "/v1/messages"), Some(Api::Messages));
        assert_eq!(of("POST", "/v1/responses"), Some(Api::Responses));
        assert_eq!(of("GET", "/v1/chat/completions"), None);
        assert_eq!(of("POST", "/v1/completions"), None);
        assert_eq!(of("POST", "/v1/messages/count_tokens"), None);
        assert_eq!(of("POST", "/v1/models"), None);
    }
}
