//! Planning a request: passthrough or classify → decide → [`RoutePlan`].
//!
//! No HTTP here: handlers hand in the requested model and the prompt text and
//! get back which model to use, why, and what it cost.

use std::time::{Duration, Instant};

use routemesh_classifier_worker::{Classified, ClassifyError};
use routemesh_common::config::ModelId;

use crate::state::AppState;

/// The decision name reported for a request that named a concrete model.
pub const PASSTHROUGH: &str = "passthrough";

/// Where a request goes and why.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// The decision taken (`passthrough` when the client named a model).
    pub decision: String,
    pub model: ModelId,
    /// How the request was routed; `None` for passthrough.
    pub routed: Option<Routed>,
}

/// What routing found and what it cost.
#[derive(Debug, Clone)]
pub struct Routed {
    pub classified: Classified,
    /// Whether a rule matched (false: the default decision was taken).
    pub matched: bool,
    /// Time from sending the prompt to the classifier to having signals.
    pub classify: Duration,
    /// Time spent in the rule engine.
    pub decide: Duration,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error("the encoder is still loading")]
    NotReady,
    #[error(transparent)]
    Classify(#[from] ClassifyError),
}

/// Plans a request for `model` with routing text `prompt`.
pub async fn plan(state: &AppState, model: &str, prompt: String) -> Result<RoutePlan, PlanError> {
    let config = &state.config;
    if let Some(id) = config.model_id(model) {
        return Ok(RoutePlan {
            decision: PASSTHROUGH.to_owned(),
            model: id,
            routed: None,
        });
    }
    if !config.is_alias(model) {
        return Err(PlanError::UnknownModel(model.to_owned()));
    }
    let classifier = state.classifier().ok_or(PlanError::NotReady)?;
    let started = Instant::now();
    let classified = classifier.classify(prompt).await?;
    let classify = started.elapsed();

    let started = Instant::now();
    let decided = routemesh_decision::decide(config, &classified.signals);
    let decide = started.elapsed();
    Ok(RoutePlan {
        decision: decided.name.to_owned(),
        model: decided.model,
        routed: Some(Routed {
            classified,
            matched: decided.matched,
            classify,
            decide,
        }),
    })
}
