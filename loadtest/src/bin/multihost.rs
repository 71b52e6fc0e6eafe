//! `multihost`: the driver of the multi-host mesh test (scripts/multihost.sh sets up the hosts).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use routemesh_loadtest::mesh_bench::{self, ReportHeader};
use routemesh_loadtest::multihost::report::Report;
use routemesh_loadtest::multihost::workers::{WorkerHost, WorkerSpec};
use routemesh_loadtest::multihost::{self, MultihostConfig};

/// Drive the multi-host mesh test: with a NATS cluster and a gateway (classifier over NATS)
/// already running, start classifier-workers (simulated fixed-cost model) on the worker hosts
/// (`ip netns exec NETNS`), keep --in-flight routed requests (`model: auto`) going to the
/// gateway, measure req/s and latency with each worker count of --counts, then, under the same
/// load, add a worker and SIGTERM the two oldest (they drain). Prints a markdown report on
/// stdout (also --md, and --json).
///
/// Exit status: 0 passed; 1 failed a check (any HTTP error or degraded response, an answer
/// not classified by a worker, a SIGTERM'd worker not exiting 0, or throughput not growing
/// with workers); 2 could not run. Normally started by scripts/multihost.sh, as root.
#[derive(Debug, Parser)]
#[command(name = "multihost", version, verbatim_doc_comment)]
struct Cli {
    /// The gateway's base URL.
    #[arg(long, value_name = "URL")]
    gateway: String,
    /// The classifier-worker binary.
    #[arg(long, value_name = "PATH")]
    worker_bin: PathBuf,
    /// A worker host as NETNS=NATS_URL (the host's own NATS node); repeat for each host.
    /// Workers go to the hosts in turn. NETNS `-` runs workers in this namespace.
    #[arg(long = "worker-host", value_name = "NETNS=URL", required = true)]
    hosts: Vec<WorkerHost>,
    /// A NATS node's monitoring endpoint as NAME=URL (e.g. node-1=http://10.77.0.1:8222):
    /// waited on until the cluster has formed, and its connections listed in the report.
    #[arg(long = "nats-monitor", value_name = "NAME=URL", value_parser = parse_monitor)]
    monitors: Vec<(String, String)>,
    /// The workers' pool (the gateway's classifier.pool).
    #[arg(long, default_value = "multihost")]
    pool: String,
    /// Simulated time per forward pass (the worker's --simulated-cost).
    #[arg(long, value_name = "DUR", default_value = "20ms", value_parser = humantime::parse_duration)]
    cost: Duration,
    /// Most prompts per forward pass (the worker's --max-batch; --max-wait is 0ms).
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_batch: usize,
    /// Worker counts to measure, increasing; the churn phase follows the last.
    #[arg(long, value_name = "N,..", default_value = "1,2,3,4", value_parser = mesh_bench::parse_counts)]
    counts: ::std::vec::Vec<usize>,
    /// Requests in flight (closed loop): 8 per worker at 4 workers, so a worker's queue is
    /// seldom empty although the queue group hands each request to a random member.
    #[arg(long, value_name = "N", default_value_t = 32)]
    in_flight: usize,
    /// Load before the first window (not a phase).
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Wait after a new worker is ready before measuring.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Measured window per worker count.
    #[arg(long, value_name = "DUR", default_value = "8s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Time between the churn phase's events.
    #[arg(long, value_name = "DUR", default_value = "3s", value_parser = humantime::parse_duration)]
    churn_step: Duration,
    /// Least req/s with N workers, as a fraction of N × the first count's req/s per worker.
    #[arg(long, value_name = "F", default_value_t = 0.75)]
    min_efficiency: f64,
    /// Per-request timeout.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Folder for the workers' logs.
    #[arg(long, value_name = "DIR", default_value = ".run/multihost")]
    logs: PathBuf,
    /// Also write the markdown report here.
    #[arg(long, value_name = "PATH")]
    md: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn parse_monitor(s: &str) -> Result<(String, String), String> {
    let (name, url) = s
        .split_once('=')
        .filter(|(n, u)| !n.is_empty() && !u.is_empty())
        .ok_or_else(|| format!("`{s}`: use NAME=URL, e.g. node-1=http://10.77.0.1:8222"))?;
    Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
}

fn main() -> ExitCode {
    let command = mesh_bench::shell_command(std::env::args());
    let cli = Cli::parse();
    let cfg = MultihostConfig {
        gateway: cli.gateway,
        worker: WorkerSpec {
            bin: cli.worker_bin,
            pool: cli.pool,
            cost: cli.cost,
            max_batch: cli.max_batch,
        },
        hosts: cli.hosts,
        monitors: cli.monitors,
        counts: cli.counts,
        in_flight: cli.in_flight,
        warmup: cli.warmup,
        settle: cli.settle,
        window: cli.window,
        churn_step: cli.churn_step,
        min_efficiency: cli.min_efficiency,
        request_timeout: cli.timeout,
        ready_within: Duration::from_secs(20),
        drain_within: Duration::from_secs(15),
        logs: cli.logs,
    };
    if let Err(e) = std::fs::create_dir_all(&cfg.logs) {
        eprintln!("multihost: cannot create {}: {e}", cfg.logs.display());
        return ExitCode::from(2);
    }
    let header = ReportHeader::detect(command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multihost: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let observed = runtime.block_on(multihost::run(&cfg));
    // Workers still running (after an error) are killed as their handles drop, here.
    drop(runtime);
    let observed = match observed {
        Ok(o) => o,
        Err(e) => {
            eprintln!("multihost: {e}");
            return ExitCode::from(2);
        }
    };
    let report = Report::new(&cfg, &observed, header);
    let markdown = report.markdown();
    print!("{markdown}");
    if let Some(path) = &cli.md
        && let Err(e) = std::fs::write(path, &markdown)
    {
        eprintln!("multihost: cannot write {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Some(path) = &cli.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json + "\n"));
        if let Err(e) = written {
            eprintln!("multihost: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
