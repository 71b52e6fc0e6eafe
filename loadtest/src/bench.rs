//! The gateway latency benchmark (a benchmark, not a test): sends the same prompts to the gateway
//! and straight to a (fake) upstream, interleaved in alternating batches so machine noise hits
//! both equally, and records end-to-end latency plus the gateway's `Server-Timing` stages in
//! HdrHistograms (microseconds).

mod record;
mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use reqwest::Client;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use self::record::{Answer, Sample};
use crate::server_timing;

pub use self::record::{GatewayRun, Mean, Measurements, TargetRun};
pub use self::report::{HostInfo, Report, shell_command};

/// Prompts used when none are given: a greeting, a math question, a coding question.
pub const DEFAULT_PROMPTS: [&str; 3] = [
    "Hello! How are you today?",
    "What is the derivative of x^3 * sin(x)?",
    "Write a Python function that checks whether a string is a palindrome.",
];

/// Stages the gateway reports, in pipeline order; others it sends are reported after these.
pub const KNOWN_STAGES: [&str; 4] = ["classify", "decide", "upstream", "total"];

/// Distinct stage or model names kept, so a misbehaving server cannot grow the report unbounded.
const MAX_NAMES: usize = 32;

/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Highest latency a histogram tracks: 10 minutes, in microseconds.
const MAX_MICROS: u64 = 600_000_000;

/// What to benchmark and how.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Gateway base URL, e.g. `http://127.0.0.1:8080` (`/v1/chat/completions` is appended).
    pub gateway: String,
    /// Upstream base URL called directly, e.g. `http://127.0.0.1:9103`.
    pub direct: String,
    /// `model` sent to the gateway (a router alias such as `auto`, or a concrete model).
    pub gateway_model: String,
    /// `model` sent to the direct upstream.
    pub direct_model: String,
    /// Measured requests per target.
    pub requests: usize,
    /// Unrecorded warm-up requests per target.
    pub warmup: usize,
    /// Requests in flight at once (closed loop).
    pub concurrency: usize,
    /// Requests per target per batch; `None` picks `max(100, 10 × concurrency)`.
    pub batch: Option<usize>,
    /// Prompts, cycled; both targets get the same sequence.
    pub prompts: Vec<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Print a progress line on stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// A config with the defaults of the `bench-gateway` command line.
    pub fn new(gateway: impl Into<String>, direct: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            direct: direct.into(),
            gateway_model: "auto".to_owned(),
            direct_model: "llama-3.2-1b".to_owned(),
            requests: 2000,
            warmup: 100,
            concurrency: 1,
            batch: None,
            prompts: DEFAULT_PROMPTS.iter().map(|p| (*p).to_owned()).collect(),
            timeout: Duration::from_secs(60),
            progress: false,
        }
    }

    /// Requests per target per batch (never fewer than `concurrency`).
    pub fn batch_size(&self) -> usize {
        let default = (10 * self.concurrency).max(100);
        self.batch.unwrap_or(default).max(self.concurrency)
    }

    fn validate(&self) -> Result<(), BenchError> {
        let problem = if self.requests == 0 {
            "requests must be at least 1"
        } else if self.concurrency == 0 {
            "concurrency must be at least 1"
        } else if self.batch == Some(0) {
            "batch must be at least 1"
        } else if self.prompts.is_empty() {
            "at least one prompt is needed"
        } else {
            return Ok(());
        };
        Err(BenchError::Config(problem.to_owned()))
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("the {target} at {url} did not answer a first request successfully: {detail}")]
    Preflight {
        target: &'static str,
        url: String,
        detail: String,
    },
    #[error("cannot create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Gateway,
    Direct,
}

/// One endpoint with its request bodies (one per prompt) rendered once.
#[derive(Debug)]
struct Target {
    label: &'static str,
    url: String,
    bodies: Vec<Bytes>,
}

impl Target {
    fn new(label: &'static str, base: &str, model: &str, prompts: &[String]) -> Self {
        let bodies = prompts
            .iter()
            .map(|prompt| {
                let body =
                    json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] });
                Bytes::from(body.to_string())
            })
            .collect();
        Self {
            label,
            url: chat_url(base),
            bodies,
        }
    }

    fn body(&self, k: usize) -> Bytes {
        let len = self.bodies.len().max(1);
        self.bodies.get(k % len).cloned().unwrap_or_default()
    }
}

/// `{base}/v1/chat/completions`, accepting a base that already ends in `/v1`.
fn chat_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/chat/completions")
}

/// Runs the benchmark: one preflight request to each target, the warm-up, then the measurement.
pub async fn run(cfg: &BenchConfig) -> Result<Measurements, BenchError> {
    cfg.validate()?;
    routemesh_runtime::install_tls_provider();
    let client = Client::builder()
        .timeout(cfg.timeout)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(cfg.concurrency)
        .build()
        .map_err(BenchError::Client)?;
    let gateway = Target::new("gateway", &cfg.gateway, &cfg.gateway_model, &cfg.prompts);
    let direct = Target::new(
        "direct upstream",
        &cfg.direct,
        &cfg.direct_model,
        &cfg.prompts,
    );
    preflight(&client, &gateway).await?;
    preflight(&client, &direct).await?;

    let bench = Bench {
        client,
        gateway,
        direct,
        cfg,
    };
    bench.phase("warm-up", cfg.warmup, None).await?;
    let mut measured = Measurements::new()?;
    bench
        .phase("measure", cfg.requests, Some(&mut measured))
        .await?;
    Ok(measured)
}

