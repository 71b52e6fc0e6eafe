//! The stages after the plan: [`prepare`] (block, remember, cache, edits)
//! and [`forward`] (the candidate walk), and [`run`], both in a row.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use routemesh_common::PiiSpan;
use routemesh_common::config::{Candidate, HeaderEdits, ModelConfig, ModelId, Reasoning};
use routemesh_signals::pii;

use super::Refusal;
use super::headers;
use super::outcome::{Outcomes, Watch};
use super::plan::{self, Forward, RoutePlan, Target};
use super::record::{CacheTrace, Record};
use super::request::{AnswerFormat, Payload, Request};
use crate::auth::Tenant;
use crate::cache::{Consulted, Fill, ScopeNames};
use crate::state::AppState;
use crate::telemetry::UPSTREAM_FALLBACKS_TOTAL;
use crate::upstream::{BodyStream, Failure, Outgoing, Reply};

/// What to do with a request once it is planned.
#[derive(Debug)]
pub enum Prepared {
    /// Answer with this stored answer (a cache hit).
    Cached(Arc<routemesh_cache::Answer>),
    /// Send it to the chosen model.
    Forward(Box<Forwarding>),
}

/// A planned request on its way to a model.
#[derive(Debug)]
pub struct Forwarding {
    /// The body with the decision's edits applied (redaction, system
    /// prompt); each candidate's own (reasoning, model name) come with
    /// its encoding.
    payload: Box<dyn Payload>,
    /// The client's headers.
    headers: HeaderMap,
    /// Who sent it (feedback on the answer is theirs to give).
    tenant: Tenant,
    forward: Forward,
    decision: String,
    /// Where the outcome goes; `None` for passthrough.
    learn: Option<Outcomes>,
    /// Where a complete answer is stored; `None` when it is not.
    fill: Option<Box<Fill>>,
    format: &'static dyn AnswerFormat,
}

impl Forwarding {
    /// The model chosen.
    pub fn model(&self) -> ModelId {
        self.forward.model
    }

    pub fn decision(&self) -> &str {
        &self.decision
    }

    /// The decision's header edits.
    pub fn header_edits(&self) -> &HeaderEdits {
        &self.forward.headers
    }

    /// The body as the chosen model gets it.
    pub fn body(&self, state: &AppState) -> Result<Bytes, Refusal> {
        encode(
            self.payload.as_ref(),
            state.config.model(self.forward.model),
            self.forward.reasoning,
            state,
        )
    }

    /// What watches the chosen model's answer when someone else (Envoy)
    /// forwards the request.
    pub fn into_watch(self) -> Watch {
        Watch::new(self.learn, self.fill, self.format)
    }
}

/// The pipeline's answer to a forwarded request.
#[derive(Debug)]
pub enum Answer {
    /// From the cache.
    Cached(Arc<routemesh_cache::Answer>),
    /// From a model (or the last upstream error), as it arrives.
    Relayed(Relay),
}

