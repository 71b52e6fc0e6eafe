//! Worker scaling with the simulated fixed-cost model: for each worker count, a fresh
//! `nats-server` and that many `classifier-worker serve --simulated-cost …` processes in one
//! pool, driven by a closed loop of `in_flight` requests on `routemesh.classify.scale`.
//! Throughput should grow close to linearly with workers: a sleeping worker costs no CPU.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use routemesh_common::wire::{self, ClassifyRequest};
use routemesh_test_support::nats_server::NatsServer;
use serde::{Deserialize, Serialize};

use super::fleet::{Fleet, WorkerSpec};
use super::{
    Errors, Latency, MeshBenchError, ReportHeader, block_on_interruptible, connect, fmt_errors,
    fmt_ms, fmt_rate, histogram, micros, request_error_kind, service_error,
};

/// The pool the workers serve.
pub const POOL: &str = "scale";

/// DESIGN.md's budget: throughput at least this fraction of linear from 1 to 8 workers.
pub const BUDGET_EFFICIENCY: f64 = 0.85;

/// The prompt every request carries.
const PROMPT: &str = "Write a Python function that checks whether a string is a palindrome.";

/// What to measure.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// The `classifier-worker` binary.
    pub worker_bin: PathBuf,
    /// Worker counts, one step each; speed-ups are relative to the first.
    pub workers: Vec<usize>,
    /// Simulated time per forward pass.
    pub cost: Duration,
    /// Most texts per forward pass.
    pub max_batch: usize,
    /// Measured time per step.
    pub duration: Duration,
    /// Unrecorded time per step before measuring.
    pub warmup: Duration,
    /// Requests in flight (closed loop).
    pub in_flight: usize,
    /// Per-request timeout (also sent as the request's deadline).
    pub timeout: Duration,
    /// How long each step waits for its workers to be ready.
    pub ready_within: Duration,
    /// Print progress on stderr.
    pub progress: bool,
}

impl ScaleConfig {
    /// The defaults of `bench-mesh scale`.
    pub fn new(worker_bin: impl Into<PathBuf>) -> Self {
        Self {
            worker_bin: worker_bin.into(),
            workers: vec![1, 2, 4, 8],
            cost: Duration::from_millis(20),
            max_batch: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            in_flight: 64,
            timeout: Duration::from_secs(10),
            ready_within: Duration::from_secs(30),
            progress: false,
        }
    }

    /// Most replies per second `workers` can give: each pass takes `cost`, and the closed loop
    /// never holds more than `in_flight` requests.
    pub fn ceiling_rps(&self, workers: usize) -> f64 {
        let parallel = workers.saturating_mul(self.max_batch).min(self.in_flight);
        parallel as f64 / self.cost.as_secs_f64().max(1e-9)
    }
}

/// One worker count.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleStep {
    pub workers: usize,
    /// Successful replies within the measured window.
    pub completed: u64,
    pub throughput_rps: f64,
    /// The first step's throughput per worker × workers.
    pub ideal_rps: Option<f64>,
    /// workers × max-batch / cost, capped by in-flight / cost.
    pub ceiling_rps: f64,
    /// Throughput over the first step's throughput per worker.
    pub speedup: Option<f64>,
    /// speed-up / workers.
    pub efficiency: Option<f64>,
    pub latency: Latency,
    pub errors: Errors,
    /// Successful replies per answering worker, most first.
    pub replies_per_worker: Vec<u64>,
}

/// The whole report; serialised as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    pub header: ReportHeader,
    pub subject: String,
    pub worker_command: String,
    pub cost_ms: f64,
    pub max_batch: usize,
    pub in_flight: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub steps: Vec<ScaleStep>,
    pub budget_efficiency: f64,
}

/// Speed-up and efficiency of each `(workers, req/s)` point relative to the first point's
/// throughput per worker; also the ideal (linear) throughput. `None` where the first point has
/// no throughput.
pub fn scaling(points: &[(usize, f64)]) -> Vec<(Option<f64>, Option<f64>, Option<f64>)> {
    let per_worker = points
        .first()
        .filter(|(n, rps)| *n > 0 && *rps > 0.0)
        .map(|(n, rps)| rps / *n as f64);
    points
        .iter()
        .map(|&(n, rps)| match per_worker {
            Some(base) => {
                let speedup = rps / base;
                (
                    Some(speedup),
                    Some(speedup / n.max(1) as f64),
                    Some(base * n as f64),
                )
            }
            None => (None, None, None),
        })
        .collect()
}

