//! `fake-upstream`: runs a FAKE OpenAI-compatible upstream (a test fixture, not a model):
//! `routemesh_test_support::fake` behind a command line.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use routemesh_test_support::fake::{self, FakeConfig};

/// A FAKE OpenAI-compatible upstream for tests and load benchmarks. It is not a model: it answers
/// chat completions with canned words ("[NAME] token1 token2 ...") or echoes the prompt, with
/// controllable latency, token rate and failures.
///
/// Endpoints: POST /v1/chat/completions (JSON or SSE with "stream": true), GET /v1/models,
/// GET /healthz, GET /stats ({"requests": N}). Every response has the header
/// `x-fake-upstream: NAME`. After binding it prints one line,
/// `fake-upstream listening on http://IP:PORT`, to stdout.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream", version, verbatim_doc_comment)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (read it from the stdout line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,
    /// Identity of this fake: sent as `x-fake-upstream` and as the first word of canned replies.
    #[arg(long, value_name = "NAME", default_value = "fake")]
    name: String,
    /// A model this fake serves (repeatable). If any are given, other models get HTTP 404
    /// `model_not_found`; if none, every model is accepted.
    #[arg(long = "served-model", value_name = "NAME")]
    served_models: Vec<String>,
    /// Time before the first byte of each chat response, e.g. 0ms, 20ms, 1.5s.
    #[arg(long, value_name = "DUR", default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Tokens per second: streamed chunks are spaced 1/F s; non-streaming replies wait
    /// tokens/F s more. 0 = unlimited.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = non_negative)]
    tokens_per_sec: f64,
    /// Words in a canned reply, capped by the request's max_tokens / max_completion_tokens.
    #[arg(long, value_name = "N", default_value_t = 16)]
    reply_tokens: u32,
    /// Fraction of valid requests, in [0, 1], answered with HTTP 500 (`server_error`).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = unit_interval)]
    error_rate: f64,
    /// Seed of the RNG drawing injected failures, so runs are reproducible.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Reply with the text of the last user message instead of canned words.
    #[arg(long)]
    echo: bool,
    /// Answer the first N chat requests with HTTP STATUS, then normally: `N:STATUS`,
    /// e.g. `2:503`.
    #[arg(long, value_name = "N:STATUS", value_parser = count_status)]
    fail_first: Option<(u32, u16)>,
    /// The first N streamed answers break after their headers, before any body byte.
    #[arg(long, value_name = "N", default_value_t = 0)]
    break_first_streams: u32,
}

fn count_status(s: &str) -> Result<(u32, u16), String> {
    let (n, status) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not N:STATUS"))?;
    let n = n.parse().map_err(|e| format!("count `{n}`: {e}"))?;
    let status = status
        .parse()
        .map_err(|e| format!("status `{status}`: {e}"))?;
    Ok((n, status))
}

fn non_negative(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number >= 0"))
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not within [0, 1]"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = FakeConfig {
        name: cli.name,
        served_models: cli.served_models,
        latency: cli.latency,
        tokens_per_sec: cli.tokens_per_sec,
        reply_tokens: cli.reply_tokens,
        error_rate: cli.error_rate,
        seed: cli.seed,
        echo: cli.echo,
        break_stream_after: None,
        fail_first: cli.fail_first,
        break_first_streams: cli.break_first_streams,
    };
    if let Err(e) = cfg.validate() {
        eprintln!("fake-upstream: {e}");
        return ExitCode::from(64);
    }
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fake-upstream: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let announced = listener.local_addr().and_then(|addr| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "fake-upstream listening on http://{addr}")?;
        out.flush()
    });
    if let Err(e) = announced {
        eprintln!("fake-upstream: cannot announce the address: {e}");
        return ExitCode::FAILURE;
    }
    match fake::serve(cfg, listener).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}