#[derive(Debug)]
struct Bench<'a> {
    client: Client,
    gateway: Target,
    direct: Target,
    cfg: &'a BenchConfig,
}

impl Bench<'_> {
    /// `total` requests per target in batches, alternating which target goes first each round.
    async fn phase(
        &self,
        name: &str,
        total: usize,
        mut sink: Option<&mut Measurements>,
    ) -> Result<(), BenchError> {
        let batch = self.cfg.batch_size();
        let (mut done, mut round) = (0, 0);
        let mut shown = Instant::now();
        while done < total {
            let n = batch.min(total - done);
            let order = if round % 2 == 0 {
                [Which::Gateway, Which::Direct]
            } else {
                [Which::Direct, Which::Gateway]
            };
            for which in order {
                let target = match which {
                    Which::Gateway => &self.gateway,
                    Which::Direct => &self.direct,
                };
                let start = Instant::now();
                let samples = self.batch(target, done, n).await;
                let busy = start.elapsed();
                if let Some(m) = sink.as_deref_mut() {
                    record(m, which, &samples, busy)?;
                }
            }
            done += n;
            round += 1;
            // At most twice a second, so a log file does not fill with progress lines.
            if self.cfg.progress && (done == total || shown.elapsed() >= PROGRESS_EVERY) {
                shown = Instant::now();
                eprint!("\rbench-gateway: {name} {done}/{total} requests per target   ");
            }
        }
        if self.cfg.progress && total > 0 {
            eprintln!();
        }
        Ok(())
    }

    /// Sends requests `offset..offset + n` to one target with `concurrency` in flight.
    async fn batch(&self, target: &Target, offset: usize, n: usize) -> Vec<Sample> {
        let next = AtomicUsize::new(0);
        let workers = (0..self.cfg.concurrency.min(n)).map(|_| async {
            let mut samples = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break samples;
                }
                samples.push(send(&self.client, target, offset + k).await);
            }
        });
        join_all(workers).await.into_iter().flatten().collect()
    }
}

fn record(
    m: &mut Measurements,
    which: Which,
    samples: &[Sample],
    busy: Duration,
) -> Result<(), BenchError> {
    match which {
        Which::Gateway => {
            m.gateway.target.busy += busy;
            for sample in samples {
                m.gateway.record(sample)?;
            }
        }
        Which::Direct => {
            m.direct.busy += busy;
            for sample in samples {
                m.direct.record(sample);
            }
        }
    }
    Ok(())
}

async fn send(client: &Client, target: &Target, k: usize) -> Sample {
    let start = Instant::now();
    let outcome = async {
        let res = client
            .post(&target.url)
            .header(CONTENT_TYPE, "application/json")
            .body(target.body(k))
            .send()
            .await
            .map_err(|e| failure_kind(&e))?;
        let status = res.status();
        let headers = res.headers();
        let timing = headers
            .get_all("server-timing")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(server_timing::parse)
            .collect();
        let model = headers
            .get("x-routemesh-model")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        res.bytes().await.map_err(|e| failure_kind(&e))?;
        if status.is_success() {
            Ok(Answer { timing, model })
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
    .await;
    Sample {
        e2e: start.elapsed(),
        outcome,
    }
}

/// A bounded label for a transport failure.
fn failure_kind(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    kind.to_owned()
}

async fn preflight(client: &Client, target: &Target) -> Result<(), BenchError> {
    let failed = |detail: String| BenchError::Preflight {
        target: target.label,
        url: target.url.clone(),
        detail,
    };
    let res = client
        .post(&target.url)
        .header(CONTENT_TYPE, "application/json")
        .body(target.body(0))
        .send()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| failed(error_chain(&e)))?;
    if status.is_success() {
        Ok(())
    } else {
        let snippet: String = text.chars().take(300).collect();
        Err(failed(format!("HTTP {status}: {snippet}")))
    }
}

/// An error with its sources, `outer: inner: innermost`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chat_url_accepts_bases_with_or_without_v1() {
        for base in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/",
        ] {
            assert_eq!(
                chat_url(base),
                "http://h:1/v1/chat/completions",
                "base {base}"
            );
        }
    }

    #[test]
    fn batch_size_never_below_concurrency() {
        let mut cfg = BenchConfig::new("g", "d");
        assert_eq!(cfg.batch_size(), 100);
        cfg.concurrency = 32;
        assert_eq!(cfg.batch_size(), 320);
        cfg.batch = Some(8);
        assert_eq!(cfg.batch_size(), 32);
    }
}
