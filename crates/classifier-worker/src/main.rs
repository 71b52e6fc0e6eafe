//! `classifier-worker`: a pool member that embeds prompts for gateways over
//! NATS. Parses the command line, loads the model, serves, drains on
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use routemesh_classifier_worker::service::{self, ServiceOptions};
use routemesh_classifier_worker::{
    BatchOptions, Batcher, EmbeddingModel, Encoder, EncoderOptions, Replica, SimulatedModel,
    metrics, scorer,
};
use routemesh_common::config::{
    DEFAULT_MAX_TOTAL_TOKENS, EncoderPrecision, MAX_TOTAL_TOKENS, NatsConfig,
};
use routemesh_runtime::{exposition, nats};

/// Exit code for bad flags (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code for a model that cannot be loaded (EX_NOINPUT).
const EXIT_NO_MODEL: u8 = 66;
/// Exit code when NATS cannot be reached (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

/// routemesh classifier worker: embeds prompts for routemesh gateways.
///
/// Joins the pool's queue group on `routemesh.classify.<pool>`; add or
/// remove workers at any time, gateways never need to know how many there
/// are. Registers as the NATS micro service `routemesh-classifier`
/// (`nats micro stats routemesh-classifier`). On SIGTERM or Ctrl-C it stops
/// taking requests, answers the ones it holds, and exits. The offline
/// commands (training heads, evaluations) are `routemesh-tools`.
#[derive(Debug, Parser)]
#[command(name = "classifier-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a pool over NATS.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long,
        env = "ROUTEMESH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// NATS credentials file (.creds).
    #[arg(long, env = "ROUTEMESH_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// CA certificate to trust for NATS TLS (PEM); implies TLS.
    #[arg(long, env = "ROUTEMESH_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate for NATS mutual TLS (PEM); needs --nats-tls-key.
    #[arg(long, env = "ROUTEMESH_NATS_TLS_CERT", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    /// Client key for NATS mutual TLS (PEM).
    #[arg(long, env = "ROUTEMESH_NATS_TLS_KEY", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Pool to serve: the subject token and queue group. Gateways name it in
    /// their `classifier.pool`.
    #[arg(long, default_value = "minilm")]
    pool: String,
    /// Encoder folder (config.json, tokenizer.json, model.safetensors).
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    model_dir: PathBuf,
    /// Tokens in one window: a longer prompt is read in consecutive windows
    /// of at most this many tokens, each scored by the heads.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Most tokens read of one prompt over all its windows (--max-tokens to
    /// 65536); the rest is not read and the prompt is reported
    /// truncated (its tokens still counted).
    #[arg(long, default_value_t = DEFAULT_MAX_TOTAL_TOKENS)]
    max_total_tokens: usize,
    /// Number format of the encoder: auto (the fastest that passes the
    /// accuracy gate on this machine), f32, bf16 or int8.
    #[arg(long, default_value_t = EncoderPrecision::Auto)]
    precision: EncoderPrecision,
    /// Threads of the encoder (one pool, shared with candle's CPU kernels);
    /// default: one per core (or RAYON_NUM_THREADS).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Most texts in one forward pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long a batch waits for more requests before it runs.
    #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
    max_wait: Duration,
    /// Most requests queued; more are refused with a retriable 503.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Model replicas, each on its own thread (CPU: 1 is usually best).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// cpu, cuda:N (build with --features cuda) or metal (--features metal).
    /// Run one worker per GPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// BENCHMARKS ONLY: replace the model by one that sleeps this long per
    /// forward pass and returns fake vectors.
    #[arg(long, value_parser = humantime::parse_duration)]
    simulated_cost: Option<Duration>,
    /// A classifier run on every prompt that asks for it, as NAME=FOLDER: a
    /// trained head (head.json) or an HF classifier (config.json).
    /// Repeatable; gateways name them in `signals.classifiers`.
    #[arg(long = "classifier", value_name = "NAME=FOLDER", value_parser = parse_classifier)]
    classifiers: Vec<(String, PathBuf)>,
    /// Serve Prometheus metrics (batch sizes, queue depth, inference time)
    /// at http://ADDR/metrics, e.g. 127.0.0.1:9465 (port 0: any free port;
    /// the address is printed as `classifier-worker metrics on …`).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROUTEMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(args) = cli.command;
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(serve(args)),
        Err(e) => {
            eprintln!("classifier-worker: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_classifier(s: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or("use NAME=FOLDER")?;
    if !routemesh_common::wire::valid_pool_name(name) {
        return Err(format!("`{name}`: use letters, digits, `-` and `_`"));
    }
    Ok((name.to_owned(), PathBuf::from(dir)))
}

fn device(spec: &str) -> Result<candle_core::Device, String> {
    match spec {
        "cpu" => Ok(candle_core::Device::Cpu),
        "metal" if cfg!(feature = "metal") => {
            candle_core::Device::new_metal(0).map_err(|e| e.to_string())
        }
        "metal" => Err("this build has no Metal support; rebuild with --features metal".into()),
        s if s.starts_with("cuda") => {
            if !cfg!(feature = "cuda") {
                return Err("this build has no CUDA support; rebuild with --features cuda".into());
            }
            let n = s
                .strip_prefix("cuda:")
                .unwrap_or("0")
                .parse::<usize>()
                .map_err(|_| format!("bad device `{s}`; use cuda:N"))?;
            candle_core::Device::new_cuda(n).map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unknown device `{other}`; use cpu, cuda:N or metal"
        )),
    }
}