/// Runs every step, each with a fresh server and fresh workers.
pub fn run(cfg: &ScaleConfig, header: ReportHeader) -> Result<ScaleReport, MeshBenchError> {
    if cfg.workers.is_empty() || cfg.workers.contains(&0) || cfg.in_flight == 0 {
        return Err(MeshBenchError::Config(
            "every worker count and --in-flight must be at least 1".to_owned(),
        ));
    }
    if cfg.max_batch == 0 || cfg.duration.is_zero() || cfg.cost.is_zero() {
        return Err(MeshBenchError::Config(
            "--max-batch, --duration and --cost must be above zero".to_owned(),
        ));
    }
    let deadline_ms = u64::try_from(cfg.timeout.as_millis()).unwrap_or(u64::MAX);
    let request = serde_json::to_vec(&ClassifyRequest::new(
        "scale-bench",
        vec![PROMPT.to_owned()],
        deadline_ms,
    ))
    .map(Bytes::from)
    .map_err(|e| MeshBenchError::Config(format!("cannot encode the request: {e}")))?;
    let spec = WorkerSpec {
        bin: cfg.worker_bin.clone(),
        pool: POOL.to_owned(),
        cost: cfg.cost,
        max_batch: cfg.max_batch,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MeshBenchError::Runtime)?;
    let measured = block_on_interruptible(&runtime, async {
        let mut measured = Vec::new();
        for &n in &cfg.workers {
            measured.push(step(cfg, &spec, n, &request).await?);
        }
        Ok(measured)
    })?;
    let points: Vec<(usize, f64)> = measured
        .iter()
        .map(|m| (m.workers, m.throughput_rps))
        .collect();
    let steps = measured
        .into_iter()
        .zip(scaling(&points))
        .map(|(mut step, (speedup, efficiency, ideal))| {
            step.speedup = speedup;
            step.efficiency = efficiency;
            step.ideal_rps = ideal;
            step
        })
        .collect();
    let mut worker_command = vec![cfg.worker_bin.display().to_string()];
    worker_command.extend(spec.args("URL"));
    Ok(ScaleReport {
        header,
        subject: wire::classify_subject(POOL),
        worker_command: super::shell_command(worker_command),
        cost_ms: cfg.cost.as_secs_f64() * 1000.0,
        max_batch: cfg.max_batch,
        in_flight: cfg.in_flight,
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        steps,
        budget_efficiency: BUDGET_EFFICIENCY,
    })
}

