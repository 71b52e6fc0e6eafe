//! Running the gateway: check the model files, bind, load the encoder in the
//! background (readiness), serve until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt as _;
use routemesh_classifier_worker::nats::{self, ConnectError};
use routemesh_classifier_worker::{
    BatchOptions, Batcher, ClassifierMeta, Encoder, EncoderError, Replica, SignalComputer,
};
use routemesh_classifier_worker::{scorer, service};
use routemesh_common::Config;
use routemesh_common::config::{ConfigError, ConfigErrors, Transport};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cache::CacheLayer;
use crate::classify::{Classifier, NatsPool};
use crate::learning::{Learning, LearningError};
use crate::state::{Gateway, Ready};
use crate::upstream::UpstreamPool;

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

/// Checks that the encoder folder has its files (embedded mode), before
/// anything is bound.
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

/// Serves until a shutdown signal (then `Ok`) or a fatal error.
///
/// Prints `routemesh metrics on http://ADDR/metrics` when there is a
/// metrics listener, `routemesh listening on http://ADDR` once bound and
/// `routemesh ready` once routing can run, each on its own stdout line, for
/// scripts and tests to wait on.
pub async fn serve(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    check_model_files(&config)?;
    // The API keys and the admin token (environment, keys file), hashed.
    let auth = crate::auth::load(&config).map_err(ServeError::Auth)?;
    let learning = Learning::start(&config).await?;
    let cache = CacheLayer::start(&config).await?;
    let config = Arc::new(config);
    let gateway = Arc::new(Gateway::new(
        config.clone(),
        UpstreamPool::new(&config)?,
        learning,
        cache.clone(),
    ));
    if let Some(metrics) = config.metrics {
        let local = crate::telemetry::install(metrics.listen, &gateway).await?;
        announce(&format!("routemesh metrics on http://{local}/metrics"));
    }
    let pool = match &config.classifier.transport {
        Transport::Embedded => None,
        Transport::Nats { pool, nats } => {
            let client = nats::connect(nats, "routemesh-gateway").await?;
            let elsewhere = config
                .signals
                .classifiers
                .iter()
                .filter_map(|d| d.pool.clone().map(|p| (d.name.clone(), p)))
                .collect();
            Some(NatsPool::new(client, pool).with_placement(elsewhere))
        }
    };
    // Envoy's external-processor API, when configured: bound before the
    // HTTP API so both addresses are printed before `listening`.
    let ext_proc = match config.ext_proc {
        Some(e) => {
            let listener =
                TcpListener::bind(e.listen)
                    .await
                    .map_err(|source| ServeError::Bind {
                        addr: e.listen,
                        source,
                    })?;
            announce(&format!(
                "routemesh ext_proc on grpc://{}",
                listener.local_addr()?
            ));
            Some(listener)
        }
        None => None,
    };
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    // Streamed chunks go out as they come: no Nagle delay on small writes.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    announce(&format!("routemesh listening on http://{local}"));
    tracing::info!(%local, "listening; preparing the classifier");

    let (failed_tx, failed_rx) = oneshot::channel();
    let starting = gateway.clone();
    tokio::spawn(async move {
        match prepare(&config, pool).await {
            Ok(ready) => {
                let mut live = (*starting.live()).clone();
                live.ready = Some(Arc::new(ready));
                starting.replace(live);
                announce("routemesh ready");
            }
            Err(e) => {
                let _ = failed_tx.send(e);
            }
        }
    });

    if let Some(source) = options.reload {
        tokio::spawn(crate::reload::run(gateway.clone(), source));
    }
    // When the gateway began to stop: the ext_proc server stops with the
    // HTTP one, and its streams share the same drain deadline.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let stopped_at = stopping_rx.clone();
    let ext_proc = ext_proc.map(|listener| {
        let (gateway, auth) = (gateway.clone(), auth.clone());
        let mut stopping_rx = stopping_rx;
        let stopped = async move {
            let _ = stopping_rx.wait_for(Option::is_some).await;
        };
        tokio::spawn(async move {
            if let Err(e) = crate::ext_proc::serve(listener, gateway, auth, stopped).await {
                tracing::error!(error = %e, "the ext_proc server failed");
            }
        })
    });
    let app = crate::http::router(gateway, auth);
    let (stop_tx, stop_rx) = oneshot::channel::<ServeError>();
    let (draining_tx, draining_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            () = service::shutdown_signal() => {
                tracing::info!(drain_timeout = ?options.drain_timeout, "shutting down: no new connections; finishing requests in flight");
                let _ = draining_tx.send(());
            }
            Ok(err) = failed_rx => { let _ = stop_tx.send(err); }
        }
        let _ = stopping_tx.send(Some(tokio::time::Instant::now()));
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    // Requests in flight get `drain_timeout` after the signal, then are cut.
    let drain_limit = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(options.drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server.into_future() => served?,
        () = drain_limit => {
            tracing::warn!(drain_timeout = ?options.drain_timeout, "requests still in flight at the drain timeout were cut off");
        }
    }
    if let Some(task) = ext_proc {
        // Its streams in flight get what is left of the same drain deadline.
        let began = (*stopped_at.borrow()).unwrap_or_else(tokio::time::Instant::now);
        if tokio::time::timeout_at(began + options.drain_timeout, task)
            .await
            .is_err()
        {
            tracing::warn!("ext_proc streams still open at the drain timeout were cut off");
        }
    }
    if let Some(cache) = cache {
        // Stops the shard actors and syncs the store to disk.
        cache.cache.shutdown().await;
    }
    match stop_rx.await {
        Ok(err) => Err(err),
        Err(_) => Ok(()),
    }
}

/// How [`serve`] runs besides the config.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to reload the config from (SIGHUP, file changes); `None`: never.
    pub reload: Option<crate::reload::ReloadSource>,
    /// After SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            reload: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Builds the classifier (loading the encoder in embedded mode) and embeds
/// the route examples through it. With a NATS pool it waits, retrying, until
/// a worker answers.
async fn prepare(config: &Config, pool: Option<NatsPool>) -> Result<Ready, ServeError> {
    let classifier = match pool {
        Some(pool) => Classifier::Nats(pool),
        None => load_embedded(config).await?,
    };
    prepare_routing(config, Arc::new(classifier)).await
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
        let model =
            Encoder::load(&e.model_dir, e.max_tokens).map_err(|source| ServeError::Model {
                dir: e.model_dir.clone(),
                source,
            })?;
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

pub(crate) fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
