//! The multi-host mesh test's driver (`multihost`; scripts/multihost.sh builds the hosts): with a
//! NATS cluster and a gateway already running, it starts classifier workers on the worker hosts
//! (network namespaces), keeps a fixed number of routed requests in flight to the gateway, and
//!
//! 1. measures throughput with 1, 2, 3, 4 workers (a window each, after the new worker is ready),
//! 2. under the same load adds a worker and removes two (SIGTERM: each drains and exits),
//!
//! recording every request and every worker event on one clock. The report ([`report`]) gives
//! throughput and latency per phase and the timeline; the run passes only with no HTTP error, no
//! degraded response, every answer classified by a worker, every SIGTERM'd worker exiting 0,
//! and throughput growing with workers.

pub mod load;
pub mod report;
pub mod workers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use self::load::{Load, Sample};
use self::workers::{Stopped, Worker, WorkerHost, WorkerSpec};

/// Why the driver could not run (as opposed to a run that ran and failed its checks).
#[derive(Debug, thiserror::Error)]
pub enum MultihostError {
    #[error("invalid settings: {0}")]
    Config(String),
    #[error("worker: {0}")]
    Worker(String),
    #[error("NATS cluster: {0}")]
    Cluster(String),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("interrupted (SIGINT/SIGTERM); the workers started were killed")]
    Interrupted,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MultihostConfig {
    /// The gateway's base URL, e.g. `http://10.77.0.1:8080`.
    pub gateway: String,
    pub worker: WorkerSpec,
    /// Worker hosts; worker i (1-based) runs on host (i − 1) mod len.
    pub hosts: Vec<WorkerHost>,
    /// NATS monitoring endpoints, `(node name, http://ADDR:8222)`.
    pub monitors: Vec<(String, String)>,
    /// Worker counts to measure, increasing.
    pub counts: Vec<usize>,
    pub in_flight: usize,
    pub warmup: Duration,
    /// After a new worker is ready, before its window starts.
    pub settle: Duration,
    pub window: Duration,
    /// Between the churn phase's events (add, SIGTERM, SIGTERM, end).
    pub churn_step: Duration,
    /// Each count's req/s must be at least this × workers × the first count's req/s per worker.
    pub min_efficiency: f64,
    pub request_timeout: Duration,
    pub ready_within: Duration,
    pub drain_within: Duration,
    /// Worker logs go here.
    pub logs: PathBuf,
}

impl MultihostConfig {
    fn validate(&self) -> Result<(), MultihostError> {
        let bad = |m: &str| Err(MultihostError::Config(m.to_owned()));
        if self.hosts.is_empty() {
            return bad("give at least one --worker-host");
        }
        if self.counts.is_empty() || self.counts.windows(2).any(|w| w[0] >= w[1]) {
            return bad("--counts must be increasing, e.g. 1,2,3,4");
        }
        if self.counts.last().copied().unwrap_or(0) < 2 {
            return bad("--counts must reach at least 2 workers: the churn phase removes two");
        }
        if self.in_flight == 0 || self.window.is_zero() {
            return bad("--in-flight and --window must be positive");
        }
        if !(0.0..=1.0).contains(&self.min_efficiency) {
            return bad("--min-efficiency is a fraction in 0..=1");
        }
        Ok(())
    }
}

/// A time window whose completed requests are summarised together.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    /// Workers serving during the window (for the churn phase, the most at once).
    pub workers: usize,
    /// Whether the scaling check uses it.
    pub scaling: bool,
    #[serde(with = "secs")]
    pub start: Duration,
    #[serde(with = "secs")]
    pub end: Duration,
}

/// Something that happened, on the run's clock.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(with = "secs")]
    pub at: Duration,
    pub what: String,
}

/// How a worker's life went.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerRecord {
    pub id: usize,
    pub netns: String,
    pub nats_url: String,
    #[serde(with = "secs")]
    pub started: Duration,
    #[serde(with = "secs")]
    pub ready: Duration,
    /// When SIGTERM was sent.
    #[serde(with = "secs::option")]
    pub terminated: Option<Duration>,
    /// During the load (the churn phase) or after it.
    pub terminated_under_load: bool,
    pub exit_code: Option<i32>,
    pub drain_ms: Option<u64>,
    pub served: Option<u64>,
}

/// Client connections per NATS node, by name, from `/connz` (with the scaling workers running).
#[derive(Debug, Clone, Serialize)]
pub struct NodeConnections {
    pub node: String,
    pub routes: u64,
    pub clients: Vec<String>,
}

