//! `head.json`: what a head predicts, which encoder it sits on, and its training record.
//!
//! Only `name`, `labels`, `encoder` and `architecture` are needed to run a
//! head; the rest is the record of how it was trained and measured, so a
//! hand-made `head.json` may leave it out.

use serde::{Deserialize, Serialize};

/// Version of the head folder format written by this crate.
pub const HEAD_FORMAT: u32 = 1;

/// The parsed `head.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Folder format version ([`HEAD_FORMAT`]).
    #[serde(default = "default_format")]
    pub format: u32,
    /// The head's name (`domain`, `injection`, …).
    pub name: String,
    /// One line on what the head predicts.
    #[serde(default)]
    pub description: String,
    /// Output labels, in logit order.
    pub labels: Vec<String>,
    /// The encoder whose pooled embeddings the head was trained on.
    pub encoder: EncoderInfo,
    pub architecture: Architecture,
    /// Binary heads: the label the threshold applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_label: Option<String>,
    /// Binary heads: predict `positive_label` when its probability is at
    /// least this; otherwise the other label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// How the head reads a text longer than one encoder window; absent
    /// is `mean`.
    #[serde(default, skip_serializing_if = "WindowPooling::is_mean")]
    pub windows: WindowPooling,
    /// Token heads only: the head labels every token (BIO tags) from its
    /// state, its neighbours' and its shape; absent for a head on the
    /// pooled embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenInput>,
    /// Token heads only: entity spans measured on the evaluation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_metrics: Option<SpanMetrics>,
    #[serde(default)]
    pub data: DataInfo,
    /// Measured on the evaluation set (`--data-eval`, else the validation split).
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub training: TrainingInfo,
}

fn default_format() -> u32 {
    HEAD_FORMAT
}

/// How a head's probabilities for a text come from those of its windows
/// (a text longer than the encoder's `max_tokens` is read in several; a
/// text of one window gets that window's probabilities either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowPooling {
    /// The token-weighted mean of the windows' probabilities: what the
    /// text is about as a whole (domain, difficulty).
    #[default]
    Mean,
    /// The probabilities of the window where `positive_label` is most
    /// probable: a detector fires when any part of the text does
    /// (injection). Needs `positive_label`.
    Max,
}

impl WindowPooling {
    pub fn is_mean(&self) -> bool {
        *self == Self::Mean
    }

    /// `mean` or `max`, as in `head.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Max => "max",
        }
    }
}

impl std::fmt::Display for WindowPooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WindowPooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            other => Err(format!("`{other}`: use mean or max")),
        }
    }
}

/// What a token head reads for each token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInput {
    /// States of this many tokens on each side join the token's own
    /// (within its window; `[CLS]` and `[SEP]` count as neighbours).
    pub context: usize,
    /// The shape features appended (`v1`: [`crate::heads::SHAPE_FEATURES`]
    /// casing, digit and spacing flags from the text).
    pub shape: String,
}

impl TokenInput {
    /// Width of one token's input for states of `dim`.
    pub fn width(&self, dim: usize) -> usize {
        (2 * self.context + 1) * dim + crate::heads::SHAPE_FEATURES
    }
}

/// Entity spans found against the gold spans of the evaluation set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanMetrics {
    /// Which rows.
    pub on: String,
    pub texts: usize,
    /// How a span counts as found: `overlap` of the same type.
    pub matching: String,
    pub per_type: Vec<SpanTypeScores>,
}

/// One entity type's spans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanTypeScores {
    pub label: String,
    /// Gold spans, and those a prediction of the type overlaps.
    pub gold: usize,
    pub found: usize,
    /// Predicted spans, and those that overlap a gold span of the type.
    pub predicted: usize,
    pub correct: usize,
    /// Predictions with exactly the gold offsets.
    pub exact: usize,
    pub precision: f64,
    pub recall: f64,
}

