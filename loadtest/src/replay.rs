//! The routing replay benchmark: a labelled dataset (every model's recorded answer to every
//! question) replayed through the real router in embedded mode — encoder, heads and
//! `SignalComputer` for the signals, `routemesh_decision::decide` for the decision and the
//! decision crate's `Learner` for Thompson selection — against a SIMULATED upstream that answers
//! from the recorded outputs (correct or not, output tokens → cost from the price list) and
//! feeds correctness back as the reward. The harness also computes the baselines (every single
//! model, random, per-category static routing, the oracle), sweeps the cost weight λ, and
//! writes `replay.json`, `replay.md` and two SVG plots. `compare` replays the decisions only,
//! under two encoder precisions, and counts how many prompts keep theirs.

pub mod baselines;
pub mod compare;
pub mod data;
pub mod embed;
pub mod plot;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};

use routemesh_common::config::Config;

pub use baselines::{BaselineOptions, Baselines, Score, StaticRouting, TableRule, Tally};
pub use compare::{
    Change, DecisionComparison, PrecisionComparison, compare_precisions, run_comparison,
    with_precision,
};
pub use data::{Answer, Dataset, Price, Row};
pub use embed::{EmbedOptions, EmbedStats, compute_signals};
pub use report::{Report, SweepPoint};
pub use run::{CurvePoint, RunOptions, RunResult, replay, with_cost_weight};

/// Where the report goes unless told otherwise.
pub const DEFAULT_REPORT_DIR: &str = "loadtest/reports/replay";
/// Where embeddings are cached unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = ".cache/replay";

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("config: {0}")]
    Config(String),
    #[error("encoding the questions failed: {0}")]
    Encode(String),
    #[error("the learner failed: {0}")]
    Learner(String),
    #[error("plot: {0}")]
    Plot(String),
}

/// Reads and validates a routemesh config file (relative paths against its folder).
pub fn load_config(path: &Path) -> Result<(Config, String), ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config = routemesh_common::config::parse(&text, base)
        .map_err(|e| ReplayError::Config(format!("{}: {e}", path.display())))?;
    Ok((config, data::sha256_hex(text.as_bytes())))
}

/// The top label of classifier `name` for each question (`None` when the config has no such
/// classifier or it did not run).
pub fn predicted_labels(
    config: &Config,
    signals: &[routemesh_common::Signals],
    name: &str,
) -> Option<Vec<String>> {
    let index = config
        .signals
        .classifiers
        .iter()
        .position(|c| c.name == name)?;
    signals
        .iter()
        .map(|s| s.classifiers.get(index)?.as_ref()?.top().map(str::to_owned))
        .collect()
}

/// Everything one benchmark run needs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub data: PathBuf,
    pub prices: PathBuf,
    pub config: PathBuf,
    pub embed: EmbedOptions,
    /// Only the first `limit` rows (quick tries).
    pub limit: Option<usize>,
    /// First seed; seeds are `seed..seed + seeds`.
    pub seed: u64,
    pub seeds: usize,
    pub passes: usize,
    pub window: usize,
    pub cost_weights: Vec<f64>,
    pub epsilons: Vec<f64>,
    /// The model to beat; `None`: the most accurate single model.
    pub reference_model: Option<String>,
    /// The classifier whose top label the "static by predicted label" baseline routes on.
    pub label_classifier: String,
}

