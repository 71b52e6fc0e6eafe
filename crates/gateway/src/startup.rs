//! What starting the gateway shares with reloading its config: the checks
//! of the classifier and encoder files, loading the embedded classifier,
//! embedding the route examples (what routing needs besides the config),
//! the start's errors and its stdout announcements. `server` and `reload`
//! both use it; it uses neither.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use routemesh_classifier_worker::scorer;
use routemesh_classifier_worker::{
    BatchOptions, Batcher, Encoder, EncoderError, EncoderOptions, Replica,
};
use routemesh_common::Config;
use routemesh_common::config::{ConfigError, ConfigErrors};
use routemesh_runtime::nats::ConnectError;
use routemesh_signals::{ClassifierMeta, SignalComputer};

use crate::classify::Classifier;
use crate::learning::LearningError;
use crate::state::Ready;

/// Route examples embedded per classifier request at start.
const EXAMPLE_CHUNK: usize = 32;
/// Deadline of one such request (a cold CPU encoder can be slow).
const EXAMPLE_DEADLINE: Duration = Duration::from_secs(60);

/// Files the encoder folder must hold.
const MODEL_FILES: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "the encoder model is missing: {missing} not found (encoder.model_dir = {dir}); \
         run scripts/fetch-model.sh to install it"
    )]
    ModelMissing { dir: PathBuf, missing: PathBuf },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Nats(#[from] ConnectError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the encoder from {dir}: {source}")]
    Model { dir: PathBuf, source: EncoderError },
    #[error("cannot load a classifier: {0}")]
    Classifiers(String),
    #[error("cannot embed the route examples: {0}")]
    Examples(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start learning: {0}")]
    Learning(#[from] LearningError),
    #[error("cannot start the cache: {0}")]
    Cache(#[from] routemesh_cache::CacheError),
    /// The `auth:` section's keys or admin token could not be read.
    #[error("{0}")]
    Auth(ConfigErrors),
    #[error(transparent)]
    Metrics(#[from] crate::telemetry::ExporterError),
}

/// Reads each configured classifier's labels and checks every `label:`
/// condition against them; all problems at once, with their key paths.
pub fn check_classifier_labels(config: &Config) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut labels = Vec::new();
    for (i, d) in config.signals.classifiers.iter().enumerate() {
        match scorer::read_labels(&d.path) {
            Ok(l) => labels.push(Some(l)),
            Err(message) => {
                errors.push(ConfigError {
                    path: format!("signals.classifiers[{i}].path"),
                    message,
                });
                labels.push(None);
            }
        }
    }
    for r in &config.signals.label_refs {
        if let Some(Some(known)) = labels.get(r.classifier.0)
            && !known.contains(&r.label)
        {
            let name = &config.signals.classifiers[r.classifier.0].name;
            errors.push(ConfigError {
                path: format!("{}.is", r.path),
                message: format!(
                    "classifier `{name}` has no label `{}` (labels: {})",
                    r.label,
                    known.join(", ")
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Checks that the encoder folder has its files (embedded mode), before
/// anything is bound.
pub fn check_model_files(config: &Config) -> Result<(), ServeError> {
    let Some(encoder) = &config.encoder else {
        return Ok(());
    };
    let dir = &encoder.model_dir;
    match MODEL_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| !p.is_file())
    {
        Some(missing) => Err(ServeError::ModelMissing {
            dir: dir.clone(),
            missing,
        }),
        None => Ok(()),
    }
}

/// Loads the encoder and the configured classifiers into an in-process
/// batcher (on a blocking thread: it reads and maps the model files).
pub(crate) async fn load_embedded(config: &Config) -> Result<Classifier, ServeError> {
    let Some(encoder) = &config.encoder else {
        return Err(ServeError::Examples("no classifier configured".into()));
    };
    let e = encoder.clone();
    let defs = config.signals.classifiers.clone();
    let batcher = tokio::task::spawn_blocking(move || {
        let opts = EncoderOptions {
            max_tokens: e.max_tokens,
            max_total_tokens: e.max_total_tokens,
            precision: e.precision,
        };
        let model = Encoder::load(&e.model_dir, &opts).map_err(|source| ServeError::Model {
            dir: e.model_dir.clone(),
            source,
        })?;
        tracing::info!(
            precision = %model.precision_in_use(),
            "encoder loaded ({} tokens per window, {} at most per prompt)",
            e.max_tokens,
            e.max_total_tokens
        );
        let scorers = defs
            .iter()
            .map(|d| scorer::load_scorer(&d.name, &d.path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServeError::Classifiers)?;
        let opts = BatchOptions {
            max_batch: e.max_batch,
            max_wait: Duration::ZERO,
            queue: e.max_batch * 32,
        };
        let replica = Replica {
            model: Box::new(model),
            scorers,
        };
        Batcher::start_replicas(vec![replica], opts).map_err(ServeError::Io)
    })
    .await
    .map_err(|e| ServeError::Examples(format!("the loader panicked: {e}")))??;
    Ok(Classifier::Embedded(batcher))
}

/// Embeds `config`'s route examples through `classifier` and builds the
/// signal computer: what routing needs besides the classifier.
pub(crate) async fn prepare_routing(
    config: &Config,
    classifier: Arc<Classifier>,
) -> Result<Ready, ServeError> {
    let started = Instant::now();
    let texts = SignalComputer::example_texts(&config.signals);
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(EXAMPLE_CHUNK) {
        let mut attempts = 0u32;
        let embedded = loop {
            match classifier
                .embed("startup", chunk.to_vec(), &[], EXAMPLE_DEADLINE)
                .await
            {
                Ok(e) => break e,
                Err(failure) if matches!(*classifier, Classifier::Nats(_)) => {
                    if attempts.is_multiple_of(10) {
                        tracing::warn!(classifier = %classifier.describe(), reason = failure.reason(), "waiting for classifier workers to embed the route examples");
                    }
                    attempts += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(failure) => return Err(ServeError::Examples(failure.to_string())),
            }
        };
        vectors.extend(embedded.items.into_iter().map(|i| i.vector));
    }
    let signals = SignalComputer::new(&config.signals, vectors).ok_or_else(|| {
        ServeError::Examples("the classifier returned the wrong number of embeddings".into())
    })?;
    tracing::info!(
        classifier = %classifier.describe(),
        seconds = started.elapsed().as_secs_f64(),
        route_examples = texts.len(),
        "classifier ready"
    );
    let labels = config
        .signals
        .classifiers
        .iter()
        .map(|d| {
            scorer::read_labels(&d.path).map(|l| ClassifierMeta {
                name: d.name.clone(),
                labels: Arc::<[String]>::from(l),
                threshold: scorer::read_threshold(&d.path),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServeError::Classifiers)?;
    let signals = signals.with_classifiers(labels);
    let outputs = signals.classifier_names();
    Ok(Ready {
        classifier,
        signals,
        outputs,
    })
}

/// Prints one line on stdout at once (scripts and tests wait on them).
pub(crate) fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
