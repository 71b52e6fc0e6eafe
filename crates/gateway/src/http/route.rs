//! `POST /v1/route`: the dry run. Plans a chat request exactly as
//! `/v1/chat/completions` would (a Messages body with `?api=messages`, a
//! Responses body with `?api=responses`, as their endpoints would) and
//! returns the signals, the decision, the
//! chosen model and per-stage timings; nothing is forwarded.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::meta::RequestId;
use super::read_body;
use crate::api::openai::{self, ApiError};
use crate::auth::Tenant;
use crate::pipeline::{self, Record, RoutePlan, Target};
use crate::state::AppState;
use routemesh_common::signals::{ClassifierResult, Output};

#[derive(Debug, Serialize)]
struct DryRun<'a> {
    request_id: &'a str,
    requested_model: &'a str,
    routed: bool,
    decision: DecisionView<'a>,
    /// `None` when the decision blocks the request.
    model: Option<ModelView<'a>>,
    action: ActionView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signals: Option<SignalsView<'a>>,
    timings_ms: BTreeMap<&'static str, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classifier: Option<ClassifierView<'a>>,
}

#[derive(Debug, Serialize)]
struct ClassifierView<'a> {
    /// `embedded` or `nats:<pool>`.
    transport: String,
    /// The NATS worker that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<usize>,
    /// Why the embedding signals are missing (`timeout`, `no_responders`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct DecisionView<'a> {
    name: &'a str,
    /// False when no rule matched and the default was taken.
    matched: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ActionView<'a> {
    /// Forwarded, with these kinds of personal data replaced first, to the
    /// candidate chosen among `candidates`.
    Route {
        redact_pii: Vec<&'static str>,
        reasoning: Option<&'static str>,
        candidates: usize,
    },
    /// Refused with this message.
    Block { message: &'a str },
}

#[derive(Debug, Serialize)]
struct ModelView<'a> {
    name: &'a str,
    upstream: &'a str,
    upstream_model: &'a str,
}

#[derive(Debug, Serialize)]
struct SignalsView<'a> {
    routes: BTreeMap<&'a str, f32>,
    keywords: BTreeMap<&'a str, bool>,
    prompt_tokens: Option<u32>,
    /// Longer than `encoder.max_total_tokens` (the worker's
    /// `--max-total-tokens`): only the first tokens were read.
    truncated: bool,
    /// Windows of at most `encoder.max_tokens` the prompt was read in
    /// (0 when the classifier did not answer).
    windows: u32,
    /// Personal data found: kind and byte offsets (the values themselves are
    /// not echoed).
    pii: Vec<PiiView>,
    /// ISO 639-3 code and confidence, when detected reliably.
    language: Option<&'a routemesh_common::signals::Language>,
    /// Each configured classifier's output by name (`null` when it did not run).
    classifiers: BTreeMap<&'a str, Option<OutputView<'a>>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum OutputView<'a> {
    /// Probability per label, and the top label.
    Scores {
        top: Option<&'a str>,
        probs: BTreeMap<&'a str, f32>,
    },
    /// Labelled spans (kind, offsets, score).
    Spans {
        spans: &'a [routemesh_common::signals::Span],
    },
}

#[derive(Debug, Serialize)]
struct PiiView {
    #[serde(rename = "type")]
    kind: &'static str,
    start: usize,
    end: usize,
}

/// `?api=`: which API's body the dry run reads.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Api {
    /// Chat completions (the default).
    #[default]
    Chat,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Responses.
    Responses,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DryRunQuery {
    #[serde(default)]
    api: Api,
}

pub(super) async fn dry_run(
    State(state): State<AppState>,
    Extension(id): Extension<RequestId>,
    Extension(tenant): Extension<Tenant>,
    query: Result<axum::extract::Query<DryRunQuery>, axum::extract::rejection::QueryRejection>,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = Record::dry_run(id.0);
    let api = match query {
        Ok(q) => q.0.api,
        Err(_) => {
            return ApiError::bad_request(
                "api: chat (the default), messages or responses",
                Some("api".into()),
            )
            .into_response();
        }
    };
    let mut resp = handle(&state, tenant, api, headers, body, &mut record)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().extend(record.headers());
    resp
}