/// The encoder a head belongs to. Embeddings from any other model are
/// meaningless to the head: compare `sha256` with the loaded model's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// Model folder name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// sha256 of the model's `model.safetensors`.
    pub sha256: String,
    /// Embedding width (the head's input width).
    pub dim: usize,
    /// Truncation used when the training texts were embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
}

/// Logistic regression or a multi-layer perceptron with ReLU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchitectureKind {
    /// One layer: logits = W·x + b.
    #[default]
    Linear,
    /// Hidden layers with ReLU, then a linear output layer.
    Mlp,
}

/// The layer stack: `hidden` widths between the input and the logits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Architecture {
    pub kind: ArchitectureKind,
    /// Empty for `linear`.
    #[serde(default)]
    pub hidden: Vec<usize>,
}

impl Architecture {
    /// `linear` without hidden layers, `mlp` otherwise.
    pub fn from_hidden(hidden: Vec<usize>) -> Self {
        let kind = if hidden.is_empty() {
            ArchitectureKind::Linear
        } else {
            ArchitectureKind::Mlp
        };
        Self { kind, hidden }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ArchitectureKind::Linear => f.write_str("linear"),
            ArchitectureKind::Mlp => {
                let widths: Vec<String> = self.hidden.iter().map(ToString::to_string).collect();
                write!(f, "mlp {}", widths.join("-"))
            }
        }
    }
}

/// Where the training and evaluation rows came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub train: Option<DataFile>,
    /// `--data-eval`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<DataFile>,
    pub text_field: String,
    pub label_field: String,
    pub split: SplitInfo,
    /// Rows per label in each part.
    pub label_counts: Vec<LabelCount>,
}

/// One input file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    /// As given on the command line.
    pub path: String,
    pub sha256: String,
    pub rows: usize,
}

/// How the training file was split into train and validation rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// How a row is assigned.
    pub method: String,
    pub seed: u64,
    pub val_fraction: f64,
    pub train_rows: usize,
    pub val_rows: usize,
}

/// Rows of one label in the train split, validation split and eval file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelCount {
    pub label: String,
    pub train: usize,
    pub val: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<usize>,
}

/// Classification quality of one set of predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1.
    pub macro_f1: f64,
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<usize>>,
}

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows whose true label this is.
    pub support: usize,
}

/// The head measured on its evaluation set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Which rows: a file path or `validation split`.
    pub on: String,
    pub rows: usize,
    /// Predicting the most probable label.
    #[serde(flatten)]
    pub argmax: Scores,
    /// Binary heads: predicting with the chosen threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_threshold: Option<ThresholdScores>,
}

/// Scores of a binary head at its chosen threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThresholdScores {
    /// The label the threshold applies to.
    pub positive_label: String,
    /// What the threshold maximised (`f1` of the positive label or `accuracy`).
    pub criterion: String,
    pub threshold: f32,
    #[serde(flatten)]
    pub scores: Scores,
}

/// How the head was trained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// `routemesh-classifier-worker <version>`.
    pub trainer: String,
    pub optimizer: String,
    pub seed: u64,
    pub max_epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub patience: usize,
    /// `balanced` (n / (classes · count)) or `none`.
    pub class_weights: String,
    /// Weight per label, in label order.
    pub class_weight_values: Vec<f64>,
    /// Every architecture tried; the chosen one is marked.
    pub candidates: Vec<Candidate>,
    /// Metrics of the chosen head on the validation split.
    pub validation: Scores,
    /// Texts embedded by the encoder, and those found in the cache.
    pub texts_embedded: usize,
    pub texts_cached: usize,
    pub embed_seconds: f64,
    pub train_seconds: f64,
    pub wall_seconds: f64,
    /// The command line that produced this head.
    pub command: Vec<String>,
}

/// One trained architecture, measured on the validation split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub architecture: Architecture,
    pub parameters: usize,
    pub epochs_run: usize,
    /// The epoch whose weights were kept (lowest validation loss), 1-based.
    pub best_epoch: usize,
    /// Class-weighted cross-entropy on the validation split.
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub chosen: bool,
}
