//! Prometheus exposition for routemesh processes (worker and gateway): the
//! process-wide recorder with explicit histogram buckets, a listener of its
//! own serving `GET /metrics`, and the worker's metric names.
//!
//! The listener is ours (axum on a tokio `TcpListener`), not the exporter's
//! built-in one, so a port of 0 can be bound and the real address printed,
//! and so the caller can sample gauges right before each scrape.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Texts in one forward pass of a replica (histogram).
pub const WORKER_BATCH_SIZE: &str = "routemesh_worker_batch_size";
/// Jobs waiting in the batcher's queue for a replica (gauge; set on every
/// submit and every batch taken).
pub const WORKER_QUEUE_DEPTH: &str = "routemesh_worker_queue_depth";
/// Seconds of one forward pass: tokenizing, the encoder and the scorers
/// (histogram).
pub const WORKER_INFERENCE_SECONDS: &str = "routemesh_worker_inference_seconds";

/// Upper bounds, in seconds, of every `*_seconds` histogram: half a
/// millisecond (a cache lookup, a decision) to a minute (a slow upstream).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Upper bounds of [`WORKER_BATCH_SIZE`]: powers of two up to 256 texts.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often histogram and recency bookkeeping runs between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// Starting the exporter failed.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

/// The installed recorder and its bound listener, not yet serving.
#[derive(Debug)]
pub struct Exporter {
    handle: PrometheusHandle,
    listener: TcpListener,
    local: SocketAddr,
}

/// Installs the process's metrics recorder and binds `addr`. Call it once,
/// early: what is recorded before it is lost.
pub async fn install(addr: SocketAddr) -> Result<Exporter, ExporterError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(WORKER_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
        })
        .map_err(|e| ExporterError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| ExporterError::Recorder(e.to_string()))?;
    describe_worker();
    Ok(Exporter {
        handle,
        listener,
        local,
    })
}

/// `# HELP` lines for the batcher's series.
fn describe_worker() {
    metrics::describe_histogram!(
        WORKER_BATCH_SIZE,
        Unit::Count,
        "Texts in one forward pass of a replica."
    );
    metrics::describe_gauge!(
        WORKER_QUEUE_DEPTH,
        Unit::Count,
        "Jobs waiting in the batcher's queue."
    );
    metrics::describe_histogram!(
        WORKER_INFERENCE_SECONDS,
        Unit::Seconds,
        "Seconds of one forward pass (tokenize, encoder, scorers)."
    );
}

type Collect = Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl Exporter {
    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves `GET /metrics` in the background for the rest of the process.
    /// `collect` runs before each scrape: it sets gauges sampled from state
    /// (cache sizes, posteriors) so a scrape always sees fresh values.
    pub fn serve<F, Fut>(self, collect: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let upkeep = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let collect: Collect = Arc::new(move || Box::pin(collect()));
        let app = Router::new()
            .route("/metrics", get(scrape))
            .with_state((self.handle, collect));
        let listener = self.listener;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
}

async fn scrape(State((handle, collect)): State<(PrometheusHandle, Collect)>) -> impl IntoResponse {
    collect().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