/// Model replicas and the model's name.
type Loaded = (Vec<Box<dyn EmbeddingModel>>, String);

/// Loads the replicas, or an exit code and a message.
fn load_models(args: &ServeArgs) -> Result<Loaded, (u8, String)> {
    let replicas = args.replicas.max(1);
    if let Some(cost) = args.simulated_cost {
        let models = (0..replicas)
            .map(|_| Box::new(SimulatedModel { cost, dim: 384 }) as Box<dyn EmbeddingModel>)
            .collect();
        return Ok((
            models,
            format!("simulated-{}", humantime::format_duration(cost)),
        ));
    }
    let device = device(&args.device).map_err(|e| (EXIT_USAGE, e))?;
    if let Some(n) = args.threads {
        routemesh_inference::init_threads(usize::from(n)).map_err(|e| (EXIT_USAGE, e))?;
    }
    if !(args.max_tokens..=MAX_TOTAL_TOKENS).contains(&args.max_total_tokens) {
        return Err((
            EXIT_USAGE,
            format!(
                "--max-total-tokens {} is out of range {}..={MAX_TOTAL_TOKENS} (at least --max-tokens)",
                args.max_total_tokens, args.max_tokens
            ),
        ));
    }
    let opts = EncoderOptions {
        max_tokens: args.max_tokens,
        max_total_tokens: args.max_total_tokens,
        precision: args.precision,
    };
    let mut models: Vec<Box<dyn EmbeddingModel>> = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        let encoder = Encoder::load_on(&args.model_dir, &opts, device.clone()).map_err(|e| {
            (EXIT_NO_MODEL, format!("cannot load the model from {}: {e} (scripts/fetch-model.sh installs the default)", args.model_dir.display()))
        })?;
        tracing::info!(
            precision = %encoder.precision_in_use(),
            threads = routemesh_inference::threads(),
            "encoder loaded"
        );
        models.push(Box::new(encoder));
    }
    let name = args
        .model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Ok((models, name))
}

async fn serve(args: ServeArgs) -> ExitCode {
    if !routemesh_common::wire::valid_pool_name(&args.pool) {
        eprintln!(
            "classifier-worker: --pool `{}`: use letters, digits, `-` and `_`",
            args.pool
        );
        return ExitCode::from(EXIT_USAGE);
    }
    // Before the batcher starts, so its first passes are counted.
    if let Some(addr) = args.metrics_listen {
        match exposition::install(addr, metrics::BUCKETS).await {
            Ok(exporter) => {
                println!(
                    "classifier-worker metrics on http://{}/metrics",
                    exporter.local_addr()
                );
                exporter.serve(|| async {});
            }
            Err(e) => {
                eprintln!("classifier-worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (models, model) = match load_models(&args) {
        Ok(m) => m,
        Err((code, message)) => {
            eprintln!("classifier-worker: {message}");
            return ExitCode::from(code);
        }
    };
    let opts = BatchOptions {
        max_batch: args.max_batch,
        max_wait: args.max_wait,
        queue: args.queue,
    };
    let mut replicas = Vec::with_capacity(models.len());
    for model in models {
        let scorers = args
            .classifiers
            .iter()
            .map(|(name, dir)| scorer::load_scorer(name, dir))
            .collect();
        match scorers {
            Ok(scorers) => replicas.push(Replica { model, scorers }),
            Err(message) => {
                eprintln!("classifier-worker: --classifier: {message}");
                return ExitCode::from(EXIT_NO_MODEL);
            }
        }
    }
    let batcher = match Batcher::start_replicas(replicas, opts) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("classifier-worker: cannot start the inference threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = NatsConfig {
        url: args.nats_url.clone(),
        credentials_file: args.nats_creds.clone(),
        tls_ca_file: args.nats_tls_ca.clone(),
        tls_client_cert: args.nats_tls_cert.clone().zip(args.nats_tls_key.clone()),
        require_tls: false,
    };
    let client = match nats::connect(&config, &format!("classifier-worker/{}", args.pool)).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("classifier-worker: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let opts = ServiceOptions {
        pool: args.pool.clone(),
        model,
    };
    match service::run(client, batcher, opts, routemesh_runtime::shutdown_signal()).await {
        Ok(report) => {
            tracing::info!(requests = report.requests, "drained; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("classifier-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
