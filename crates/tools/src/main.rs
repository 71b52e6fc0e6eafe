//! `routemesh-tools`: routemesh's offline commands — train and measure
//! heads, make the difficulty head's data, measure the PII detectors.
//! Parses the command line and calls the library.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use routemesh_signals::pii::PiiDetector;
use routemesh_tools::heads::{self, cli, commands};
use routemesh_tools::pii_eval;

/// Exit code for bad flags or data (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code for a missing input (EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;

/// routemesh's offline tools: the head trainer and the evaluations.
#[derive(Debug, Parser)]
#[command(name = "routemesh-tools", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a head (logistic regression or a small MLP) on frozen encoder
    /// embeddings of a labelled JSONL file; writes head.safetensors,
    /// head.json and README.md (see the classifier worker's README, "Heads").
    TrainHead(cli::TrainHeadArgs),
    /// Measure a trained head on a labelled JSONL file.
    EvalHead(cli::EvalHeadArgs),
    /// Label MMLU-Pro rows `hard`/`easy` from the cheap models' correctness
    /// (training data for the difficulty head).
    MakeDifficultyData(cli::DifficultyArgs),
    /// Measure the PII detectors on labelled JSONL (`text` + character
    /// `spans` with presidio types, e.g. shared/data/pii/pii_train.jsonl):
    /// precision and recall per type, as a markdown table.
    EvalPii {
        /// The JSONL file.
        data: PathBuf,
    },
    /// Train the PII token head (heads/pii): BIO tags for names, addresses,
    /// places, organisations, dates, … over the encoder's token states, from
    /// labelled spans (shared/data/pii/pii_train.jsonl); measured per type
    /// on held-out texts; writes head.safetensors, head.json and README.md.
    TrainPiiHead(routemesh_tools::heads::pii::TrainPiiArgs),
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
    match cli.command {
        Command::TrainHead(a) => heads_exit(commands::train_head(&a)),
        Command::EvalHead(a) => heads_exit(commands::eval_head(&a)),
        Command::MakeDifficultyData(a) => heads_exit(commands::make_difficulty_data(&a)),
        Command::EvalPii { data } => eval_pii(&data),
        Command::TrainPiiHead(a) => heads_exit(
            routemesh_tools::heads::pii::train_pii_head(&a, std::env::args().collect()).map(|_| ()),
        ),
    }
}

fn eval_pii(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("routemesh-tools: cannot read {}: {e}", path.display());
            return ExitCode::from(EXIT_NO_INPUT);
        }
    };
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<pii_eval::Record>(line) {
            Ok(r) => records.push(r),
            Err(e) => {
                eprintln!("routemesh-tools: {}:{}: {e}", path.display(), i + 1);
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let counts = pii_eval::evaluate(&PiiDetector::new(), &records);
    println!(
        "PII detectors on {} ({} records)\n",
        path.display(),
        records.len()
    );
    print!("{}", pii_eval::table(&counts));
    ExitCode::SUCCESS
}

/// Exit status of a head subcommand; the error goes to stderr.
fn heads_exit(result: Result<(), heads::TrainError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("routemesh-tools: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
