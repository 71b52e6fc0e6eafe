//! `replay`: the routing replay benchmark; the command line around `routemesh_loadtest::replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use routemesh_common::config::EncoderPrecision;
use routemesh_loadtest::bench::shell_command;
use routemesh_loadtest::replay::{
    self, DEFAULT_CACHE_DIR, DEFAULT_REPORT_DIR, EmbedOptions, ReplayError, ReplayOptions,
};

/// Invalid config or command line (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// A data, price or model file not readable (EX_NOINPUT).
const EXIT_NO_INPUT: u8 = 66;

/// Routing replay benchmark: replays a labelled routing dataset through the real router.
///
/// Each question is embedded by the config's encoder and classifier heads (embedded mode, the
/// gateway's own code), turned into signals, decided by the config's rules, and the decision's
/// candidate model is picked by the learner (Thompson sampling, cost weight λ). The upstream is
/// SIMULATED: the chosen model's recorded answer says whether it was correct (the reward fed
/// back to the learner) and how many tokens it wrote (the cost, priced from models.json).
///
/// Baselines computed on the same data: every single model, random, per-category static
/// routing (by true category and by the classifier's predicted label), and the oracle. The
/// config is replayed with its own λ and over a sweep of λ, for several seeds.
///
/// Writes replay.json, replay.md, cost_accuracy.svg and learning_curve.svg into --out and
/// prints replay.md. Embeddings are cached under --cache-dir, so only the first run encodes.
///
/// With --compare-precision A,B it only computes every question's signals twice, with the
/// config's encoder.precision set to A and to B, and prints how many questions get the same
/// decision (`decide`, the rules) under both and the most frequent changes; no report is
/// written, and the exit code is 0 whatever the share.
///
/// Data format: JSON lines {id, category, question, models: {MODEL: {correct, out_tokens}}};
/// prices: {"models": [{name, input_usd_per_mtok, output_usd_per_mtok}]}.
#[derive(Debug, Parser)]
#[command(name = "replay", version, verbatim_doc_comment)]
struct Cli {
    /// The dataset (JSON lines).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "../shared/data/routing/mmlu_pro_train.jsonl"
    )]
    data: PathBuf,
    /// The price list [default: models.json beside --data].
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// The routemesh config replayed (needs `encoder:`, models named as in the data).
    #[arg(long, value_name = "FILE", default_value = "config/replay-mmlu.yaml")]
    config: PathBuf,
    /// Folder for the report files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPORT_DIR)]
    out: PathBuf,
    /// Folder of the embedding cache.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    cache_dir: PathBuf,
    /// Encode everything again and write no cache.
    #[arg(long)]
    no_cache: bool,
    /// First seed (shuffle order and Thompson draws).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds per configuration (seed, seed+1, ...); results are averaged.
    #[arg(long, value_name = "N", default_value_t = 5)]
    seeds: usize,
    /// Passes over the data, each in a fresh order, learning throughout.
    #[arg(long, value_name = "N", default_value_t = 1)]
    passes: usize,
    /// Queries per learning-curve window.
    #[arg(long, value_name = "N", default_value_t = 500)]
    window: usize,
    /// The λ sweep: every decision's cost weight set to each value in turn.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.075,0.08,0.1,0.2,0.5,1"
    )]
    cost_weights: Vec<f64>,
    /// ε of the "cheapest model within ε of the category's best" static tables.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "0.01,0.02,0.05"
    )]
    static_epsilons: Vec<f64>,
    /// The model to beat [default: the most accurate single model].
    #[arg(long, value_name = "NAME")]
    reference_model: Option<String>,
    /// The classifier whose top label the "static by predicted label" baseline routes on.
    #[arg(long, value_name = "NAME", default_value = "domain")]
    label_classifier: String,
    /// Replay only the first N rows (quick tries).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
    /// Compare the decisions under two encoder precisions (e.g. `f32,int8`) instead of
    /// running the benchmark.
    #[arg(long, value_name = "A,B", value_delimiter = ',', num_args = 1)]
    compare_precision: Option<Vec<EncoderPrecision>>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let prices = cli.prices.clone().unwrap_or_else(|| {
        cli.data
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("models.json")
    });
    let opts = ReplayOptions {
        data: cli.data.clone(),
        prices,
        config: cli.config.clone(),
        embed: EmbedOptions {
            cache_dir: (!cli.no_cache).then(|| cli.cache_dir.clone()),
            progress: !cli.quiet,
        },
        limit: cli.limit,
        seed: cli.seed,
        seeds: cli.seeds,
        passes: cli.passes,
        window: cli.window,
        cost_weights: cli.cost_weights.clone(),
        epsilons: cli.static_epsilons.clone(),
        reference_model: cli.reference_model.clone(),
        label_classifier: cli.label_classifier.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = shell_command(std::env::args());
    if let Some(precisions) = &cli.compare_precision {
        let Ok(pair) = <[EncoderPrecision; 2]>::try_from(precisions.as_slice()) else {
            eprintln!("replay: --compare-precision takes two precisions, e.g. f32,int8");
            return ExitCode::from(EXIT_USAGE);
        };
        return match runtime.block_on(replay::run_comparison(&opts, pair, &command)) {
            Ok((_, markdown)) => {
                print!("{markdown}");
                ExitCode::SUCCESS
            }
            Err(e) => exit_for(&e),
        };
    }
    let report = match runtime.block_on(replay::run_benchmark(&opts, command)) {
        Ok(r) => r,
        Err(e) => return exit_for(&e),
    };
    match report.write(&cli.out) {
        Ok(files) => {
            print!("{}", report.markdown());
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a failure and says how to exit on it.
fn exit_for(e: &ReplayError) -> ExitCode {
    eprintln!("replay: {e}");
    ExitCode::from(match e {
        ReplayError::Read { .. } | ReplayError::Data { .. } => EXIT_NO_INPUT,
        ReplayError::Config(_) => EXIT_USAGE,
        _ => 1,
    })
}
