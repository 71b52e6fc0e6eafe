//! The semantic cache benchmark (a report, not a pass/fail test): lookup latency and recall@1
//! against exact search at several sizes in one shard ([`sized`]), insert throughput with and
//! without the sled store, memory per entry, and memory under concurrent churn with eviction
//! ([`churn`]), all through the public `routemesh_cache::Cache` handle, as the gateway uses it.
//!
//! Every case runs in a child process of its own (`bench-cache --case JSON`), so that its RSS
//! is not flattered or inflated by what the allocator kept from an earlier case, and a case
//! that runs out of memory or time loses only itself. The parent collects each case's JSON
//! result and rewrites the report after every case ([`report`]).

pub mod churn;
pub mod data;
pub mod paraphrase;
pub mod plot;
pub mod report;
pub mod sized;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use hdrhistogram::Histogram;
use routemesh_cache::{IndexParams, ShardStats};
use serde::{Deserialize, Serialize};

pub use self::report::Report;

/// Default folder of the report.
pub const DEFAULT_REPORT_DIR: &str = "loadtest/reports/cache";
/// Where the replay benchmark caches its embeddings: the default source of real vectors.
pub const DEFAULT_EMBEDDINGS_DIR: &str = ".cache/replay";
/// Highest latency a histogram tracks: 10 minutes, in microseconds.
const MAX_MICROS: u64 = 600_000_000;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum CacheBenchError {
    #[error("invalid benchmark settings: {0}")]
    Config(String),
    #[error("embeddings `{path}`: {detail}")]
    Data { path: PathBuf, detail: String },
    #[error("the cache did not start: {0}")]
    Start(#[from] routemesh_cache::CacheError),
    #[error("the cache did not answer stats (down or too slow) {0} times in a row")]
    Barrier(usize),
    #[error("cannot create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("cannot draw the plot: {0}")]
    Plot(String),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The index parameters of a case (a serialisable mirror of [`IndexParams`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexSpec {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub flat_below: usize,
    /// Candidates of a flat search rescored exactly (reports older than the sign-bit codes
    /// scanned every vector exactly: read as 0).
    #[serde(default)]
    pub rerank: usize,
}

impl IndexSpec {
    pub fn params(&self) -> IndexParams {
        IndexParams {
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            flat_below: self.flat_below,
            rerank: self.rerank,
        }
    }
}

/// One case, run in a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CaseSpec {
    Sized(sized::SizedSpec),
    Churn(churn::ChurnSpec),
}

impl CaseSpec {
    pub fn label(&self) -> String {
        match self {
            CaseSpec::Sized(s) => s.label(),
            CaseSpec::Churn(c) => format!(
                "churn {} shards × {} entries, {} tasks",
                c.shards, c.capacity, c.tasks
            ),
        }
    }
}

/// What a case measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CaseOutcome {
    Sized(Box<sized::SizedResult>),
    Churn(Box<churn::ChurnResult>),
}

/// Runs one case in this process (the child's side).
pub async fn run_case(spec: &CaseSpec) -> Result<CaseOutcome, CacheBenchError> {
    Ok(match spec {
        CaseSpec::Sized(s) => CaseOutcome::Sized(Box::new(sized::run(s).await?)),
        CaseSpec::Churn(c) => CaseOutcome::Churn(Box::new(churn::run(c).await?)),
    })
}

/// Runs every case in a child process of `exe` (this binary, with `--case`), in order, and
/// rewrites the report in `out` after each one. A failed case is recorded as failed.
pub fn run_all(
    exe: &Path,
    cases: &[CaseSpec],
    mut report: Report,
    out: &Path,
) -> Result<Report, CacheBenchError> {
    std::fs::create_dir_all(out).map_err(|source| CacheBenchError::Write {
        path: out.to_owned(),
        source,
    })?;
    for (n, case) in cases.iter().enumerate() {
        let label = case.label();
        eprintln!("==> case {}/{}: {label}", n + 1, cases.len());
        let started = Instant::now();
        match run_child(exe, case) {
            Ok(CaseOutcome::Sized(r)) => report.sized.push(*r),
            Ok(CaseOutcome::Churn(r)) => report.churn = Some(*r),
            Err(detail) => {
                eprintln!("==> case failed: {detail}");
                report.failed.push(report::Failed {
                    case: label,
                    detail,
                });
            }
        }
        eprintln!("==> case done in {:.0} s", started.elapsed().as_secs_f64());
        report.write(out)?;
    }
    Ok(report)
}

fn run_child(exe: &Path, case: &CaseSpec) -> Result<CaseOutcome, String> {
    let json = serde_json::to_string(case).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg("--case")
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", exe.display()))?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("the case's process exited with {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).map_err(|e| format!("unreadable case result: {e}"))
}

/// Writes a case's outcome as one JSON line on stdout (the child's side).
pub fn print_outcome(outcome: &CaseOutcome) -> Result<(), CacheBenchError> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, outcome)?;
    writeln!(stdout)?;
    Ok(())
}