/// An upstream's answer on its way to the client: status, the headers the
/// client gets, and the body, watched.
pub struct Relay {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Plans, prepares and forwards a request: the whole way for a front door
/// that forwards itself.
pub async fn run(state: &AppState, req: Request, record: &mut Record) -> Result<Answer, Refusal> {
    match prepare(state, req, record).await? {
        Prepared::Cached(answer) => Ok(Answer::Cached(answer)),
        Prepared::Forward(f) => forward(state, *f, record).await,
    }
}

/// Plans a request and records the plan, nothing more (the dry run, and
/// the first step of [`prepare`]).
pub async fn dry_run(
    state: &AppState,
    req: &Request,
    record: &mut Record,
) -> Result<RoutePlan, Refusal> {
    let plan = plan::plan(state, record.id(), &req.model, &req.prompt).await?;
    let model = plan
        .target
        .model()
        .map(|m| state.config.model(m).name.as_str());
    record.planned(&plan, model);
    Ok(plan)
}

/// Plans a request and, as the plan says, refuses it (a block), answers it
/// from the cache, or edits it for forwarding: everything before the
/// upstream.
pub async fn prepare(
    state: &AppState,
    req: Request,
    record: &mut Record,
) -> Result<Prepared, Refusal> {
    let plan = dry_run(state, &req, record).await?;
    let Request {
        tenant,
        headers,
        mut payload,
        prompt,
        ..
    } = req;
    let forward = match plan.target {
        Target::Block { message } => return Err(Refusal::Blocked { message }),
        Target::Model(f) => f,
    };
    let model = state.config.model(forward.model);
    // Only routed requests teach the learner: a passthrough names its model.
    let learn = plan.routed.is_some().then(|| Outcomes {
        learning: state.learning.clone(),
        decision: plan.decision.clone(),
        model: model.name.clone(),
        slo: forward.slo,
        started: record.started(),
    });
    if let Some(o) = &learn {
        // A cached answer came from this same model (the model is part of
        // the cache scope), so feedback on it teaches the right arm.
        state
            .learning
            .remember(record.id(), &tenant, &o.decision, &o.model);
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
            tenant: &tenant,
            decision: &plan.decision,
            model: &model.name,
        };
        let keys = || payload.cache_keys();
        match layer.plan(keys, names, &headers, policy, embedding) {
            None => record.set_cache(CacheTrace::Off),
            Some(cp) => match layer.consult(cp, timeout, record.stages_mut()).await {
                Consulted::Hit(h) => {
                    record.set_cache(CacheTrace::hit(&h));
                    return Ok(Prepared::Cached(h.answer));
                }
                Consulted::Miss { fill: f, bypassed } => {
                    record.set_cache(if bypassed {
                        CacheTrace::Bypass
                    } else {
                        CacheTrace::Miss
                    });
                    fill = f;
                }
            },
        }
    }

    // what a PII tagger found in the prompt (the detectors run again on
    // every text as it is redacted)
    let tagged: Vec<PiiSpan> = plan
        .routed
        .as_ref()
        .map(|r| {
            r.signals
                .pii
                .iter()
                .filter(|s| !s.kind.is_structured())
                .copied()
                .collect()
        })
        .unwrap_or_default();
    let found = Found {
        prompt: &prompt,
        tagged: &tagged,
    };
    record.set_redacted(edit(state, &forward, found, payload.as_mut()));
    let format = payload.answers();
    Ok(Prepared::Forward(Box::new(Forwarding {
        payload,
        headers,
        tenant,
        forward,
        decision: plan.decision,
        learn,
        fill,
        format,
    })))
}

