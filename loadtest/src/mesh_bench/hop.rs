//! The NATS classify hop, bus only: a client sends `ClassifyRequest`s on
//! `routemesh.classify.bench` to an in-process responder (its own connection, its own thread and
//! single-threaded runtime, in a queue group as workers are) that answers every request at once
//! with one pre-serialised, realistic `ClassifyReply`. Measures request → reply latency at each
//! concurrency level and the throughput reached with that many requests in flight.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use routemesh_common::wire::{self, ClassifyReply, ClassifyRequest, WIRE_VERSION};
use routemesh_test_support::nats_server::NatsServer;
use serde::Serialize;

use super::{
    Errors, Latency, MeshBenchError, ReportHeader, block_on_interruptible, connect, fmt_errors,
    fmt_ms, fmt_rate, histogram, micros, request_error_kind, service_error,
};

/// The pool the hop benchmark answers on.
pub const POOL: &str = "bench";

/// The prompt every request carries (one short user message, 14 tokens in MiniLM).
pub const PROMPT: &str = "What is the derivative of x^3 * sin(x)?";

/// Width of the embedding in the canned reply (MiniLM's).
pub const EMBEDDING_DIM: usize = 384;

/// DESIGN.md's budget for the hop's p50, in ms.
pub const BUDGET_P50_MS: f64 = 0.3;

/// Which tokio runtime the client runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientRuntime {
    /// One thread; FACTS.md measured lower latency and more req/s with it.
    CurrentThread,
    /// tokio's work-stealing runtime, one worker per core.
    MultiThread,
}

impl std::str::FromStr for ClientRuntime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "current-thread" => Ok(Self::CurrentThread),
            "multi-thread" => Ok(Self::MultiThread),
            other => Err(format!("`{other}`: use current-thread or multi-thread")),
        }
    }
}

impl std::fmt::Display for ClientRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CurrentThread => "current-thread",
            Self::MultiThread => "multi-thread",
        })
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct HopConfig {
    /// Measured requests per concurrency level.
    pub requests: usize,
    /// Unrecorded warm-up requests per concurrency level.
    pub warmup: usize,
    /// Requests in flight, one measurement per entry (1 = sequential).
    pub concurrency: Vec<usize>,
    /// The client's runtime.
    pub runtime: ClientRuntime,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Print progress on stderr.
    pub progress: bool,
}

impl Default for HopConfig {
    fn default() -> Self {
        Self {
            requests: 20_000,
            warmup: 1_000,
            concurrency: vec![1, 64],
            runtime: ClientRuntime::CurrentThread,
            timeout: Duration::from_secs(5),
            progress: false,
        }
    }
}

/// One concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct HopLevel {
    pub concurrency: usize,
    pub requests: usize,
    pub elapsed_s: f64,
    /// Answered requests per second.
    pub throughput_rps: f64,
    pub latency: Latency,
    pub errors: Errors,
}

/// The whole report; serialised as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct HopReport {
    pub header: ReportHeader,
    pub subject: String,
    pub client_runtime: ClientRuntime,
    pub responder: String,
    pub request_bytes: usize,
    pub reply_bytes: usize,
    pub embedding_dim: usize,
    pub warmup: usize,
    pub levels: Vec<HopLevel>,
    pub budget_p50_ms: f64,
}

/// The request every client sends, serialised.
pub fn request_payload() -> Result<Bytes, serde_json::Error> {
    let req = ClassifyRequest::new(
        "5f0c6e1a-8d2b-4c7e-9a31-2b6d8e4f7a10",
        vec![PROMPT.to_owned()],
        250,
    );
    serde_json::to_vec(&req).map(Bytes::from)
}

/// The reply the responder sends: what a worker answers for one prompt (a 384-float unit
/// vector with MiniLM-like values, a NATS service id, the model name and timings).
pub fn reply_payload() -> Result<Bytes, serde_json::Error> {
    // A deterministic pseudo-random unit vector (xorshift), like a real embedding's spread.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut embedding: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = embedding
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(1e-12);
    embedding.iter_mut().for_each(|x| *x /= norm);
    // Built through serde rather than a struct literal, so fields added to the wire with
    // defaults (absent when empty, as a worker sends them) need no change here.
    let reply: ClassifyReply = serde_json::from_value(serde_json::json!({
        "v": WIRE_VERSION,
        "worker": "Xq3vJ6oQwXa1pLr8sZt0Nb",
        "model": "all-MiniLM-L6-v2",
        "batch_size": 1,
        "items": [{ "embedding": embedding, "tokens": 14, "truncated": false }],
        "timings": { "queue_us": 41, "tokenize_us": 27, "forward_us": 4870 },
    }))?;
    serde_json::to_vec(&reply).map(Bytes::from)
}

