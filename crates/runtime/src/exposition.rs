//! Prometheus exposition for routemesh processes (worker and gateway): the
//! process-wide recorder with explicit histogram buckets and a listener of
//! its own serving `GET /metrics`. The metric names belong to the code that
//! records them (the gateway's `telemetry`, the worker's batcher).
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
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Upper bounds, in seconds, of every `*_seconds` histogram: half a
/// millisecond (a cache lookup, a decision) to a minute (a slow upstream).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The buckets of one histogram that is not measured in seconds (every
/// `*_seconds` histogram gets [`LATENCY_BUCKETS`]).
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    /// The histogram's full name.
    pub metric: &'static str,
    /// Upper bounds, ascending.
    pub bounds: &'static [f64],
}

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
/// early: what is recorded before it is lost. `buckets` names the
/// histograms that are not `*_seconds` and their bounds.
pub async fn install(addr: SocketAddr, buckets: &[Buckets]) -> Result<Exporter, ExporterError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let recorder =
        |e: metrics_exporter_prometheus::BuildError| ExporterError::Recorder(e.to_string());
    let mut builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(recorder)?;
    for b in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(b.metric.into()), b.bounds)
            .map_err(recorder)?;
    }
    let handle = builder.install_recorder().map_err(recorder)?;
    Ok(Exporter {
        handle,
        listener,
        local,
    })
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
