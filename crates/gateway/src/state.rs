//! Shared state of the HTTP handlers.

use std::sync::{Arc, OnceLock};

use routemesh_classifier_worker::SignalComputer;
use routemesh_classifier_worker::pii::PiiDetector;
use routemesh_common::Config;

use crate::cache::CacheLayer;
use crate::classify::Classifier;
use crate::learning::Learning;
use crate::upstream::UpstreamPool;

/// What routing needs once it can run: a classifier and the route examples'
/// embeddings (made through that classifier at start).
#[derive(Debug)]
pub struct Ready {
    pub classifier: Classifier,
    pub signals: SignalComputer,
    /// The configured classifiers' names: the outputs every routed prompt asks for.
    pub outputs: Vec<String>,
}

/// What every handler can reach; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Set once routing can run; until then routed requests get 503.
    pub ready: Arc<OnceLock<Ready>>,
    pub upstreams: Arc<UpstreamPool>,
    /// The personal-data detectors, for redaction.
    pub pii: Arc<PiiDetector>,
    /// Thompson-sampling state, outcomes and feedback.
    pub learning: Arc<Learning>,
    /// The semantic cache; `None` when `cache.enabled` is false.
    pub cache: Option<Arc<CacheLayer>>,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        upstreams: UpstreamPool,
        learning: Arc<Learning>,
        cache: Option<Arc<CacheLayer>>,
    ) -> Self {
        Self {
            config,
            ready: Arc::new(OnceLock::new()),
            upstreams: Arc::new(upstreams),
            pii: Arc::new(PiiDetector::new()),
            learning,
            cache,
        }
    }

    /// The routing machinery, once ready.
    pub fn ready(&self) -> Option<&Ready> {
        self.ready.get()
    }
}
