//! `bench-mesh`: the NATS mesh benchmarks (reports, not pass/fail tests): the classify hop
//! against an instant responder, and classifier-worker scaling with the simulated model.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use routemesh_loadtest::mesh_bench::{
    self, ReportHeader,
    hop::{self, ClientRuntime, HopConfig},
    scale::{self, ScaleConfig},
};
use serde::Serialize;

/// Benchmark the routemesh NATS mesh. Each subcommand starts its own nats-server on a free
/// loopback port, prints a markdown report on stdout (date, CPU, cores, command line,
/// nats-server version) and, with --json, writes it as JSON too. Progress goes to stderr.
/// See loadtest/README.md ("Mesh benchmarks") and scripts/bench-mesh.sh.
#[derive(Debug, Parser)]
#[command(name = "bench-mesh", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Latency and req/s of the classify hop on the bus alone (instant responder).
    ///
    /// Request -> nats-server -> an in-process responder (own connection and thread, queue group)
    /// that answers at once with a canned ClassifyReply (one 384-float embedding) -> back.
    /// Latency percentiles (p50/p90/p99/p99.9/max) per concurrency level, and req/s with that
    /// many requests in flight on one client connection.
    Hop(HopArgs),
    /// Throughput with 1, 2, 4, 8 classifier-workers running a simulated fixed-cost model.
    ///
    /// For each worker count: a fresh nats-server and that many `classifier-worker serve --pool
    /// scale --simulated-cost COST --max-batch B --max-wait 0ms` processes (each waited for
    /// until it prints `classifier-worker ready:`, all killed after the step), driven by a
    /// closed loop of --in-flight requests for --duration after --warmup. Reports req/s,
    /// latency, errors, speed-up and efficiency (speed-up / workers) against the first worker
    /// count, and the ideal (linear) line.
    Scale(ScaleArgs),
}

#[derive(Debug, clap::Args)]
struct HopArgs {
    /// Measured requests per concurrency level.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    requests: usize,
    /// Unrecorded warm-up requests per concurrency level.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    warmup: usize,
    /// Requests in flight, comma-separated; one measurement each (1 = sequential latency).
    #[arg(long, value_name = "C,..", default_value = "1,64", value_parser = mesh_bench::parse_counts)]
    concurrency: ::std::vec::Vec<usize>,
    /// The client's tokio runtime: current-thread (lower latency here, see FACTS.md) or
    /// multi-thread.
    #[arg(long, value_name = "KIND", default_value = "current-thread")]
    runtime: ClientRuntime,
    /// Per-request timeout.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// The classifier-worker binary, e.g. target/release/classifier-worker.
    #[arg(long, value_name = "PATH")]
    worker_bin: PathBuf,
    /// Worker counts, comma-separated; one step each, compared with the first.
    #[arg(long, value_name = "N,..", default_value = "1,2,4,8", value_parser = mesh_bench::parse_counts)]
    workers: ::std::vec::Vec<usize>,
    /// Simulated time per forward pass (the worker's --simulated-cost).
    #[arg(long, value_name = "DUR", default_value = "20ms", value_parser = humantime::parse_duration)]
    cost: Duration,
    /// Most texts per forward pass (the worker's --max-batch; --max-wait is 0ms).
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_batch: usize,
    /// Measured time per step.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unrecorded time per step before measuring.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Requests in flight (closed loop).
    #[arg(long, value_name = "N", default_value_t = 64)]
    in_flight: usize,
    /// Per-request timeout (also the request's deadline).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

// Each benchmark builds its own runtimes (the hop's client runtime is a flag).
fn main() -> ExitCode {
    let command = mesh_bench::shell_command(std::env::args());
    let cli = Cli::parse();
    let header = ReportHeader::detect(command);
    let (markdown, json, path) = match cli.command {
        Command::Hop(a) => {
            let cfg = HopConfig {
                requests: a.requests,
                warmup: a.warmup,
                concurrency: a.concurrency,
                runtime: a.runtime,
                timeout: a.timeout,
                progress: true,
            };
            match hop::run(&cfg, header) {
                Ok(r) => (r.to_markdown(), to_json(&r), a.json),
                Err(e) => return fail(&e),
            }
        }
        Command::Scale(a) => {
            let cfg = ScaleConfig {
                workers: a.workers,
                cost: a.cost,
                max_batch: a.max_batch,
                duration: a.duration,
                warmup: a.warmup,
                in_flight: a.in_flight,
                timeout: a.timeout,
                progress: true,
                ..ScaleConfig::new(a.worker_bin)
            };
            match scale::run(&cfg, header) {
                Ok(r) => (r.to_markdown(), to_json(&r), a.json),
                Err(e) => return fail(&e),
            }
        }
    };
    if let Some(path) = path {
        let written = json.and_then(|json| std::fs::write(&path, json + "\n"));
        if let Err(e) = written {
            eprintln!("bench-mesh: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    print!("{markdown}");
    ExitCode::SUCCESS
}

fn to_json(report: &impl Serialize) -> std::io::Result<String> {
    serde_json::to_string_pretty(report).map_err(std::io::Error::other)
}

fn fail(e: &mesh_bench::MeshBenchError) -> ExitCode {
    eprintln!("bench-mesh: {e}");
    match e {
        // As a shell reports a command stopped by a signal.
        mesh_bench::MeshBenchError::Interrupted => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    }
}
