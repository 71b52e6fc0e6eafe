//! Shared state of the HTTP handlers.

use std::sync::{Arc, OnceLock};

use routemesh_classifier_worker::EmbeddedClassifier;
use routemesh_common::Config;

use crate::upstream::UpstreamPool;

/// What every handler can reach; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Set once the encoder has loaded; until then routed requests get 503.
    pub classifier: Arc<OnceLock<EmbeddedClassifier>>,
    pub upstreams: Arc<UpstreamPool>,
}

impl AppState {
    pub fn new(config: Arc<Config>, upstreams: UpstreamPool) -> Self {
        Self {
            config,
            classifier: Arc::new(OnceLock::new()),
            upstreams: Arc::new(upstreams),
        }
    }

    /// The classifier, once the model has loaded.
    pub fn classifier(&self) -> Option<&EmbeddedClassifier> {
        self.classifier.get()
    }
}
