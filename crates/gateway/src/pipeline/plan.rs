//! Planning a request: passthrough or classify → signals → decide →
//! [`RoutePlan`].
//!
//! The requested model and the prompt text go in; out comes which model to
//! use, why, and what it cost. A classifier that cannot answer in time is
//! data ([`Routed::degraded`]) unless the config says to refuse.

use std::time::{Duration, Instant};

use routemesh_classifier_worker::EmbedTimings;
use routemesh_common::config::{
    CachePolicy, Candidate, HeaderEdits, ModelId, OnUnavailable, Reasoning, SystemPrompt,
};
use routemesh_common::{PiiKind, Signals};
use routemesh_decision::Action;
use routemesh_signals::PromptEmbedding;

use super::Refusal;
use crate::classify::ClassifyFailure;
use crate::state::AppState;
use crate::telemetry::DEGRADATIONS_TOTAL;

/// The decision name reported for a request that named a concrete model.
pub const PASSTHROUGH: &str = "passthrough";

/// Where a request goes and why.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The decision taken (`passthrough` when the client named a model).
    pub decision: String,
    pub target: Target,
    /// How the request was routed; `None` for passthrough.
    pub routed: Option<Routed>,
}

/// What happens to the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Forward to a model, changed on the way as the decision says.
    Model(Forward),
    /// Refuse with this message.
    Block { message: String },
}

impl Target {
    /// The model, unless the request is blocked.
    pub fn model(&self) -> Option<ModelId> {
        match self {
            Self::Model(f) => Some(f.model),
            Self::Block { .. } => None,
        }
    }
}

/// How a request is forwarded.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub model: ModelId,
    /// Kinds of personal data replaced by placeholders first.
    pub redact_pii: Vec<PiiKind>,
    /// Reasoning asked of the model (its upstream's dialect is applied later).
    pub reasoning: Option<Reasoning>,
    pub system_prompt: Option<SystemPrompt>,
    pub headers: HeaderEdits,
    /// Slower answers are reported as failed outcomes.
    pub slo: Option<Duration>,
    /// How many candidates the decision had (1: nothing was chosen).
    pub candidates: usize,
    /// The decision's other candidates, tried in this order when every
    /// endpoint of `model` fails: by the same Thompson draw that chose
    /// `model` (config order with static selection; empty for passthrough).
    pub fallbacks: Vec<Candidate>,
    /// The decision's cache policy; `None` for passthrough (the cache
    /// section's `passthrough` applies).
    pub cache: Option<CachePolicy>,
}

impl Forward {
    /// Straight to `model`, unchanged.
    pub fn plain(model: ModelId) -> Self {
        Self {
            model,
            redact_pii: Vec::new(),
            reasoning: None,
            system_prompt: None,
            headers: HeaderEdits::default(),
            slo: None,
            candidates: 1,
            fallbacks: Vec::new(),
            cache: None,
        }
    }
}

/// Prompt tokens as the cost model counts them: ceil(bytes / 4), the usual
/// rule of thumb for English text with BPE tokenizers (the encoder's own
/// count stops at its truncation limit).
fn estimated_prompt_tokens(prompt: &str) -> u32 {
    u32::try_from(prompt.len().div_ceil(4)).unwrap_or(u32::MAX)
}

/// What routing found and what it cost.
#[derive(Debug, Clone)]
pub struct Routed {
    pub signals: Signals,
    /// How the prompt was embedded; `None` when degraded.
    pub embedding: Option<EmbeddingInfo>,
    /// Why the embedding signals are missing, when they are.
    pub degraded: Option<ClassifyFailure>,
    /// Whether a rule matched (false: the default decision was taken).
    pub matched: bool,
    /// Time from asking the classifier to having signals.
    pub classify: Duration,
    /// Time spent in the rule engine.
    pub decide: Duration,
}

/// Where the prompt's embedding came from.
#[derive(Debug, Clone)]
pub struct EmbeddingInfo {
    pub timings: EmbedTimings,
    pub batch_size: usize,
    /// The NATS worker that answered; `None` in embedded mode.
    pub worker: Option<String>,
    /// The prompt's unit-length embedding (the semantic cache's key).
    pub vector: Vec<f32>,
}

