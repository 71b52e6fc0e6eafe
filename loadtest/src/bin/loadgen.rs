//! `loadgen`: an open-loop load generator for the routemesh gateway (or any OpenAI-compatible
//! server); the command line around `routemesh_loadtest::loadgen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use routemesh_loadtest::bench::{HostInfo, shell_command};
use routemesh_loadtest::loadgen::{
    self, DEFAULT_REPORTS_DIR, LoadError, Overrides, Report, RunOptions, Scenario,
};

/// Invalid scenario or command line (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Scenario file not readable (EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;
/// Stopped with Ctrl-C (the report of what ran is still written).
const EXIT_INTERRUPTED: u8 = 130;

/// Open-loop load generator for the routemesh gateway's POST /v1/chat/completions.
///
/// Requests are sent at times fixed in advance by the scenario's rate profile (constant or
/// Poisson arrivals), whatever earlier requests are doing, and latency is measured from
/// those intended times, so a slow server cannot hide behind a slowed-down client (no
/// coordinated omission). Service time (from the actual send) is recorded too.
///
/// Each run writes report.json, report.md and latency.svg into
/// loadtest/reports/loadgen/NAME-UTCSTAMP/ (or --out) and prints the markdown summary.
/// Scenario format and examples: loadtest/README.md, loadtest/scenarios/.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario and write its report (exit 64: invalid scenario, 130: interrupted).
    Run(RunArgs),
    /// Validate a scenario and print what a run would do; sends nothing (exit 64: invalid).
    Check(ScenarioArgs),
}

#[derive(Debug, Args)]
struct ScenarioArgs {
    /// Scenario file (YAML).
    #[arg(value_name = "SCENARIO.yaml")]
    scenario: PathBuf,
    /// Base URL of the server, replacing the file's `target`, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Constant rate in requests/s for the whole run, replacing the file's rate or stages.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Measured duration, e.g. 30s or 2m; stages are scaled to fit it.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Folder for the report files [default: loadtest/reports/loadgen/NAME-UTCSTAMP].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

fn load(args: &ScenarioArgs) -> Result<Scenario, ExitCode> {
    let overrides = Overrides {
        target: args.target.clone(),
        rate: args.rate,
        duration: args.duration,
    };
    loadgen::load_scenario(&args.scenario, &overrides).map_err(|e| {
        eprintln!("loadgen: {e}");
        match e {
            LoadError::Read { .. } => ExitCode::from(EXIT_NO_INPUT),
            LoadError::Invalid { .. } => ExitCode::from(EXIT_USAGE),
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = shell_command(std::env::args());
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version end up here too, and succeed.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check(args) => match load(&args) {
            Ok(scenario) => {
                print!("{}", scenario.describe());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run(args) => match load(&args.scenario) {
            Ok(scenario) => run(&scenario, &args, command).await,
            Err(code) => code,
        },
    }
}

async fn run(scenario: &Scenario, args: &RunArgs, command: String) -> ExitCode {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nloadgen: stopping; waiting for requests in flight (Ctrl-C again quits)");
            let _ = stop_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(EXIT_INTERRUPTED));
            }
        }
    });
    let opts = RunOptions {
        progress: !args.quiet,
        stop: Some(stop_rx),
    };
    let ran = match loadgen::run(scenario, opts).await {
        Ok(ran) => ran,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::new(scenario, &ran, command, HostInfo::detect());
    let dir = args.out.clone().unwrap_or_else(|| {
        loadgen::default_out_dir(
            Path::new(DEFAULT_REPORTS_DIR),
            &scenario.name,
            ran.started_at,
        )
    });
    match loadgen::write_outputs(&dir, &report) {
        Ok(written) => {
            print!("{}", report.to_markdown());
            eprintln!(
                "loadgen: wrote {}, {} and {}",
                written.json.display(),
                written.markdown.display(),
                written.svg.display()
            );
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    }
    if ran.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}
