//! The gateway's shared state, as every front door and the pipeline see it.
//!
//! [`Gateway`] lives as long as the process; what a config reload replaces
//! (config, upstreams, the routing machinery built from them) sits in one
//! [`Live`] value behind a lock. Each request takes an [`AppState`]
//! snapshot when it starts (the HTTP front door through axum's `FromRef`), so
//! it runs start to end on one version of the config while a reload swaps
//! in the next.

use std::sync::{Arc, RwLock};

use routemesh_common::Config;
use routemesh_signals::SignalComputer;
use routemesh_signals::pii::PiiDetector;

use crate::cache::CacheLayer;
use crate::classify::Classifier;
use crate::learning::Learning;
use crate::upstream::UpstreamPool;

/// What routing needs once it can run: a classifier and the route examples'
/// embeddings (made through that classifier).
#[derive(Debug)]
pub struct Ready {
    pub classifier: Arc<Classifier>,
    pub signals: SignalComputer,
    /// The configured classifiers' names: the outputs every routed prompt asks for.
    pub outputs: Vec<String>,
}

/// One version of everything built from the config.
#[derive(Debug, Clone)]
pub struct Live {
    pub config: Arc<Config>,
    pub upstreams: Arc<UpstreamPool>,
    /// Set once routing can run; until then routed requests get 503.
    pub ready: Option<Arc<Ready>>,
}

/// The process-wide state: the live config and what outlives reloads.
#[derive(Debug)]
pub struct Gateway {
    live: RwLock<Arc<Live>>,
    /// The personal-data detectors, for redaction.
    pub pii: Arc<PiiDetector>,
    /// Thompson-sampling state, outcomes and feedback.
    pub learning: Arc<Learning>,
    /// The semantic cache; `None` when `cache.enabled` is false.
    pub cache: Option<Arc<CacheLayer>>,
}

impl Gateway {
    pub fn new(
        config: Arc<Config>,
        upstreams: UpstreamPool,
        learning: Arc<Learning>,
        cache: Option<Arc<CacheLayer>>,
    ) -> Self {
        let live = Live {
            config,
            upstreams: Arc::new(upstreams),
            ready: None,
        };
        Self {
            live: RwLock::new(Arc::new(live)),
            pii: Arc::new(PiiDetector::new()),
            learning,
            cache,
        }
    }

    /// The current version.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `live` the version new requests see; requests in flight keep
    /// the one they started with.
    pub fn replace(&self, live: Live) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    /// One request's view of the state.
    pub fn snapshot(&self) -> AppState {
        let live = self.live();
        AppState {
            config: live.config.clone(),
            upstreams: live.upstreams.clone(),
            ready: live.ready.clone(),
            pii: self.pii.clone(),
            learning: self.learning.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// What a handler sees: the config version current when it started.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub upstreams: Arc<UpstreamPool>,
    ready: Option<Arc<Ready>>,
    pub pii: Arc<PiiDetector>,
    pub learning: Arc<Learning>,
    pub cache: Option<Arc<CacheLayer>>,
}

impl AppState {
    /// The routing machinery, once ready.
    pub fn ready(&self) -> Option<&Ready> {
        self.ready.as_deref()
    }
}
