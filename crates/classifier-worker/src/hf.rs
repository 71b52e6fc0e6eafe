//! HF-format classifiers: a folder with `config.json`, `model.safetensors`
//! and `tokenizer.json` for a BERT or ModernBERT sequence- or
//! token-classification model (for example the vLLM Semantic Router's
//! published classifiers).
//!
//! [`HfClassifier::load`] picks the architecture from `architectures[0]`,
//! the labels from `id2label`, and overrides the tokenizer file's padding and
//! truncation as [`crate::Encoder`] does: batches are padded to their
//! longest text, and texts longer than `max_tokens` are cut by us, keeping
//! the closing special token. Sequence models answer [`HfClassifier::classify`]
//! with one probability per label; token models answer
//! [`HfClassifier::tag`] with labelled byte spans of the text.

mod config;
mod error;
mod model;
mod spans;

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Encoding, Tokenizer};

pub use config::SUPPORTED as SUPPORTED_ARCHITECTURES;
pub use error::HfError;

use model::Model;
use spans::{Tag, TokenTag};

/// What a classifier outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfKind {
    /// One probability per label for the whole text ([`HfClassifier::classify`]).
    Sequence,
    /// Labelled spans of the text ([`HfClassifier::tag`]).
    Token,
}

impl std::fmt::Display for HfKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sequence => "sequence",
            Self::Token => "token",
        })
    }
}

/// An entity found by a token classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedSpan {
    /// The entity type: `X` for BIO labels `B-X` / `I-X`, else the label.
    pub label: String,
    /// Byte offsets into the text, on character boundaries.
    pub start: usize,
    pub end: usize,
    /// Mean over the span's tokens of their top label probability.
    pub score: f32,
}

/// A loaded HF classification model with its tokenizer.
pub struct HfClassifier {
    model: Model,
    tokenizer: Tokenizer,
    labels: Vec<String>,
    /// Labels read as entity tags (token models).
    tags: Vec<Tag>,
    architecture: &'static str,
    multi_label: bool,
    device: Device,
    max_tokens: usize,
    pad_id: u32,
}

// Replica threads own a classifier: it must move between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<HfClassifier>();
};