/// One worker count: server, workers, warm-up, measurement; all stopped when it returns (or is
/// dropped).
async fn step(
    cfg: &ScaleConfig,
    spec: &WorkerSpec,
    workers: usize,
    request: &Bytes,
) -> Result<ScaleStep, MeshBenchError> {
    if cfg.progress {
        eprintln!("bench-mesh scale: {workers} worker(s): starting");
    }
    let server = NatsServer::start()?;
    let url = server.url();
    let fleet = Fleet::start(spec, &url, workers, cfg.ready_within)?;
    let client = connect(&url, "bench-mesh/scale-client", cfg.timeout).await?;
    let subject = wire::classify_subject(POOL);
    if cfg.progress {
        eprintln!(
            "bench-mesh scale: {workers} worker(s) ready; warm-up {}, measuring {} with {} in flight",
            humantime::format_duration(cfg.warmup),
            humantime::format_duration(cfg.duration),
            cfg.in_flight
        );
    }
    let start = Instant::now();
    let window = (start + cfg.warmup, start + cfg.warmup + cfg.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.in_flight {
        let (client, subject, request) = (client.clone(), subject.clone(), request.clone());
        let mut tally = Tally::new()?;
        tasks.spawn(async move {
            while Instant::now() < window.1 {
                let sent = Instant::now();
                let result = client.request(subject.clone(), request.clone()).await;
                let done = Instant::now();
                if done >= window.0 && done < window.1 {
                    tally.record(result, done - sent);
                }
            }
            tally
        });
    }
    let mut total = Tally::new()?;
    while let Some(done) = tasks.join_next().await {
        let tally = done.map_err(|e| MeshBenchError::Nats(format!("a client task failed: {e}")))?;
        total.merge(tally)?;
    }
    drop(client);
    drop(fleet);
    drop(server);
    let mut replies_per_worker: Vec<u64> = total.per_worker.into_values().collect();
    replies_per_worker.sort_unstable_by(|a, b| b.cmp(a));
    let completed = total.latency.len();
    Ok(ScaleStep {
        workers,
        completed,
        throughput_rps: completed as f64 / cfg.duration.as_secs_f64(),
        ideal_rps: None,
        ceiling_rps: cfg.ceiling_rps(workers),
        speedup: None,
        efficiency: None,
        latency: Latency::of(&total.latency),
        errors: total.errors,
        replies_per_worker,
    })
}

/// Just the field of a reply that says who answered.
#[derive(Debug, Deserialize)]
struct Answerer {
    worker: String,
}

/// One client loop's results.
#[derive(Debug)]
struct Tally {
    latency: hdrhistogram::Histogram<u64>,
    errors: Errors,
    per_worker: HashMap<String, u64>,
}

impl Tally {
    fn new() -> Result<Self, MeshBenchError> {
        Ok(Self {
            latency: histogram()?,
            errors: Errors::new(),
            per_worker: HashMap::new(),
        })
    }

    fn record(
        &mut self,
        result: Result<async_nats::Message, async_nats::RequestError>,
        took: Duration,
    ) {
        let msg = match result {
            Ok(msg) => msg,
            Err(e) => return *self.errors.entry(request_error_kind(&e)).or_default() += 1,
        };
        if let Some(kind) = service_error(&msg) {
            return *self.errors.entry(kind).or_default() += 1;
        }
        match serde_json::from_slice::<Answerer>(&msg.payload) {
            Ok(a) => {
                *self.per_worker.entry(a.worker).or_default() += 1;
                self.latency.saturating_record(micros(took));
            }
            Err(_) => *self.errors.entry("bad reply".to_owned()).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Self) -> Result<(), MeshBenchError> {
        self.latency.add(&other.latency)?;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, n) in other.per_worker {
            *self.per_worker.entry(k).or_default() += n;
        }
        Ok(())
    }
}

impl ScaleReport {
    /// The report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        self.header
            .write_markdown(out, "Worker scaling (simulated fixed-cost model)")?;
        writeln!(
            out,
            "- per step: a fresh nats-server and N × `{}`",
            self.worker_command
        )?;
        writeln!(
            out,
            "- load: closed loop, {} requests in flight on `{}` (one prompt each), one client \
             connection on a current-thread runtime; warm-up {} s, then {} s measured",
            self.in_flight, self.subject, self.warmup_s, self.duration_s
        )?;
        writeln!(
            out,
            "- model: sleeps {} ms per forward pass, at most {} text(s) per pass\n",
            self.cost_ms, self.max_batch
        )?;
        writeln!(
            out,
            "| workers | req/s | ideal req/s | ceiling req/s | speed-up | efficiency | p50 ms \
             | p99 ms | errors | replies per worker (min–max) |"
        )?;
        writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")?;
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
        };
        for s in &self.steps {
            let spread = match (s.replies_per_worker.last(), s.replies_per_worker.first()) {
                (Some(min), Some(max)) => {
                    format!("{min}–{max} over {}", s.replies_per_worker.len())
                }
                _ => "none".to_owned(),
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.workers,
                fmt_rate(s.throughput_rps),
                s.ideal_rps.map_or_else(|| "n/a".to_owned(), fmt_rate),
                fmt_rate(s.ceiling_rps),
                opt(s.speedup, 2),
                opt(s.efficiency, 3),
                fmt_ms(s.latency.p50_us),
                fmt_ms(s.latency.p99_us),
                fmt_errors(&s.errors),
                spread
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Ideal = the first step's req/s per worker × workers (linear); ceiling = min(workers × \
             max-batch, in-flight) / cost. Speed-up is over the first step's req/s per worker."
        )?;
        if let (Some(first), Some(last)) = (self.steps.first(), self.steps.last())
            && let Some(eff) = last.efficiency.filter(|_| self.steps.len() > 1)
        {
            let verdict = if eff >= self.budget_efficiency {
                "meets"
            } else {
                "misses"
            };
            writeln!(
                out,
                "\n{} → {} workers: efficiency {eff:.3}; {verdict} the budget (≥ {}× linear, \
                     DESIGN.md).",
                first.workers, last.workers, self.budget_efficiency
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
    fn efficiency_is_speedup_over_workers() {
        let s = scaling(&[(1, 50.0), (2, 100.0), (4, 190.0), (8, 340.0)]);
        let speedups: Vec<f64> = s.iter().map(|x| x.0.unwrap()).collect();
        assert_eq!(speedups, vec![1.0, 2.0, 3.8, 6.8]);
        let eff: Vec<f64> = s.iter().map(|x| x.1.unwrap()).collect();
        assert_eq!(eff, vec![1.0, 1.0, 0.95, 0.85]);
        assert_eq!(s[3].2, Some(400.0));
    }

    #[test]
    fn scaling_is_relative_to_the_first_step_per_worker() {
        let s = scaling(&[(2, 100.0), (8, 400.0)]);
        assert_eq!(s[0], (Some(2.0), Some(1.0), Some(100.0)));
        assert_eq!(s[1], (Some(8.0), Some(1.0), Some(400.0)));
        assert_eq!(scaling(&[(1, 0.0), (2, 10.0)])[1], (None, None, None));
    }

    #[test]
    fn the_ceiling_is_capped_by_requests_in_flight() {
        let mut cfg = ScaleConfig::new("w");
        assert!((cfg.ceiling_rps(8) - 400.0).abs() < 1e-9);
        cfg.in_flight = 4;
        assert!((cfg.ceiling_rps(8) - 200.0).abs() < 1e-9);
    }
}