/// Plans a request for `model` with routing text `prompt`: refuses a
/// prompt over `server.max_prompt_chars` first.
pub(super) async fn plan(
    state: &AppState,
    request_id: &str,
    model: &str,
    prompt: &str,
) -> Result<RoutePlan, Refusal> {
    let config = &state.config;
    check_prompt_length(prompt, config.server.max_prompt_chars)?;
    if let Some(id) = config.model_id(model) {
        let target = Target::Model(Forward::plain(id));
        return Ok(RoutePlan {
            decision: PASSTHROUGH.to_owned(),
            target,
            routed: None,
        });
    }
    if !config.is_alias(model) {
        return Err(Refusal::UnknownModel(model.to_owned()));
    }
    let ready = state.ready().ok_or(Refusal::NotReady)?;
    let started = Instant::now();
    let deadline = config.classifier.deadline;
    let (signals, embedding, degraded) = match ready
        .classifier
        .embed(
            request_id,
            vec![prompt.to_owned()],
            &ready.outputs,
            deadline,
        )
        .await
    {
        Ok(e) => match e.items.first() {
            Some(item) => {
                let prompt_embedding = PromptEmbedding {
                    vector: &item.vector,
                    tokens: item.tokens,
                    truncated: item.truncated,
                    windows: item.windows,
                    outputs: &item.outputs,
                };
                let signals = ready.signals.compute(prompt, Some(prompt_embedding));
                // A secondary pool that failed leaves only its classifiers
                // missing: the request is routed, reported as degraded.
                for (pool, failure) in &e.partial {
                    metrics::counter!(DEGRADATIONS_TOTAL, "stage" => "classify", "reason" => failure.reason())
                        .increment(1);
                    tracing::warn!(%pool, reason = failure.reason(), "a classifier pool did not answer");
                }
                let partial = e.partial.into_iter().next().map(|(_, f)| f);
                let info = EmbeddingInfo {
                    timings: e.timings,
                    batch_size: e.batch_size,
                    worker: e.worker,
                    vector: item.vector.clone(),
                };
                (signals, Some(info), partial)
            }
            None => degrade(
                state,
                prompt,
                ClassifyFailure::Transport("empty reply".into()),
            )?,
        },
        Err(failure) => degrade(state, prompt, failure)?,
    };
    let classify = started.elapsed();

    let started = Instant::now();
    let decided = routemesh_decision::decide(config, &signals);
    let decide = started.elapsed();
    Ok(RoutePlan {
        decision: decided.name.to_owned(),
        target: match decided.action {
            Action::Route(action) => {
                // Best first: the pick, then the order to fall back in.
                let order = state.learning.learner.rank(
                    decided.name,
                    action,
                    estimated_prompt_tokens(prompt),
                    &mut rand::rng(),
                );
                let i = order.first().copied().unwrap_or(0);
                let chosen = &action.candidates[i];
                Target::Model(Forward {
                    model: chosen.model,
                    redact_pii: action.redact_pii.clone(),
                    reasoning: chosen.reasoning,
                    system_prompt: action.system_prompt.clone(),
                    headers: action.headers.clone(),
                    slo: action.slo,
                    candidates: action.candidates.len(),
                    fallbacks: order
                        .iter()
                        .skip(1)
                        .filter_map(|&j| action.candidates.get(j).copied())
                        .collect(),
                    cache: Some(action.cache),
                })
            }
            Action::Block { message } => Target::Block {
                message: message.to_owned(),
            },
        },
        routed: Some(Routed {
            signals,
            embedding,
            degraded,
            matched: decided.matched,
            classify,
            decide,
        }),
    })
}

type Degraded = (Signals, Option<EmbeddingInfo>, Option<ClassifyFailure>);

/// Signals without an embedding, or the refusal the config asks for.
fn degrade(state: &AppState, prompt: &str, failure: ClassifyFailure) -> Result<Degraded, Refusal> {
    let pool = state
        .ready()
        .map(|r| r.classifier.describe())
        .unwrap_or_default();
    metrics::counter!(DEGRADATIONS_TOTAL, "stage" => "classify", "reason" => failure.reason())
        .increment(1);
    tracing::warn!(classifier = %pool, reason = failure.reason(), error = %failure, "classifier unavailable");
    match state.config.classifier.on_unavailable {
        OnUnavailable::Reject => Err(Refusal::Classify(failure)),
        OnUnavailable::Degrade => {
            let signals = state
                .ready()
                .map(|r| r.signals.compute(prompt, None))
                .unwrap_or_default();
            Ok((signals, None, Some(failure)))
        }
    }
}

/// Refuses a prompt longer than `limit` characters
/// (`server.max_prompt_chars`), as a model refuses a prompt too long for it.
fn check_prompt_length(prompt: &str, limit: Option<usize>) -> Result<(), Refusal> {
    let Some(limit) = limit else {
        return Ok(());
    };
    // A character is at least one byte: short texts need no counting.
    if prompt.len() <= limit {
        return Ok(());
    }
    let chars = prompt.chars().count();
    if chars <= limit {
        return Ok(());
    }
    Err(Refusal::PromptTooLong { chars, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_over_the_limit_are_refused_by_characters_not_bytes() {
        assert!(
            check_prompt_length("héllo", Some(5)).is_ok(),
            "5 characters, 6 bytes"
        );
        assert!(check_prompt_length("hello", None).is_ok());
        match check_prompt_length("héllo!", Some(5)) {
            Err(Refusal::PromptTooLong { chars: 6, limit: 5 }) => {}
            other => panic!("expected PromptTooLong, got {other:?}"),
        }
    }
}