impl std::fmt::Debug for HfClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfClassifier")
            .field("architecture", &self.architecture)
            .field("labels", &self.labels)
            .field("device", &self.device)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, HfError> {
    std::fs::read(path).map_err(|source| HfError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Token ids fed to the model, with the tokenizer's view of each text.
struct Batch {
    ids: Tensor,
    mask: Tensor,
    encodings: Vec<Encoding>,
    /// Per text, the indices into its encoding of the tokens the model saw.
    kept: Vec<Vec<usize>>,
}

impl HfClassifier {
    /// Loads the folder onto the CPU; texts are cut to `max_tokens` tokens
    /// (special tokens included).
    pub fn load(dir: &Path, max_tokens: usize) -> Result<Self, HfError> {
        Self::load_on(dir, max_tokens, Device::Cpu)
    }

    /// Loads the folder onto `device`.
    pub fn load_on(dir: &Path, max_tokens: usize, device: Device) -> Result<Self, HfError> {
        let config_path = dir.join("config.json");
        let config = config::parse(&config_path, &read(&config_path)?)?;
        if max_tokens < 2 || max_tokens > config.max_positions() {
            return Err(HfError::Config {
                path: config_path,
                message: format!(
                    "max_tokens {max_tokens} must be in 2..={} for this model",
                    config.max_positions()
                ),
            });
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?)
            .map_err(|e| HfError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| HfError::Tokenizer(e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let weights = |source| HfError::Weights {
            path: weights_path.clone(),
            source,
        };
        let vb = VarBuilder::from_buffered_safetensors(read(&weights_path)?, DType::F32, &device)
            .map_err(weights)?;
        let model = Model::load(vb, &config).map_err(weights)?;
        Ok(Self {
            model,
            tokenizer,
            tags: config.labels.iter().map(|l| Tag::parse(l)).collect(),
            architecture: config.architecture(),
            multi_label: config.multi_label,
            pad_id: config.pad_id(),
            labels: config.labels,
            device,
            max_tokens,
        })
    }

    /// Whether [`classify`](Self::classify) or [`tag`](Self::tag) applies.
    pub fn kind(&self) -> HfKind {
        match self.model {
            Model::Sequence(_) => HfKind::Sequence,
            Model::Token(_) => HfKind::Token,
        }
    }

    /// Label names in output order (`id2label` sorted by id, or `LABEL_<i>`).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The HF class name from `config.json`, e.g. `BertForSequenceClassification`.
    pub fn architecture(&self) -> &'static str {
        self.architecture
    }

    /// True when `config.json` says `problem_type: multi_label_classification`:
    /// [`classify`](Self::classify) then returns independent sigmoids that
    /// need not sum to 1.
    pub fn multi_label(&self) -> bool {
        self.multi_label
    }

    /// Most tokens per text the model sees.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Label probabilities for each text, in one forward pass: one row per
    /// text, one column per [`label`](Self::labels); a softmax (rows sum to
    /// 1) unless the model is multi-label. Sequence models only.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, HfError> {
        let Model::Sequence(model) = &self.model else {
            return Err(self.wrong_kind("classify", HfKind::Sequence));
        };
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(texts)?;
        Ok(model.forward(&batch.ids, &batch.mask)?.to_vec2::<f32>()?)
    }

    /// Entity spans of each text, in one forward pass: one list per text, in
    /// text order. Tokens past `max_tokens` are not tagged. Token models only.
    pub fn tag(&self, texts: &[&str]) -> Result<Vec<Vec<TaggedSpan>>, HfError> {
        let Model::Token(model) = &self.model else {
            return Err(self.wrong_kind("tag", HfKind::Token));
        };
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch(texts)?;
        let probs = model.forward(&batch.ids, &batch.mask)?;
        let best = probs.max(D::Minus1)?.to_vec2::<f32>()?;
        let label = probs.argmax(D::Minus1)?.to_vec2::<u32>()?;
        let spans = batch
            .encodings
            .iter()
            .zip(&batch.kept)
            .zip(best.iter().zip(&label))
            .map(|((encoding, kept), (best, label))| {
                let offsets = encoding.get_offsets();
                let special = encoding.get_special_tokens_mask();
                let tokens: Vec<TokenTag> = kept
                    .iter()
                    .zip(best.iter().zip(label))
                    .map(|(&t, (&score, &label))| TokenTag {
                        start: offsets[t].0,
                        end: offsets[t].1,
                        special: special[t] != 0,
                        label: label as usize,
                        score,
                    })
                    .collect();
                spans::merge(&tokens, &self.tags)
            })
            .collect();
        Ok(spans)
    }

    fn wrong_kind(&self, call: &'static str, wanted: HfKind) -> HfError {
        HfError::WrongKind {
            call,
            wanted,
            actual: self.kind(),
        }
    }

    /// Tokenizes, truncates and pads `texts` (not empty) into one batch.
    fn batch(&self, texts: &[&str]) -> Result<Batch, HfError> {
        // As the encoder does: no more of a text than `max_tokens` can span.
        let read = self
            .max_tokens
            .saturating_mul(crate::encoder::BYTES_READ_PER_TOKEN);
        let heads: Vec<&str> = texts
            .iter()
            .map(|t| crate::encoder::head(t, read))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(heads, true)
            .map_err(|e| HfError::Tokenizer(e.to_string()))?;
        let kept: Vec<Vec<usize>> = encodings
            .iter()
            .map(|e| kept_tokens(e.get_special_tokens_mask(), self.max_tokens))
            .collect();
        let width = kept.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(kept.len() * width);
        let mut mask = Vec::with_capacity(kept.len() * width);
        for (encoding, kept) in encodings.iter().zip(&kept) {
            let all = encoding.get_ids();
            ids.extend(kept.iter().map(|&t| all[t]));
            ids.extend(std::iter::repeat_n(self.pad_id, width - kept.len()));
            // A text without any token (a tokenizer that adds no special
            // tokens) attends to one pad token, so no row is fully masked.
            let real = kept.len().max(1);
            mask.extend(std::iter::repeat_n(1u32, real));
            mask.extend(std::iter::repeat_n(0u32, width - real));
        }
        let shape = (kept.len(), width);
        Ok(Batch {
            ids: Tensor::from_vec(ids, shape, &self.device)?,
            mask: Tensor::from_vec(mask, shape, &self.device)?,
            encodings,
            kept,
        })
    }
}

/// Indices of the tokens kept when a text of `special.len()` tokens is cut to
/// `max` (≥ 2): the first ones and the closing special tokens (`[SEP]`), as
/// the tokenizer's own right truncation does for a single sequence.
fn kept_tokens(special: &[u32], max: usize) -> Vec<usize> {
    let len = special.len();
    if len <= max {
        return (0..len).collect();
    }
    let tail = special
        .iter()
        .rev()
        .take_while(|s| **s != 0)
        .count()
        .min(max - 1);
    (0..max - tail).chain(len - tail..len).collect()
}

#[cfg(test)]
mod tests {
    use super::kept_tokens;

    fn check(special: &[u32], max: usize, want: &[usize]) {
        assert_eq!(kept_tokens(special, max), want, "{special:?} cut to {max}");
    }

    #[test]
    fn truncation_keeps_the_closing_special_tokens() {
        check(&[1, 0, 0, 0, 0, 1], 4, &[0, 1, 2, 5]);
        check(&[1, 0, 0, 1], 4, &[0, 1, 2, 3]);
        check(&[1, 0, 1], 4, &[0, 1, 2]);
        check(&[1, 0, 0, 0, 1, 1], 4, &[0, 1, 4, 5]);
        check(&[0, 0, 0, 0, 0], 3, &[0, 1, 2]);
        check(&[1, 1, 1, 1], 2, &[0, 3]);
        check(&[], 2, &[]);
    }
}