/// Everything the run observed.
#[derive(Debug)]
pub struct Observations {
    pub samples: Vec<Sample>,
    pub phases: Vec<Phase>,
    pub events: Vec<Event>,
    pub workers: Vec<WorkerRecord>,
    pub nodes: Vec<NodeConnections>,
    /// Load from the first request to the last answer.
    pub load_span: (Duration, Duration),
}

/// Runs the scenario; SIGINT/SIGTERM stop it (killing the workers it started).
pub async fn run(cfg: &MultihostConfig) -> Result<Observations, MultihostError> {
    cfg.validate()?;
    tokio::select! {
        result = scenario(cfg) => result,
        () = routemesh_runtime::shutdown_signal() => Err(MultihostError::Interrupted),
    }
}

/// The running workers, the records of all, and the run's clock.
struct Fleet<'a> {
    cfg: &'a MultihostConfig,
    origin: Instant,
    running: Vec<Worker>,
    records: Vec<WorkerRecord>,
    events: Vec<Event>,
}

impl Fleet<'_> {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn event(&mut self, what: impl Into<String>) {
        let what = what.into();
        let at = self.now();
        eprintln!("multihost: [{:7.3} s] {what}", at.as_secs_f64());
        self.events.push(Event { at, what });
    }

    /// Starts the next worker on its host and waits until it is ready.
    async fn add(&mut self) -> Result<(), MultihostError> {
        let id = self.records.len() + 1;
        let host = self.cfg.hosts[(id - 1) % self.cfg.hosts.len()].clone();
        let started = self.now();
        let mut worker = Worker::start(&self.cfg.worker, id, &host, &self.cfg.logs).await?;
        self.event(format!(
            "worker {id} started on {} (pid {}, NATS {})",
            host.netns, worker.pid, host.nats_url
        ));
        worker.ready(self.cfg.ready_within).await?;
        let ready = self.now();
        self.running.push(worker);
        self.event(format!(
            "worker {id} ready ({} serving)",
            self.running.len()
        ));
        self.records.push(WorkerRecord {
            id,
            netns: host.netns,
            nats_url: host.nats_url,
            started,
            ready,
            terminated: None,
            terminated_under_load: false,
            exit_code: None,
            drain_ms: None,
            served: None,
        });
        Ok(())
    }

    /// SIGTERMs the longest-running worker and waits for it to drain and exit.
    async fn remove_oldest(&mut self, under_load: bool) -> Result<(), MultihostError> {
        if self.running.is_empty() {
            return Ok(());
        }
        let worker = self.running.remove(0);
        let id = worker.id;
        self.event(format!(
            "SIGTERM worker {id} on {} (pid {}){}",
            worker.host.netns,
            worker.pid,
            if under_load { ", under load" } else { "" }
        ));
        let sent = self.now();
        let stopped: Stopped = worker.terminate(self.cfg.drain_within).await?;
        self.event(format!(
            "worker {id} drained and exited (code {}) after {} ms; it served {} requests ({} serving)",
            stopped
                .code
                .map_or_else(|| "none: killed by a signal".to_owned(), |c| c.to_string()),
            stopped.drain.as_millis(),
            stopped
                .served
                .map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string()),
            self.running.len()
        ));
        if let Some(r) = self.records.iter_mut().find(|r| r.id == id) {
            r.terminated = Some(sent);
            r.terminated_under_load = under_load;
            r.exit_code = stopped.code;
            r.drain_ms = Some(u64::try_from(stopped.drain.as_millis()).unwrap_or(u64::MAX));
            r.served = stopped.served;
        }
        Ok(())
    }
}

