//! Running the gateway: check the model files, bind, load the encoder in the
//! background (readiness), serve until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use routemesh_common::Config;
use routemesh_common::config::Transport;
use routemesh_runtime::nats;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cache::CacheLayer;
use crate::classify::{Classifier, NatsPool};
use crate::learning::Learning;
use crate::startup::{announce, load_embedded, prepare_routing};
use crate::state::{Gateway, Ready};
use crate::upstream::UpstreamPool;

// Defined in `startup`, which `reload` shares; their public paths stay here.
pub use crate::startup::{ServeError, check_classifier_labels, check_model_files};

/// Serves until a shutdown signal (then `Ok`) or a fatal error.
///
/// Prints `routemesh metrics on http://ADDR/metrics` when there is a
/// metrics listener, `routemesh listening on http://ADDR` once bound and
/// `routemesh ready` once routing can run, each on its own stdout line, for
/// scripts and tests to wait on.
pub async fn serve(config: Config, options: ServeOptions) -> Result<(), ServeError> {
    check_model_files(&config)?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
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
        let cache = gateway.cache.as_ref().map(|layer| layer.cache.clone());
        let local =
            crate::telemetry::install(metrics.listen, &gateway.learning.learner, cache).await?;
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
            Some(
                NatsPool::new(client, pool)
                    .with_placement(elsewhere)
                    .with_hedge(config.classifier.hedge),
            )
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
    let limits = crate::listener::Limits::from_config(&config.server);
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
            () = routemesh_runtime::shutdown_signal() => {
                tracing::info!(drain_timeout = ?options.drain_timeout, "shutting down: no new connections; finishing requests in flight");
                let _ = draining_tx.send(());
            }
            Ok(err) = failed_rx => { let _ = stop_tx.send(err); }
        }
        let _ = stopping_tx.send(Some(tokio::time::Instant::now()));
    };
    let server = crate::listener::serve(listener, app, limits, shutdown);
    // Requests in flight get `drain_timeout` after the signal, then are cut.
    let drain_limit = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(options.drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => {}
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
