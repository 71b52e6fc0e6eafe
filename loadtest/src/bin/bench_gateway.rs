//! `bench-gateway`: measures the gateway's per-stage latency and the latency it adds over
//! calling the upstream directly (a benchmark with a report, not a pass/fail test).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use routemesh_loadtest::bench::{self, BenchConfig, DEFAULT_PROMPTS, HostInfo, Report};

/// Benchmark the routemesh gateway against a (fake) upstream called directly.
///
/// Sends the same prompts to GATEWAY/v1/chat/completions and DIRECT/v1/chat/completions,
/// interleaved in alternating batches, and prints a markdown report on stdout: per-stage
/// latency from the gateway's `Server-Timing` header (classify, decide, upstream, total),
/// end-to-end latency of both, the latency the gateway adds, and its own overhead.
/// Progress goes to stderr. See loadtest/README.md and scripts/bench-gateway.sh.
#[derive(Debug, Parser)]
#[command(name = "bench-gateway", version, verbatim_doc_comment)]
struct Cli {
    /// Gateway base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    gateway: String,
    /// Base URL of the upstream to call directly, e.g. http://127.0.0.1:9103.
    #[arg(long, value_name = "URL")]
    direct: String,
    /// Model name sent to the direct upstream.
    #[arg(long, value_name = "NAME", default_value = "llama-3.2-1b")]
    direct_model: String,
    /// Model name sent to the gateway (a router alias, or a concrete model for passthrough).
    #[arg(long, value_name = "NAME", default_value = "auto")]
    model: String,
    /// Measured requests per target.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    requests: usize,
    /// Unrecorded warm-up requests per target.
    #[arg(long, value_name = "N", default_value_t = 100)]
    warmup: usize,
    /// Requests in flight at once (closed loop).
    #[arg(long, value_name = "C", default_value_t = 1)]
    concurrency: usize,
    /// Requests per target per batch [default: max(100, 10 x concurrency)].
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// A prompt (repeatable; cycled) [default: a greeting, a math and a coding question].
    #[arg(long = "prompt", value_name = "TEXT")]
    prompts: Vec<String>,
    /// Per-request timeout, e.g. 60s.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

// One thread for the client leaves the other cores to the gateway and the upstreams.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let command = bench::shell_command(std::env::args());
    let cli = Cli::parse();
    let prompts = if cli.prompts.is_empty() {
        DEFAULT_PROMPTS.iter().map(|p| (*p).to_owned()).collect()
    } else {
        cli.prompts
    };
    let cfg = BenchConfig {
        gateway: cli.gateway,
        direct: cli.direct,
        gateway_model: cli.model,
        direct_model: cli.direct_model,
        requests: cli.requests,
        warmup: cli.warmup,
        concurrency: cli.concurrency,
        batch: cli.batch,
        prompts,
        timeout: cli.timeout,
        progress: true,
    };
    let measured = match bench::run(&cfg).await {
        Ok(measured) => measured,
        Err(e) => {
            eprintln!("bench-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::new(&cfg, &measured, HostInfo::detect(), command);
    if let Some(path) = &cli.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(path, json + "\n"));
        if let Err(e) = written {
            eprintln!("bench-gateway: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    print!("{}", report.to_markdown());
    ExitCode::SUCCESS
}