/// Runs the benchmark: a fresh `nats-server`, the responder, then each concurrency level.
pub fn run(cfg: &HopConfig, header: ReportHeader) -> Result<HopReport, MeshBenchError> {
    if cfg.requests == 0 || cfg.concurrency.is_empty() || cfg.concurrency.contains(&0) {
        return Err(MeshBenchError::Config(
            "requests and every concurrency level must be at least 1".to_owned(),
        ));
    }
    let json = |e: serde_json::Error| MeshBenchError::Config(format!("cannot encode: {e}"));
    let request = request_payload().map_err(json)?;
    let reply = reply_payload().map_err(json)?;
    let subject = wire::classify_subject(POOL);

    let server = NatsServer::start()?;
    let url = server.url();
    let responder = Responder::start(&url, &subject, reply.clone())?;

    let runtime = match cfg.runtime {
        ClientRuntime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        ClientRuntime::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .map_err(MeshBenchError::Runtime)?;
    let levels = block_on_interruptible(&runtime, measure(cfg, &url, &subject, request.clone()))?;
    drop(runtime);
    drop(responder);
    drop(server);
    Ok(HopReport {
        header,
        subject,
        client_runtime: cfg.runtime,
        responder: "in-process, own connection, own thread with a current-thread runtime, \
                    queue group `bench`, answers without parsing"
            .to_owned(),
        request_bytes: request.len(),
        reply_bytes: reply.len(),
        embedding_dim: EMBEDDING_DIM,
        warmup: cfg.warmup,
        levels,
        budget_p50_ms: BUDGET_P50_MS,
    })
}

async fn measure(
    cfg: &HopConfig,
    url: &str,
    subject: &str,
    request: Bytes,
) -> Result<Vec<HopLevel>, MeshBenchError> {
    let client = connect(url, "bench-mesh/hop-client", cfg.timeout).await?;
    let first = client
        .request(subject.to_owned(), request.clone())
        .await
        .map_err(|e| MeshBenchError::Preflight(e.to_string()))?;
    serde_json::from_slice::<ClassifyReply>(&first.payload)
        .map_err(|e| MeshBenchError::Preflight(format!("the reply is no ClassifyReply: {e}")))?;
    let mut levels = Vec::new();
    for &c in &cfg.concurrency {
        if cfg.progress {
            eprintln!(
                "bench-mesh hop: concurrency {c}: {} warm-up + {} measured",
                cfg.warmup, cfg.requests
            );
        }
        phase(&client, subject, &request, cfg.warmup, c).await?;
        let started = Instant::now();
        let (hist, errors) = phase(&client, subject, &request, cfg.requests, c).await?;
        let elapsed = started.elapsed().as_secs_f64();
        levels.push(HopLevel {
            concurrency: c,
            requests: cfg.requests,
            elapsed_s: elapsed,
            throughput_rps: hist.len() as f64 / elapsed.max(1e-9),
            latency: Latency::of(&hist),
            errors,
        });
    }
    Ok(levels)
}

/// Sends `total` requests with `concurrency` in flight (closed loop); each loop is its own task,
/// so a multi-thread runtime spreads them over its workers.
async fn phase(
    client: &async_nats::Client,
    subject: &str,
    request: &Bytes,
    total: usize,
    concurrency: usize,
) -> Result<(hdrhistogram::Histogram<u64>, Errors), MeshBenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(total) {
        let (client, subject, request, next) = (
            client.clone(),
            subject.to_owned(),
            request.clone(),
            Arc::clone(&next),
        );
        let mut hist = histogram()?;
        tasks.spawn(async move {
            let mut errors = Errors::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = Instant::now();
                match client.request(subject.clone(), request.clone()).await {
                    Ok(msg) => match service_error(&msg) {
                        Some(kind) => *errors.entry(kind).or_default() += 1,
                        None => hist.saturating_record(micros(start.elapsed())),
                    },
                    Err(e) => *errors.entry(request_error_kind(&e)).or_default() += 1,
                }
            }
            (hist, errors)
        });
    }
    let mut hist = histogram()?;
    let mut errors = Errors::new();
    while let Some(done) = tasks.join_next().await {
        let (h, e) =
            done.map_err(|e| MeshBenchError::Nats(format!("a client task failed: {e}")))?;
        hist.add(&h)?;
        for (k, n) in e {
            *errors.entry(k).or_default() += n;
        }
    }
    Ok((hist, errors))
}