async fn scenario(cfg: &MultihostConfig) -> Result<Observations, MultihostError> {
    let origin = Instant::now();
    let mut fleet = Fleet {
        cfg,
        origin,
        running: Vec::new(),
        records: Vec::new(),
        events: Vec::new(),
    };
    let http = http_client()?;
    if !cfg.monitors.is_empty() {
        wait_for_cluster(&http, &cfg.monitors, Duration::from_secs(20)).await?;
        fleet.event(format!(
            "NATS cluster formed: {} nodes, each routed to the {} others",
            cfg.monitors.len(),
            cfg.monitors.len() - 1
        ));
    }
    fleet.add().await?;
    wait_for_gateway(&http, &cfg.gateway, Duration::from_secs(30)).await?;
    fleet.event("gateway ready (GET /readyz 200)");

    let load = Load::start(&cfg.gateway, cfg.in_flight, cfg.request_timeout, origin)
        .map_err(|e| MultihostError::Gateway(format!("cannot build the HTTP client: {e}")))?;
    let load_start = fleet.now();
    fleet.event(format!(
        "load started: {} routed requests in flight",
        cfg.in_flight
    ));
    tokio::time::sleep(cfg.warmup).await;

    let mut phases = Vec::new();
    for &n in &cfg.counts {
        while fleet.running.len() < n {
            fleet.add().await?;
        }
        tokio::time::sleep(cfg.settle).await;
        let start = fleet.now();
        tokio::time::sleep(cfg.window).await;
        let end = fleet.now();
        let name = format!("{n} worker{}", if n == 1 { "" } else { "s" });
        fleet.event(format!("measured {name}"));
        phases.push(Phase {
            name,
            workers: n,
            scaling: true,
            start,
            end,
        });
    }
    let nodes = if cfg.monitors.is_empty() {
        Vec::new()
    } else {
        connections(&http, &cfg.monitors).await
    };

    // Churn under the same load: add one, then SIGTERM the two oldest (one per host with two
    // hosts), one step apart.
    let most = fleet.running.len() + 1;
    let start = fleet.now();
    tokio::time::sleep(cfg.churn_step).await;
    fleet.add().await?;
    tokio::time::sleep(cfg.churn_step).await;
    fleet.remove_oldest(true).await?;
    tokio::time::sleep(cfg.churn_step).await;
    fleet.remove_oldest(true).await?;
    tokio::time::sleep(cfg.churn_step).await;
    let end = fleet.now();
    phases.push(Phase {
        name: format!(
            "churn: +1 worker, then SIGTERM 2 ({} → {most} → {})",
            most - 1,
            most - 2
        ),
        workers: most,
        scaling: false,
        start,
        end,
    });

    let samples = load.stop().await;
    let load_end = fleet.now();
    fleet.event(format!("load stopped: {} requests sent", samples.len()));
    while !fleet.running.is_empty() {
        fleet.remove_oldest(false).await?;
    }
    Ok(Observations {
        samples,
        phases,
        events: fleet.events,
        workers: fleet.records,
        nodes,
        load_span: (load_start, load_end),
    })
}

fn http_client() -> Result<reqwest::Client, MultihostError> {
    routemesh_runtime::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| MultihostError::Gateway(format!("cannot build the HTTP client: {e}")))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let r = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

/// Waits until every node reports a route to each other node (`/routez`).
async fn wait_for_cluster(
    http: &reqwest::Client,
    monitors: &[(String, String)],
    within: Duration,
) -> Result<(), MultihostError> {
    let until = Instant::now() + within;
    let want = monitors.len() as u64 - 1;
    loop {
        let mut missing = Vec::new();
        for (node, url) in monitors {
            let routes = get_json(http, &format!("{url}/routez"))
                .await
                .map(|v| v["num_routes"].as_u64().unwrap_or(0));
            match routes {
                Ok(n) if n >= want => {}
                Ok(n) => missing.push(format!("{node} has {n} of {want} routes")),
                Err(e) => missing.push(format!("{node}: {e}")),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(MultihostError::Cluster(missing.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `GET {gateway}/readyz` answers 200.
async fn wait_for_gateway(
    http: &reqwest::Client,
    gateway: &str,
    within: Duration,
) -> Result<(), MultihostError> {
    let url = format!("{}/readyz", gateway.trim_end_matches('/'));
    let until = Instant::now() + within;
    loop {
        let last = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            return Err(MultihostError::Gateway(format!(
                "{url} not ready within {}: {last}",
                humantime::format_duration(within)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Client connections and routes per node (best effort: a node that does not answer is listed
/// with none).
async fn connections(
    http: &reqwest::Client,
    monitors: &[(String, String)],
) -> Vec<NodeConnections> {
    let mut out = Vec::new();
    for (node, url) in monitors {
        let connz = get_json(http, &format!("{url}/connz?limit=1024")).await;
        let routez = get_json(http, &format!("{url}/routez")).await;
        let mut clients: Vec<String> = connz
            .ok()
            .and_then(|v| v["connections"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or("(unnamed)");
                let ip = c["ip"].as_str().unwrap_or("?");
                format!("{name} from {ip}")
            })
            .collect();
        clients.sort();
        out.push(NodeConnections {
            node: node.clone(),
            routes: routez
                .ok()
                .and_then(|v| v["num_routes"].as_u64())
                .unwrap_or(0),
            clients,
        });
    }
    out
}

/// Durations as seconds (f64) in the JSON report.
mod secs {
    use std::time::Duration;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub(crate) mod option {
        use std::time::Duration;

        use serde::Serializer;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}
