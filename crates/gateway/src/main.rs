//! `routemesh`: the gateway binary. Parses the command line, loads the
//! config, runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use routemesh_gateway::config_file::{self, LoadError};
use routemesh_gateway::learning::LearningError;
use routemesh_gateway::reload::{Overrides, ReloadSource};
use routemesh_gateway::server::{self, ServeError, ServeOptions};
use routemesh_gateway::tracing_setup::{self, TracingError};

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a missing model file (EX_NOINPUT).
const EXIT_NO_MODEL: u8 = 66;
/// Exit code when NATS cannot be reached at start (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;
/// sysexits EX_CANTCREAT: the learning or cache store cannot be opened
/// (locked by another gateway, or not writable).
const EXIT_CANT_CREATE: u8 = 73;

/// routemesh: a semantic router for LLM traffic.
///
/// Point any OpenAI client at the gateway with `model: "auto"` and each
/// request is answered by the configured model that fits it; a configured
/// model name passes straight through.
#[derive(Debug, Parser)]
#[command(name = "routemesh", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: embedded (encoder in this process) or with a NATS
    /// classifier pool, as `classifier.transport` says.
    ///
    /// Prints `routemesh listening on http://ADDR` once bound and
    /// `routemesh ready` once routing can run (GET /readyz turns 200).
    Serve {
        /// The YAML configuration file (see config/example.yaml).
        #[arg(short, long, env = "ROUTEMESH_CONFIG")]
        config: PathBuf,
        /// Listen on this address instead of `server.listen` (e.g. 127.0.0.1:0).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Embed prompts with the classifier-worker pool at this NATS URL
        /// instead of the config's `classifier` (the `encoder` section is
        /// then unused).
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// The pool to use with --nats.
        #[arg(long, default_value = "minilm", requires = "nats")]
        pool: String,
        /// Serve Prometheus metrics at http://ADDR/metrics instead of
        /// `metrics.listen` (e.g. 127.0.0.1:0; printed as
        /// `routemesh metrics on …`).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Also serve Envoy's external-processor gRPC API
        /// (envoy.service.ext_proc.v3) at ADDR instead of `ext_proc.listen`
        /// (e.g. 127.0.0.1:0; printed as `routemesh ext_proc on grpc://…`).
        #[arg(long, value_name = "ADDR")]
        ext_proc_listen: Option<SocketAddr>,
        /// How often to check the config file for changes and reload it
        /// (routes, decisions, models, upstreams, signals); `0s` turns the
        /// check off. SIGHUP always reloads.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        reload_poll: std::time::Duration,
        /// After SIGTERM or SIGINT, how long requests in flight may take to
        /// finish before they are cut off.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        drain_timeout: std::time::Duration,
    },
    /// Validate a configuration file, print every error with its key path,
    /// and exit 0 (valid) or 64 (invalid).
    CheckConfig {
        /// The YAML configuration file.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            if let Err(e) = tracing_setup::init_log() {
                eprintln!("routemesh: {e}");
                return ExitCode::FAILURE;
            }
            check_config(&config)
        }
        Command::Serve {
            config,
            listen,
            nats,
            pool,
            metrics_listen,
            ext_proc_listen,
            reload_poll,
            drain_timeout,
        } => {
            let overrides = Overrides {
                listen,
                nats: nats.map(|url| (url, pool)),
                metrics_listen,
                ext_proc_listen,
            };
            let options = ServeOptions {
                reload: Some(ReloadSource {
                    path: config.clone(),
                    overrides,
                    poll: (!reload_poll.is_zero()).then_some(reload_poll),
                }),
                drain_timeout,
            };
            serve(&config, options)
        }
    }
}

/// Loads and validates the config, including what only the classifiers'
/// files can tell (their labels).
fn load(path: &std::path::Path) -> Result<routemesh_common::Config, ExitCode> {
    let config = config_file::load(path).map_err(|e| {
        eprintln!("routemesh: {e}");
        match e {
            LoadError::Read { .. } | LoadError::Invalid { .. } => ExitCode::from(EXIT_CONFIG),
        }
    })?;
    if let Err(errors) = server::check_classifier_labels(&config) {
        eprintln!("routemesh: {}: {errors}", path.display());
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    // The secrets `auth:` names: set variables, a readable, well-formed file.
    if let Err(errors) = routemesh_gateway::auth::load(&config) {
        eprintln!("routemesh: {}: {errors}", path.display());
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(config)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(c) => {
            println!(
                "{}: OK ({} upstreams, {} models, {} routes, {} keyword rules, {} decisions + default `{}`)",
                path.display(),
                c.upstreams.len(),
                c.models.len(),
                c.signals.routes.len(),
                c.signals.keywords.len(),
                c.decisions.len(),
                c.default.name,
            );
            if let Err(e) = server::check_model_files(&c) {
                println!("warning: {e}");
            }
            for w in c.warnings() {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn serve(path: &std::path::Path, options: ServeOptions) -> ExitCode {
    let mut config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(source) = &options.reload {
        if let Some((_, pool)) = &source.overrides.nats
            && !routemesh_common::wire::valid_pool_name(pool)
        {
            eprintln!("routemesh: --pool `{pool}`: use letters, digits, `-` and `_`");
            return ExitCode::from(EXIT_CONFIG);
        }
        source.overrides.apply(&mut config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("routemesh: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The log, and the span export the config asks for: set up inside the
    // runtime (the export is a task on it), flushed once serving is over.
    let export = {
        let _inside = runtime.enter();
        tracing_setup::init(config.tracing.otlp.as_ref())
    };
    let export = match export {
        Ok(t) => t,
        Err(e @ TracingError::Exporter(_)) => {
            eprintln!("routemesh: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("routemesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(server::serve(config, options));
    export.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ServeError::Auth(_)) => {
            eprintln!("routemesh: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e @ ServeError::ModelMissing { .. }) => {
            eprintln!("routemesh: {e}");
            ExitCode::from(EXIT_NO_MODEL)
        }
        Err(
            e @ (ServeError::Learning(LearningError::Open { .. } | LearningError::Store(_))
            | ServeError::Cache(_)),
        ) => {
            eprintln!("routemesh: {e}");
            ExitCode::from(EXIT_CANT_CREATE)
        }
        Err(
            e @ (ServeError::Nats(_)
            | ServeError::Learning(LearningError::Connect(_) | LearningError::JetStream(_))),
        ) => {
            eprintln!("routemesh: {e}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(e) => {
            eprintln!("routemesh: {e}");
            ExitCode::FAILURE
        }
    }
}
