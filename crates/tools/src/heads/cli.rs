//! Command-line arguments of the head subcommands: what the trainer and the
//! subcommands' entry points (`commands`) take.
//!
//! `main.rs` only adds these argument structs as subcommands and calls the
//! matching entry point; everything else is library code. This module
//! depends on no other module that uses it.

use std::path::PathBuf;

use routemesh_classifier_worker::heads::WindowPooling;
use routemesh_common::config::EncoderPrecision;

use super::metrics::Criterion;

/// `routemesh-tools train-head`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainHeadArgs {
    /// Training rows (JSONL, one object per line).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out rows to measure the head (and choose a threshold) on; the
    /// validation split is used when absent.
    #[arg(long)]
    pub data_eval: Option<PathBuf>,
    /// Field holding the text to classify.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Field holding the label (string, bool or integer).
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// The head's name (recorded in head.json).
    #[arg(long)]
    pub name: String,
    /// One line on what the head predicts (recorded in head.json and README.md).
    #[arg(long, default_value = "")]
    pub description: String,
    /// Folder to write head.safetensors, head.json and README.md into.
    #[arg(long)]
    pub out: PathBuf,
    /// Encoder folder (config.json, tokenizer.json, model.safetensors).
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Longer texts are truncated before embedding (training reads one
    /// window per text).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Hidden layer widths: 0 = logistic regression, 256 = one hidden layer,
    /// 256x128 = two. A comma-separated list trains each and keeps the best
    /// macro-F1 on the validation split.
    #[arg(long, default_value = "0")]
    pub hidden: String,
    /// Most passes over the training rows.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// AdamW (decoupled) weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Rows per optimiser step.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Share of the training file held out for early stopping and model choice.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Epochs without a lower validation loss before stopping.
    #[arg(long, default_value_t = 10)]
    pub patience: usize,
    /// Weight the loss so every class counts the same (`balanced`) or not.
    #[arg(long, value_enum, default_value = "balanced")]
    pub class_weights: ClassWeights,
    /// Seeds the split, the initial weights and the shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Embedding cache folder (a retrain on the same texts skips encoding).
    #[arg(long, default_value = ".cache/embeddings")]
    pub cache: PathBuf,
    /// Binary heads: the label a decision threshold applies to.
    #[arg(long)]
    pub positive_label: Option<String>,
    /// Binary heads: what the threshold maximises on the evaluation rows.
    #[arg(long, value_enum, default_value = "f1")]
    pub choose_threshold: Criterion,
    /// With `--choose-threshold fpr`: the most false positives allowed, as
    /// a share of the negative rows (0.01 = one in a hundred).
    #[arg(long, default_value_t = 0.01)]
    pub max_fpr: f64,
    /// Binary heads: which rows choose the threshold. `eval`: the rows the
    /// head is measured on (--data-eval, else the validation split), so
    /// the thresholded figures are slightly optimistic; `validation`: the
    /// validation split of --data, so --data-eval measures it unseen.
    #[arg(long, value_enum, default_value = "eval")]
    pub threshold_on: ThresholdOn,
    /// How the served head reads a prompt longer than one encoder window
    /// (recorded in head.json): `mean` of the windows' probabilities
    /// weighted by tokens, or `max`, the window where --positive-label is
    /// most probable (a detector that fires when any window does).
    #[arg(long, default_value_t = WindowPooling::Mean)]
    pub windows: WindowPooling,
}

/// The rows a binary head's threshold is chosen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThresholdOn {
    /// The rows the head is measured on.
    Eval,
    /// The validation split of the training file.
    Validation,
}

/// Loss weights per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClassWeights {
    /// n / (classes × rows of the class).
    Balanced,
    None,
}

/// `routemesh-tools eval-head`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalHeadArgs {
    /// The head folder.
    #[arg(long)]
    pub head: PathBuf,
    /// Labelled rows (JSONL).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "text")]
    pub text_field: String,
    #[arg(long, default_value = "label")]
    pub label_field: String,
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Defaults to the max_tokens the head was trained with.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Embedding cache folder (keyed by model, max_tokens and precision).
    #[arg(long, default_value = ".cache/embeddings")]
    pub cache: PathBuf,
    /// The encoder's number format (`auto`: the fastest that passes the
    /// accuracy gate on this CPU). Heads are trained and their metrics
    /// recorded in f32.
    #[arg(long, default_value_t = EncoderPrecision::F32)]
    pub precision: EncoderPrecision,
    /// Which rows of --data: all of them, or one side of the trainer's
    /// seeded split (`validation`: the rows a head trained on this file was
    /// measured on; `train`: the others).
    #[arg(long, value_enum, default_value = "all")]
    pub split: Split,
    /// The split's seed [default: head.json's data.split.seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// The split's validation share [default: head.json's data.split.val_fraction].
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Also measure the rows per value of this field (e.g. `source`).
    #[arg(long)]
    pub group_field: Option<String>,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The rows `eval-head` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Every row of the file.
    All,
    /// The rows the trainer holds out (`data::is_validation`).
    Validation,
    /// The rows the trainer fits on.
    Train,
}

impl Split {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Validation => "validation",
            Self::Train => "train",
        }
    }
}

/// `routemesh-tools make-difficulty-data`.
#[derive(Debug, Clone, clap::Args)]
pub struct DifficultyArgs {
    /// MMLU-Pro rows with per-model correctness (shared/data/routing/mmlu_pro_train.jsonl).
    pub input: PathBuf,
    /// Where to write `{id, question, category, cheap_correct, label}` rows.
    pub output: PathBuf,
    /// The cheap models (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = super::difficulty::DEFAULT_CHEAP.map(String::from))]
    pub cheap: Vec<String>,
    /// `hard` when at most this many cheap models answer correctly.
    #[arg(long, default_value_t = 1)]
    pub max_cheap_correct: usize,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct EvalHead {
        #[command(flatten)]
        args: EvalHeadArgs,
    }

    fn parse(extra: &[&str]) -> Result<EvalHeadArgs, clap::Error> {
        let base = ["eval-head", "--head", "h", "--data", "d.jsonl"];
        EvalHead::try_parse_from(base.iter().chain(extra)).map(|e| e.args)
    }

    #[test]
    fn eval_head_defaults_to_f32_on_every_row() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.precision, EncoderPrecision::F32);
        assert_eq!(a.split, Split::All);
        assert_eq!((a.seed, a.val_fraction, a.group_field), (None, None, None));
    }

    #[test]
    fn eval_head_takes_a_precision_and_a_split() {
        let a = parse(&[
            "--precision",
            "int8",
            "--split",
            "validation",
            "--seed",
            "7",
            "--group-field",
            "source",
        ])
        .unwrap();
        assert_eq!(a.precision, EncoderPrecision::Int8);
        assert_eq!(a.split, Split::Validation);
        assert_eq!(a.seed, Some(7));
        assert_eq!(a.group_field.as_deref(), Some("source"));
        assert_eq!(
            parse(&["--precision", "auto"]).unwrap().precision,
            EncoderPrecision::Auto
        );
        assert!(parse(&["--precision", "fp16"]).is_err());
        assert!(parse(&["--split", "test"]).is_err());
    }
}