/// The shards' stats summed (`available` only if all shards answered).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsSum {
    pub available: bool,
    pub entries: usize,
    pub bytes: u64,
    pub index_size: usize,
    pub tombstones: usize,
    pub rebuilds: u64,
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub dropped: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub restarts: u64,
}

impl StatsSum {
    pub fn of(stats: &[ShardStats]) -> StatsSum {
        let mut s = StatsSum {
            available: !stats.is_empty(),
            ..StatsSum::default()
        };
        for st in stats {
            s.available &= st.available;
            s.entries += st.entries;
            s.bytes += st.bytes;
            s.index_size += st.index_size;
            s.tombstones += st.tombstones;
            s.rebuilds += st.rebuilds;
            s.hits += st.hits;
            s.misses += st.misses;
            s.inserts += st.inserts;
            s.dropped += st.dropped;
            s.evictions += st.evictions;
            s.expirations += st.expirations;
            s.restarts += st.restarts;
        }
        s
    }
}

/// `cache.stats()` as a barrier: every shard has applied the inserts sent before. Retries a
/// few times if a shard did not answer (busy past the handle's admin timeout).
pub async fn barrier(cache: &routemesh_cache::Cache) -> Result<StatsSum, CacheBenchError> {
    const TRIES: usize = 5;
    for _ in 0..TRIES {
        let s = StatsSum::of(&cache.stats().await);
        if s.available {
            return Ok(s);
        }
    }
    Err(CacheBenchError::Barrier(TRIES))
}

/// The 1-minute load average (`/proc/loadavg`), or `unknown`: other work on the machine moves
/// the numbers, so every case records it when it ends.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A latency histogram in microseconds.
pub fn histogram() -> Result<Histogram<u64>, CacheBenchError> {
    Ok(Histogram::new_with_bounds(1, MAX_MICROS, 3)?)
}

/// Latency summary of one histogram, in milliseconds; `None` where nothing was recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |q: f64| Some(h.value_at_quantile(q) as f64 / 1000.0);
        Latency {
            count: h.len(),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: Some(h.max() as f64 / 1000.0),
            mean_ms: Some(h.mean() / 1000.0),
        }
    }
}

/// Records `d` in `h` (clamped to the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: std::time::Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS);
    h.saturating_record(us.clamp(1, MAX_MICROS));
}

/// Progress of a long loop on stderr: done/total, rate and ETA, at most every few seconds.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    started: Instant,
    last: Instant,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new(label: impl Into<String>, total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.into(),
            total,
            started: now,
            last: now,
        }
    }

    pub fn tick(&mut self, done: usize) {
        if self.last.elapsed() >= Self::EVERY || done >= self.total {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-9);
            let rate = done as f64 / secs;
            let eta = if rate > 0.0 {
                (self.total.saturating_sub(done)) as f64 / rate
            } else {
                f64::INFINITY
            };
            eprintln!(
                "    [{}] {done}/{} inserted ({:.0}%), {rate:.0}/s, {secs:.0} s so far, ETA {eta:.0} s",
                self.label,
                self.total,
                100.0 * done as f64 / self.total.max(1) as f64,
            );
        }
    }
}