/// The instant responder on its own thread; stopped and joined on drop.
#[derive(Debug)]
struct Responder {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    /// Connects, subscribes in queue group [`POOL`], and returns once the server has the
    /// subscription.
    fn start(url: &str, subject: &str, reply: Bytes) -> Result<Self, MeshBenchError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), MeshBenchError>>();
        let (url, subject) = (url.to_owned(), subject.to_owned());
        let thread = std::thread::Builder::new()
            .name("bench-responder".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(MeshBenchError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(respond(url, subject, reply, ready_tx, stopped));
            })
            .map_err(MeshBenchError::Runtime)?;
        let responder = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(responder),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(MeshBenchError::Nats(
                "the responder did not subscribe within 10 s".to_owned(),
            )),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn respond(
    url: String,
    subject: String,
    reply: Bytes,
    ready: std::sync::mpsc::Sender<Result<(), MeshBenchError>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let setup = async {
        let client = connect(&url, "bench-mesh/hop-responder", Duration::from_secs(5)).await?;
        let sub = client
            .queue_subscribe(subject, POOL.to_owned())
            .await
            .map_err(|e| MeshBenchError::Nats(format!("cannot subscribe: {e}")))?;
        // A round trip to the server: the subscription is registered when it returns.
        client
            .flush()
            .await
            .map_err(|e| MeshBenchError::Nats(format!("cannot flush: {e}")))?;
        Ok::<_, MeshBenchError>((client, sub))
    };
    let (client, mut sub) = match setup.await {
        Ok(ok) => ok,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            next = sub.next() => match next {
                Some(msg) => {
                    if let Some(to) = msg.reply
                        && client.publish(to, reply.clone()).await.is_err() {
                            break;
                        }
                }
                None => break,
            },
        }
    }
}

impl HopReport {
    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        self.header
            .write_markdown(out, "NATS classify hop (bus only, instant responder)")?;
        writeln!(
            out,
            "- subject: `{}`; responder: {}",
            self.subject, self.responder
        )?;
        writeln!(
            out,
            "- client: one connection, tokio {} runtime; warm-up {} requests per level",
            self.client_runtime, self.warmup
        )?;
        writeln!(
            out,
            "- payloads: request {} B (ClassifyRequest, one prompt), reply {} B (ClassifyReply, \
             one {}-float embedding)\n",
            self.request_bytes, self.reply_bytes, self.embedding_dim
        )?;
        writeln!(
            out,
            "| in flight | requests | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |"
        )?;
        writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
        for l in &self.levels {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.concurrency,
                l.requests,
                fmt_rate(l.throughput_rps),
                fmt_ms(l.latency.p50_us),
                fmt_ms(l.latency.p90_us),
                fmt_ms(l.latency.p99_us),
                fmt_ms(l.latency.p999_us),
                fmt_ms(l.latency.max_us),
                fmt_errors(&l.errors)
            )?;
        }
        writeln!(out)?;
        if let Some(seq) = self.levels.iter().find(|l| l.concurrency == 1)
            && let Some(p50) = seq.latency.p50_us
        {
            let p50_ms = p50 as f64 / 1000.0;
            let verdict = if p50_ms < self.budget_p50_ms {
                "within"
            } else {
                "over"
            };
            writeln!(
                out,
                "Sequential p50 {p50_ms:.3} ms: {verdict} the budget (p50 < {} ms, DESIGN.md).",
                self.budget_p50_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canned_payloads_are_valid_wire_messages() {
        let req: ClassifyRequest = serde_json::from_slice(&request_payload().unwrap()).unwrap();
        assert_eq!(req.texts, vec![PROMPT.to_owned()]);
        let reply: ClassifyReply = serde_json::from_slice(&reply_payload().unwrap()).unwrap();
        let e = &reply.items[0].embedding;
        assert_eq!(e.len(), EMBEDDING_DIM);
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }

    #[test]
    fn runtimes_parse_and_print_alike() {
        for rt in [ClientRuntime::CurrentThread, ClientRuntime::MultiThread] {
            assert_eq!(rt.to_string().parse::<ClientRuntime>().unwrap(), rt);
        }
        assert!("threads".parse::<ClientRuntime>().is_err());
    }
}
