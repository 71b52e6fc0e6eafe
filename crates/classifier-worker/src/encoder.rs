//! The sentence encoder: BERT (candle-transformers) + mean pooling + L2 norm.
//!
//! Matches sentence-transformers' `all-MiniLM-L6-v2` pipeline: tokens padded to
//! the longest prompt of the batch (not the tokenizer file's fixed 128),
//! prompts longer than `max_tokens` truncated (and reported), the last hidden
//! state averaged over real tokens only, then normalised to unit length.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::Tokenizer;

use crate::error::EncoderError;

/// Embeddings of a batch of texts.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// One unit-length vector per input text, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// Tokens of each text before truncation, special tokens included;
    /// for a text longer than the tokenizer reads, scaled from its head.
    pub token_counts: Vec<usize>,
    /// Which texts were truncated to `max_tokens`.
    pub truncated: Vec<bool>,
    /// Time spent tokenizing.
    pub tokenize: Duration,
    /// Time spent in the forward pass and pooling.
    pub forward: Duration,
}

/// A loaded sentence encoder.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    max_tokens: usize,
    dim: usize,
    pad_id: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("device", &self.device)
            .field("max_tokens", &self.max_tokens)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EncoderError> {
    std::fs::read(path).map_err(|source| EncoderError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Encoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `dir` onto the CPU.
    pub fn load(dir: &Path, max_tokens: usize) -> Result<Self, EncoderError> {
        Self::load_on(dir, max_tokens, Device::Cpu)
    }

    /// Loads the model onto `device`.
    pub fn load_on(dir: &Path, max_tokens: usize, device: Device) -> Result<Self, EncoderError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?).map_err(|e| {
            EncoderError::ModelConfig {
                path: config_path.clone(),
                message: e.to_string(),
            }
        })?;
        if max_tokens > config.max_position_embeddings || max_tokens < 2 {
            return Err(EncoderError::ModelConfig {
                path: config_path,
                message: format!(
                    "max_tokens {max_tokens} must be in 2..={} for this model",
                    config.max_position_embeddings
                ),
            });
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?)
            .map_err(|e| EncoderError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer.json pads every input to 128 and truncates at
        // 128; we pad per batch and truncate ourselves so we can count.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        let weights = read(&dir.join("model.safetensors"))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &config)?;
        Ok(Self {
            model,
            tokenizer,
            device,
            max_tokens,
            dim: config.hidden_size,
            pad_id,
        })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Most tokens embedded per text; longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Embeds a batch of texts in one forward pass.
    pub fn encode(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        if texts.is_empty() {
            return Ok(Encoded {
                embeddings: Vec::new(),
                token_counts: Vec::new(),
                truncated: Vec::new(),
                tokenize: Duration::ZERO,
                forward: Duration::ZERO,
            });
        }
        let started = Instant::now();
        // Only a text's head is embedded: the tokenizer reads no more of it
        // than `max_tokens` tokens can span, so a huge prompt costs what a
        // long one does.
        let read = self.max_tokens.saturating_mul(BYTES_READ_PER_TOKEN);
        let heads: Vec<&str> = texts.iter().map(|t| head(t, read)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(heads.clone(), true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let mut rows: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
        let mut token_counts = Vec::with_capacity(texts.len());
        let mut truncated = Vec::with_capacity(texts.len());
        for ((enc, text), head) in encodings.iter().zip(texts).zip(&heads) {
            let ids = enc.get_ids();
            token_counts.push(estimated_tokens(ids.len(), head.len(), text.len()));
            truncated.push(ids.len() > self.max_tokens || head.len() < text.len());
            rows.push(truncate(ids, self.max_tokens));
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for row in &rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(self.pad_id, width - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, width - row.len()));
        }
        let tokenize = started.elapsed();

        let started = Instant::now();
        let shape = (rows.len(), width);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let embeddings = pool_and_normalise(&hidden, &mask)?.to_vec2::<f32>()?;
        Ok(Encoded {
            embeddings,
            token_counts,
            truncated,
            tokenize,
            forward: started.elapsed(),
        })
    }
}

/// Bytes of a text read per token embedded. A WordPiece token spans a few
/// bytes of ordinary text (about 4–5 in English, 3 in CJK's UTF-8 per
/// character) and a word longer than 100 characters is one `[UNK]`; 32
/// bytes per token leaves the first `max_tokens` tokens of any but
/// whitespace-padded text inside the head read.
pub(crate) const BYTES_READ_PER_TOKEN: usize = 32;

/// The first `max` bytes of `text`, cut at a character boundary.
pub(crate) fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The token count of a text whose first `head` bytes of `total` held
/// `tokens`: exact when the whole text was read, else scaled by length.
fn estimated_tokens(tokens: usize, head: usize, total: usize) -> usize {
    if head >= total || head == 0 {
        return tokens;
    }
    let scaled = tokens as u128 * total as u128 / head as u128;
    usize::try_from(scaled).unwrap_or(usize::MAX)
}

/// Keeps the first `max - 1` tokens and the final special token (`[SEP]`),
/// as the tokenizer's own right truncation does for a single sequence.
fn truncate(ids: &[u32], max: usize) -> Vec<u32> {
    if ids.len() <= max {
        return ids.to_vec();
    }
    let mut out = ids[..max - 1].to_vec();
    out.extend(ids.last().copied());
    out
}

/// Mean of the hidden states over real tokens, scaled to unit length.
fn pool_and_normalise(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?; // (batch, seq, 1)
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (batch, dim)
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (batch, 1)
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    mean.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::{estimated_tokens, head, truncate};

    #[test]
    fn only_a_texts_head_is_read_cut_at_a_character() {
        assert_eq!(head("short", 32), "short");
        // `é` is two bytes: a cut inside it moves back before it.
        assert_eq!(head("abé", 3), "ab");
        assert_eq!(head("abé", 4), "abé");
        let huge = "word ".repeat(200_000);
        assert_eq!(head(&huge, 256 * 32).len(), 256 * 32);
    }

    #[test]
    fn a_huge_texts_token_count_is_scaled_from_its_head() {
        assert_eq!(estimated_tokens(300, 1000, 1000), 300, "read whole: exact");
        assert_eq!(estimated_tokens(2000, 8192, 900_000), 219_726);
    }

    #[test]
    fn truncation_keeps_the_final_special_token() {
        assert_eq!(truncate(&[101, 1, 2, 3, 4, 102], 4), vec![101, 1, 2, 102]);
        assert_eq!(truncate(&[101, 1, 102], 4), vec![101, 1, 102]);
        assert_eq!(truncate(&[101, 1, 2, 102], 4), vec![101, 1, 2, 102]);
    }
}