/// Sends a prepared request to its model and, when every endpoint of that
/// model fails, to the decision's next candidates in order (each with its
/// own reasoning and upstream name; a failed one gets a reward of 0). The
/// answer is relayed as it arrives; when nothing answers, the last
/// upstream error status and body if the last attempt got one, else the
/// last failure.
pub async fn forward(
    state: &AppState,
    f: Forwarding,
    record: &mut Record,
) -> Result<Answer, Refusal> {
    let Forwarding {
        payload,
        headers,
        tenant,
        forward,
        decision,
        learn,
        mut fill,
        format,
    } = f;
    let headers = headers::forwarded(&headers, &forward.headers);
    let chosen = Candidate {
        reasoning: forward.reasoning,
        ..Candidate::new(forward.model)
    };
    let started = Instant::now();
    let mut last = None;
    let mut asked = None;
    let mut answered = None;
    for (n, c) in std::iter::once(chosen)
        .chain(forward.fallbacks.iter().copied())
        .enumerate()
    {
        let m = state.config.model(c.model);
        if n > 0 {
            metrics::counter!(UPSTREAM_FALLBACKS_TOTAL, "decision" => decision.clone())
                .increment(1);
            tracing::info!(
                request_id = %record.id(),
                decision = %decision,
                model = %m.name,
                "falling back to the next candidate model"
            );
        }
        let out = Outgoing {
            body: encode(payload.as_ref(), m, c.reasoning, state)?,
            headers: headers.clone(),
            path: crate::upstream::ApiPath::ChatCompletions,
        };
        // Each candidate has its upstream's whole `total` timeout: one that
        // used all of its own leaves the next one time to answer.
        let tried = tokio::time::Instant::now();
        let more = n < forward.fallbacks.len();
        match state.upstreams.forward(m.upstream, &out, tried).await {
            // Any other 5xx is the model's failure too: with a candidate
            // left, it gets the request (the answer is relayed only when
            // every candidate failed).
            Ok(answer) if more && answer.status.is_server_error() => {
                asked = Some(c.model);
                if let Some(o) = &learn {
                    o.for_model(&m.name).failed("upstream_error");
                }
                last = Some(Failure::Status {
                    status: answer.status,
                    headers: answer.headers,
                    body: Bytes::from(
                        crate::upstream::collect(answer.body, 64 << 10)
                            .await
                            .unwrap_or_default(),
                    ),
                });
            }
            Ok(answer) => {
                answered = Some((c.model, answer));
                break;
            }
            // Ejected by its breakers: not asked, so not blamed.
            Err(failure @ Failure::NotAsked(_)) => last = Some(failure),
            Err(failure) => {
                asked = Some(c.model);
                if let Some(o) = &learn {
                    o.for_model(&m.name).failed("upstream_error");
                }
                last = Some(failure);
            }
        }
    }
    record.stage("upstream", started.elapsed());
    // The model that answered, else the last one asked (else the choice).
    let named = answered.as_ref().map(|(m, _)| *m).or(asked);
    record.set_model(&state.config.model(named.unwrap_or(forward.model)).name);
    let Some((answered_by, reply)) = answered else {
        return match last {
            Some(Failure::Status {
                status,
                headers,
                body,
            }) => Ok(Answer::Relayed(Relay {
                status,
                headers: headers::relayed(headers),
                body: Box::pin(futures_util::stream::iter([Ok(body)])),
            })),
            Some(Failure::Error(e) | Failure::NotAsked(e)) => Err(e.into()),
            None => Err(Refusal::NoCandidate),
        };
    };
    let mut learn = learn;
    if answered_by != forward.model {
        // The answer is another model's: the cache scope named the first.
        fill = None;
        let name = &state.config.model(answered_by).name;
        learn = learn.map(|o| o.for_model(name));
        if let Some(o) = &learn {
            state
                .learning
                .remember(record.id(), &tenant, &o.decision, &o.model);
        }
    }
    let mut watch = Watch::new(learn, fill, format);
    watch.answered(reply.status, &reply.headers);
    Ok(Answer::Relayed(relay(reply, watch)))
}

/// The upstream's answer as the client gets it, watched as it passes.
fn relay(reply: Reply, watch: Watch) -> Relay {
    let body = if watch.is_idle() {
        reply.body
    } else {
        Box::pin(watch.observe(reply.body))
    };
    Relay {
        status: reply.status,
        headers: headers::relayed(reply.headers),
        body,
    }
}

/// The personal data a PII tagger found in the classified prompt.
#[derive(Debug, Clone, Copy)]
struct Found<'a> {
    prompt: &'a str,
    /// Byte spans in `prompt`.
    tagged: &'a [PiiSpan],
}

/// Applies the decision's edits that hold for every candidate: personal
/// data redacted, the system prompt set. Returns how many pieces of
/// personal data were replaced. The detectors run on every text; a PII
/// tagger's spans (from the classifier, which read the prompt) apply to
/// the texts that are the prompt.
fn edit(state: &AppState, forward: &Forward, found: Found<'_>, payload: &mut dyn Payload) -> usize {
    let mut redacted = 0;
    if !forward.redact_pii.is_empty() {
        let kinds = &forward.redact_pii;
        redacted = payload.redact(&mut |text| {
            let detected = state.pii.detect(text);
            let tagged = if text == found.prompt && !found.tagged.is_empty() {
                found.tagged.to_vec()
            } else {
                Vec::new()
            };
            let spans: Vec<_> = pii::merge(text, detected, tagged)
                .into_iter()
                .filter(|s| kinds.contains(&s.kind))
                .collect();
            (!spans.is_empty()).then(|| (pii::redact(text, &spans), spans.len()))
        });
    }
    if let Some(sp) = &forward.system_prompt {
        payload.set_system_prompt(sp);
    }
    redacted
}

/// The body for candidate `model`: its reasoning in its upstream's
/// dialect, its upstream name asked for.
fn encode(
    payload: &dyn Payload,
    model: &ModelConfig,
    reasoning: Option<Reasoning>,
    state: &AppState,
) -> Result<Bytes, Refusal> {
    let family = state.config.upstream(model.upstream).family;
    Ok(payload.encode(&model.upstream_model, reasoning, family)?)
}