/// Loads, encodes (or reads the cache), computes the baselines, replays the config's own λ and
/// every λ of the sweep over every seed, and assembles the report.
pub async fn run_benchmark(opts: &ReplayOptions, command: String) -> Result<Report, ReplayError> {
    let mut data = Dataset::load(&opts.data, &opts.prices)?;
    if let Some(limit) = opts.limit {
        data.rows.truncate(limit.max(1));
    }
    let (config, config_sha) = load_config(&opts.config)?;
    run::model_columns(&config, &data)?;
    let questions: Vec<String> = data.rows.iter().map(|r| r.question.clone()).collect();
    let (signals, embed_stats) = compute_signals(&config, &questions, &opts.embed).await?;

    let predicted = predicted_labels(&config, &signals, &opts.label_classifier);
    let label_classifier = predicted.as_ref().map(|p| report::LabelInfo {
        classifier: opts.label_classifier.clone(),
        accuracy: p
            .iter()
            .zip(&data.rows)
            .filter(|(l, r)| **l == r.category)
            .count() as f64
            / data.rows.len() as f64,
    });
    let baselines = Baselines::compute(
        &data,
        &BaselineOptions {
            seed: opts.seed,
            predicted,
            epsilons: opts.epsilons.clone(),
            lambdas: opts.cost_weights.clone(),
        },
    );
    let reference = reference(&baselines, opts.reference_model.as_deref())?;

    let seeds: Vec<u64> = (0..opts.seeds.max(1) as u64)
        .map(|k| opts.seed + k)
        .collect();
    let run_opts = |seed| RunOptions {
        seed,
        passes: opts.passes,
        window: opts.window,
    };
    let runs = seeds
        .iter()
        .map(|&s| replay(&config, &data, &signals, run_opts(s)))
        .collect::<Result<Vec<_>, _>>()?;
    let means = |runs: &[RunResult]| {
        let pick =
            |f: fn(&RunResult) -> Score| report::Mean::of(&runs.iter().map(f).collect::<Vec<_>>());
        (
            pick(|r| r.overall),
            pick(|r| r.last_pass),
            pick(|r| r.last_window),
        )
    };
    let (overall, last_pass, last_window) = means(&runs);
    let router = report::RouterResult {
        cost_weight: config.learning.cost_weight,
        passes: opts.passes,
        window: opts.window,
        overall,
        last_pass,
        last_window,
        runs,
    };
    let mut sweep = Vec::new();
    for &lambda in &opts.cost_weights {
        let c = with_cost_weight(&config, lambda);
        let runs = seeds
            .iter()
            .map(|&s| replay(&c, &data, &signals, run_opts(s)))
            .collect::<Result<Vec<_>, _>>()?;
        let (overall, last_pass, last_window) = means(&runs);
        sweep.push(SweepPoint {
            lambda,
            overall,
            last_pass,
            last_window,
        });
    }
    let mut notes = report::standard_notes();
    notes.push(format!(
        "Classifier heads trained on this same train file are in-sample here: heads/domain \
         (the `{}` label) and heads/difficulty were trained on 90% of mmlu_pro_train.jsonl, so \
         their labels on it are better than on unseen prompts.",
        opts.label_classifier
    ));
    Ok(Report {
        host: crate::bench::HostInfo::detect(),
        command,
        dataset: report::DatasetInfo {
            path: opts.data.clone(),
            sha256: data.sha256.clone(),
            rows: data.rows.len(),
            prices_path: opts.prices.clone(),
            prices_sha256: data.prices_sha256.clone(),
            models: data.models.iter().map(|m| m.name.clone()).collect(),
        },
        config: report::ConfigInfo {
            path: opts.config.clone(),
            sha256: config_sha,
            cost_weight: config.learning.cost_weight,
            decisions: config.decisions.len(),
        },
        signals: embed_stats,
        label_classifier,
        baselines,
        reference,
        router,
        sweep,
        notes,
    })
}

fn reference(b: &Baselines, model: Option<&str>) -> Result<report::Reference, ReplayError> {
    let (name, score) = match model {
        Some(m) => (
            m.to_owned(),
            b.single(m).ok_or_else(|| {
                ReplayError::Config(format!("reference model `{m}` is not in the data"))
            })?,
        ),
        None => b
            .single
            .iter()
            .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))
            .cloned()
            .ok_or_else(|| ReplayError::Config("no models".into()))?,
    };
    Ok(report::Reference {
        target_accuracy: score.accuracy,
        target_cost_per_1k: score.cost_per_1k / 2.0,
        model: name,
        score,
    })
}

// Here rather than in `report`: it draws the plots, and `plot` reads the report, so
// `report` and `plot` each depend one way.
impl Report {
    /// Writes `replay.json`, `replay.md`, `cost_accuracy.svg` and `learning_curve.svg`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReplayError> {
        std::fs::create_dir_all(dir).map_err(|source| ReplayError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| ReplayError::Plot(format!("serialising the report: {e}")))?;
        let files = [
            ("replay.json", json + "\n"),
            ("replay.md", self.markdown()),
            ("cost_accuracy.svg", plot::cost_accuracy_svg(self)?),
            ("learning_curve.svg", plot::learning_curve_svg(self)?),
        ];
        let mut written = Vec::new();
        for (name, body) in files {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(|source| ReplayError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }
}