async fn handle(
    state: &AppState,
    tenant: Tenant,
    api: Api,
    headers: http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut Record,
) -> Result<Response, ApiError> {
    let body = read_body(state, body)?;
    let chat = match api {
        Api::Chat => openai::parse_chat(&body)?,
        Api::Messages => crate::api::anthropic::parse_messages(&body)?.chat,
        Api::Responses => openai::responses::parse_responses(&body)?.chat,
    };
    let req = chat.into_request(tenant, headers);
    let plan = pipeline::dry_run(state, &req, record).await?;
    let config = &state.config;
    let model = plan.target.model().map(|m| config.model(m));
    let action = match &plan.target {
        Target::Model(f) => ActionView::Route {
            redact_pii: f.redact_pii.iter().map(|k| k.name()).collect(),
            reasoning: f.reasoning.map(|r| r.name()),
            candidates: f.candidates,
        },
        Target::Block { message } => ActionView::Block { message },
    };

    let RoutePlan {
        decision, routed, ..
    } = &plan;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut timings = BTreeMap::new();
    let signals = routed.as_ref().map(|r| {
        if let Some(e) = &r.embedding {
            timings.insert("queue", ms(e.timings.queue));
            timings.insert("tokenize", ms(e.timings.tokenize));
            timings.insert("forward", ms(e.timings.forward));
        }
        timings.insert("classify", ms(r.classify));
        timings.insert("decide", ms(r.decide));
        let s = &r.signals;
        SignalsView {
            routes: config
                .signals
                .routes
                .iter()
                .map(|r| r.name.as_str())
                .zip(s.route_scores.iter().copied())
                .collect(),
            keywords: config
                .signals
                .keywords
                .iter()
                .map(|k| k.name.as_str())
                .zip(s.keywords.iter().copied())
                .collect(),
            prompt_tokens: s.prompt_tokens,
            truncated: s.truncated,
            windows: s.windows,
            pii: s
                .pii
                .iter()
                .map(|p| PiiView {
                    kind: p.kind.name(),
                    start: p.start,
                    end: p.end,
                })
                .collect(),
            language: s.language.as_ref(),
            classifiers: config
                .signals
                .classifiers
                .iter()
                .zip(&s.classifiers)
                .map(|(def, result)| (def.name.as_str(), result.as_ref().map(classifier_view)))
                .collect(),
        }
    });
    timings.insert("total", ms(record.started().elapsed()));
    let view = DryRun {
        request_id: record.id(),
        requested_model: &req.model,
        routed: routed.is_some(),
        decision: DecisionView {
            name: decision,
            matched: routed.as_ref().is_some_and(|r| r.matched),
        },
        model: model.map(|m| ModelView {
            name: &m.name,
            upstream: &config.upstream(m.upstream).name,
            upstream_model: &m.upstream_model,
        }),
        action,
        signals,
        timings_ms: timings,
        classifier: routed.as_ref().map(|r| ClassifierView {
            transport: state
                .ready()
                .map(|x| x.classifier.describe())
                .unwrap_or_default(),
            worker: r.embedding.as_ref().and_then(|e| e.worker.as_deref()),
            batch_size: r.embedding.as_ref().map(|e| e.batch_size),
            degraded: r.degraded.as_ref().map(|f| f.reason()),
        }),
    };
    Ok(Json(view).into_response())
}

fn classifier_view(r: &ClassifierResult) -> OutputView<'_> {
    match &r.output {
        Output::Scores { probs } => OutputView::Scores {
            top: r.top(),
            probs: r
                .labels
                .iter()
                .map(String::as_str)
                .zip(probs.iter().copied())
                .collect(),
        },
        Output::Spans { spans } => OutputView::Spans { spans },
    }
}
