//! The NATS micro service: answers `routemesh.classify.<pool>` in a queue
//! group named after the pool, so any number of workers share a pool's load
//! and `$SRV.PING/INFO/STATS.routemesh-classifier` list them with request
//! counts, errors and processing times.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures_util::StreamExt;
use routemesh_common::wire::{
    self, ClassifyReply, ClassifyRequest, EmbeddingItem, Versioned, WIRE_VERSION, WireTimings,
    error_code,
};
use tokio::task::JoinSet;

use crate::batcher::Batcher;
use crate::error::ClassifyError;

/// What a worker serves.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The pool (subject token and queue group).
    pub pool: String,
    /// Model name reported in replies and service metadata.
    pub model: String,
}

/// Failing to register or run the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid pool name `{0}`: use letters, digits, `-` and `_`")]
    Pool(String),
    #[error("cannot register the NATS service: {0}")]
    Register(String),
}

/// What the worker did before it stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceReport {
    pub requests: u64,
}

/// Serves until `shutdown` resolves, then drains: stops taking new requests
/// (unsubscribes, so the pool's other workers get them), answers every
/// request it already holds, and returns.
pub async fn run(
    client: async_nats::Client,
    batcher: Batcher,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ServiceReport, ServiceError> {
    if !wire::valid_pool_name(&opts.pool) {
        return Err(ServiceError::Pool(opts.pool));
    }
    let metadata = HashMap::from([
        ("pool".to_owned(), opts.pool.clone()),
        ("model".to_owned(), opts.model.clone()),
    ]);
    let service = client
        .service_builder()
        .description(format!(
            "routemesh classifier worker: embeddings for pool {}",
            opts.pool
        ))
        .metadata(metadata)
        .queue_group(&opts.pool)
        .start(wire::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| ServiceError::Register(e.to_string()))?;
    let subject = wire::classify_subject(&opts.pool);
    let mut endpoint = service
        .endpoint_builder()
        .name(&opts.pool)
        .queue_group(&opts.pool)
        .add(&subject)
        .await
        .map_err(|e| ServiceError::Register(e.to_string()))?;
    // A round trip to the server: it holds the endpoint's subscription
    // before anyone is told this worker serves (else an early request can
    // meet "no responders").
    client
        .flush()
        .await
        .map_err(|e| ServiceError::Register(e.to_string()))?;
    let worker = service.info().await.id;
    let ctx = Ctx {
        batcher,
        worker: worker.clone(),
        model: opts.model.clone(),
    };
    tracing::info!(pool = %opts.pool, %subject, %worker, "serving");
    announce(&format!(
        "classifier-worker ready: pool {} on {subject}, worker {worker}",
        opts.pool
    ));

    let mut report = ServiceReport::default();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = endpoint.next() => match next {
                Some(request) => {
                    report.requests += 1;
                    let ctx = ctx.clone();
                    tasks.spawn(async move { ctx.handle(request).await });
                }
                None => break,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::info!(
        in_flight = tasks.len(),
        "draining: no new requests; finishing the ones held"
    );
    // Unsubscribes: the pool's other workers take new requests from now on.
    drop(endpoint);
    if let Err(e) = service.stop().await {
        tracing::warn!(error = %e, "stopping the NATS service");
    }
    while tasks.join_next().await.is_some() {}
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flushing the last replies");
    }
    Ok(report)
}

#[derive(Clone)]
struct Ctx {
    batcher: Batcher,
    worker: String,
    model: String,
}

impl Ctx {
    async fn handle(&self, request: service::Request) {
        let result = self.answer(&request.message.payload).await;
        if let Err(e) = request.respond(result).await {
            tracing::warn!(error = %e, "cannot send a reply");
        }
    }

    async fn answer(&self, payload: &[u8]) -> Result<Bytes, service::error::Error> {
        let fail = |code: usize, status: String| service::error::Error { code, status };
        let v: Versioned = serde_json::from_slice(payload).map_err(|e| {
            fail(
                error_code::BAD_REQUEST,
                format!("not a routemesh classify request: {e}"),
            )
        })?;
        if v.v != WIRE_VERSION {
            return Err(fail(
                error_code::BAD_REQUEST,
                format!(
                    "unsupported wire version {}; this worker speaks version {WIRE_VERSION}",
                    v.v
                ),
            ));
        }
        let req: ClassifyRequest = serde_json::from_slice(payload).map_err(|e| {
            fail(
                error_code::BAD_REQUEST,
                format!("malformed classify request: {e}"),
            )
        })?;
        let deadline = Instant::now() + Duration::from_millis(req.deadline_ms);
        let embedded = self
            .batcher
            .embed_with(req.texts, req.outputs, Some(deadline))
            .await
            .map_err(|e| {
                let code = match e {
                    ClassifyError::Overloaded { .. } => error_code::UNAVAILABLE,
                    ClassifyError::DeadlineExceeded => error_code::DEADLINE,
                    ClassifyError::UnknownOutput { .. } => error_code::BAD_REQUEST,
                    ClassifyError::Stopped | ClassifyError::Failed(_) => error_code::INTERNAL,
                };
                fail(code, e.to_string())
            })?;
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let reply = ClassifyReply {
            v: WIRE_VERSION,
            worker: self.worker.clone(),
            model: self.model.clone(),
            batch_size: embedded.batch_size,
            items: embedded
                .items
                .into_iter()
                .map(|e| EmbeddingItem {
                    embedding: e.vector,
                    tokens: u32::try_from(e.tokens).unwrap_or(u32::MAX),
                    truncated: e.truncated,
                    windows: u32::try_from(e.windows).unwrap_or(u32::MAX),
                    outputs: e.outputs,
                })
                .collect(),
            timings: WireTimings {
                queue_us: us(embedded.timings.queue),
                tokenize_us: us(embedded.timings.tokenize),
                forward_us: us(embedded.timings.forward),
            },
        };
        serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| {
            fail(
                error_code::INTERNAL,
                format!("cannot encode the reply: {e}"),
            )
        })
    }
}

fn announce(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
