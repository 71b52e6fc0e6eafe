//! Running the gateway: check the model files, bind, load the encoder in the
//! background (readiness), serve until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use routemesh_classifier_worker::{EncoderError, load_embedded};
use routemesh_common::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::AppState;
use crate::upstream::UpstreamPool;

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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the encoder from {dir}: {source}")]
    Model { dir: PathBuf, source: EncoderError },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks that the encoder folder has its files, before anything is bound.
pub fn check_model_files(config: &Config) -> Result<(), ServeError> {
    let dir = &config.encoder.model_dir;
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
/// Prints `routemesh listening on http://ADDR` once bound and
/// `routemesh ready` once the encoder has loaded, each on its own stdout
/// line, for scripts and tests to wait on.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    check_model_files(&config)?;
    let config = Arc::new(config);
    let state = AppState::new(config.clone(), UpstreamPool::new(&config)?);
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    announce(&format!("routemesh listening on http://{local}"));
    tracing::info!(%local, "listening; loading the encoder");

    let (failed_tx, failed_rx) = oneshot::channel();
    let loader = state.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        match load_embedded(&loader.config) {
            Ok(classifier) => {
                let _ = loader.classifier.set(classifier);
                let examples: usize = loader
                    .config
                    .signals
                    .routes
                    .iter()
                    .map(|r| r.examples.len())
                    .sum();
                tracing::info!(
                    seconds = started.elapsed().as_secs_f64(),
                    route_examples = examples,
                    "encoder loaded; ready"
                );
                announce("routemesh ready");
            }
            Err(source) => {
                let _ = failed_tx.send(ServeError::Model {
                    dir: loader.config.encoder.model_dir.clone(),
                    source,
                });
            }
        }
    });

    let app = crate::http::router(state);
    let (stop_tx, stop_rx) = oneshot::channel::<ServeError>();
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => tracing::info!("shutting down: finishing requests in flight"),
            Ok(err) = failed_rx => { let _ = stop_tx.send(err); }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    match stop_rx.await {
        Ok(err) => Err(err),
        Err(_) => Ok(()),
    }
}

fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
