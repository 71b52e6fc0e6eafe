//! The chaos suite (`chaos`; `scripts/chaos.sh` runs it in CI): each scenario starts the real
//! binaries (the gateway `routemesh`, `classifier-worker`, `nats-server`, and loadtest's FAKE
//! upstreams — test fixtures, not models), does something hostile to them and checks the issue 16
//! targets:
//!
//! - [`fuzz`]: structured and byte-level HTTP fuzzing: no panic, no 5xx of the gateway's own,
//!   every 4xx in OpenAI's error shape, bounded RSS;
//! - [`slowloris`]: 2,000 slow connections against a gateway with a small file limit while
//!   `/healthz` is probed;
//! - [`kill9`]: SIGKILL of the gateway during feedback and cache fills, then a restart that must
//!   lose nothing acknowledged;
//! - [`nats_outage`]: NATS killed and restarted under load on two gateways, feedback given during
//!   the outage applied exactly once on both;
//! - [`worker_kill`]: classifier workers SIGKILLed under 20 req/s;
//! - [`upstream`]: an upstream that stalls, errors and dies mid-stream, and the fallback.
//!
//! Every scenario writes `<report>/<name>.md` and `.json` ([`report`]) with its figures and the
//! targets met or missed; the binary exits non-zero when any is missed.

pub mod client;
pub mod configs;
pub mod fuzz;
pub mod kill9;
pub mod load;
pub mod nats_outage;
pub mod procs;
pub mod report;
pub mod slowloris;
pub mod upstream;
pub mod upstream_fixture;
pub mod worker_kill;

use std::path::{Path, PathBuf};
use std::time::Duration;

use self::report::ScenarioReport;

/// Why a scenario could not run (as opposed to a run that missed a target).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{what} did not start: {detail}")]
    Start { what: String, detail: String },
    #[error("{0}")]
    Setup(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

impl ChaosError {
    pub fn setup(message: impl Into<String>) -> Self {
        Self::Setup(message.into())
    }
}

/// A scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    Fuzz,
    Slowloris,
    Kill9,
    Nats,
    Worker,
    Upstream,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 6] = [
        Self::Fuzz,
        Self::Slowloris,
        Self::Kill9,
        Self::Nats,
        Self::Worker,
        Self::Upstream,
    ];

    /// The name on the command line and of the report files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fuzz => "fuzz",
            Self::Slowloris => "slowloris",
            Self::Kill9 => "kill9",
            Self::Nats => "nats",
            Self::Worker => "worker",
            Self::Upstream => "upstream",
        }
    }

    /// One line on what it does (for `--help` and the report's title).
    pub fn title(self) -> &'static str {
        match self {
            Self::Fuzz => "HTTP fuzzing (structured and byte-level)",
            Self::Slowloris => "slow connections against a small file limit",
            Self::Kill9 => "kill -9 of the gateway during feedback and cache fills",
            Self::Nats => "NATS killed and restarted under load, feedback during the outage",
            Self::Worker => "classifier workers SIGKILLed under load",
            Self::Upstream => "an upstream that stalls, errors and dies mid-stream",
        }
    }

    /// `fuzz`, `slowloris`, ... or `all`, comma-separated.
    pub fn parse_list(s: &str) -> Result<Vec<Scenario>, String> {
        let mut out = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "all" {
                out.extend(Self::ALL);
                continue;
            }
            let found = Self::ALL.into_iter().find(|sc| sc.name() == item);
            match found {
                Some(sc) => out.push(sc),
                None => {
                    let names: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
                    return Err(format!(
                        "unknown scenario `{item}` (known: {}, all)",
                        names.join(", ")
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err("name at least one scenario, or `all`".to_owned());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// The binaries a scenario starts.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The gateway, `routemesh`.
    pub gateway: PathBuf,
    /// `classifier-worker`.
    pub worker: PathBuf,
    /// loadtest's `fake-upstream` (a FAKE upstream: a test fixture).
    pub fake: PathBuf,
    /// `nats-server` (Debian package).
    pub nats: PathBuf,
    /// This binary, for the controllable FAKE upstream (`chaos upstream-fixture`).
    pub chaos: PathBuf,
}

/// What every scenario is given.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bins: Bins,
    /// The MiniLM folder (embedded classifier), absolute.
    pub model_dir: PathBuf,
    /// Where the reports go.
    pub report_dir: PathBuf,
    /// Logs and stores, one folder per scenario (emptied when it starts).
    pub work_dir: PathBuf,
    /// The command line, quoted, for the reports.
    pub command: String,
    /// Fuzzed requests.
    pub cases: u64,
    /// Seed of the fuzzer and of every random choice.
    pub seed: u64,
    /// Slow connections of the slowloris scenario.
    pub slow_connections: usize,
    /// How long the slow connections are held.
    pub hold: Duration,
    /// The gateway's file limit in the slowloris scenario (`ulimit -n`).
    pub fd_limit: u32,
    /// Most RSS growth the fuzz scenario allows, in MiB.
    pub rss_growth_mib: u64,
}

impl Settings {
    /// The scenario's own folder under the work dir, emptied.
    pub fn scenario_dir(&self, scenario: Scenario) -> Result<PathBuf, ChaosError> {
        let dir = self.work_dir.join(scenario.name());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(absolute(&dir))
    }
}

/// `path` made absolute against the current directory (without resolving links).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Runs one scenario to its report (a scenario that could not run reports why).
pub async fn run(scenario: Scenario, settings: &Settings) -> ScenarioReport {
    let started = std::time::Instant::now();
    let mut report = ScenarioReport::new(scenario, &settings.command);
    let result = match scenario {
        Scenario::Fuzz => fuzz::run(settings, &mut report).await,
        Scenario::Slowloris => slowloris::run(settings, &mut report).await,
        Scenario::Kill9 => kill9::run(settings, &mut report).await,
        Scenario::Nats => nats_outage::run(settings, &mut report).await,
        Scenario::Worker => worker_kill::run(settings, &mut report).await,
        Scenario::Upstream => upstream::run(settings, &mut report).await,
    };
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report
}

/// Progress on stderr, prefixed with the scenario.
pub fn progress(scenario: Scenario, message: impl std::fmt::Display) {
    eprintln!("chaos {}: {message}", scenario.name());
}

/// The `q`-quantile (0..=1) of unsorted values, `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * (v.len() - 1) as f64).round() as usize;
    v.get(rank).copied()
}

/// p50, p99 and max of latencies in ms, for a report (`null` when empty).
pub fn latency_summary(ms: &[f64]) -> serde_json::Value {
    let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    serde_json::json!({
        "count": ms.len(),
        "p50_ms": round(quantile(ms, 0.5)),
        "p99_ms": round(quantile(ms, 0.99)),
        "max_ms": round(quantile(ms, 1.0)),
    })
}
