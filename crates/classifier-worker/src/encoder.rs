//! The sentence encoder: BERT + mean pooling + L2 norm, read in windows.
//!
//! On CPU the forward pass runs on `routemesh-inference`'s own kernels in
//! the configured precision (f32, bf16 or int8; `auto` picks the fastest
//! that passes the accuracy gate on this CPU). On a GPU it runs on
//! candle-transformers' `BertModel` (f32, or bf16 as candle's dtype).
//!
//! Matches sentence-transformers' `all-MiniLM-L6-v2` pipeline for a text of
//! at most `max_tokens` tokens: tokens padded to the longest row of the
//! batch (not the tokenizer file's fixed 128), the last hidden state averaged
//! over real tokens only, then normalised to unit length. A longer text is
//! not cut at `max_tokens`: its first `max_total_tokens` tokens are split
//! into consecutive windows of at most `max_tokens` ([`windows`]), every
//! window is embedded like a short text, and the text's embedding is the
//! token-weighted mean of its windows'. Only a text longer than
//! `max_total_tokens` is truncated (and reported).

mod windows;

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use routemesh_common::config::{DEFAULT_MAX_TOTAL_TOKENS, EncoderPrecision};
use routemesh_inference::{Bert, Isa, Precision};
use tokenizers::Tokenizer;

use crate::error::EncoderError;

/// Embeddings of a batch of texts.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// One unit-length vector per input text, in input order: the
    /// L2-normalised, token-weighted mean of the text's window embeddings
    /// (the window's own, bit for bit, for a text of one window).
    pub embeddings: Vec<Vec<f32>>,
    /// Each text's window embeddings, unit length, in text order; one
    /// window for a text of at most `max_tokens` tokens.
    pub windows: Vec<Vec<Vec<f32>>>,
    /// Tokens in each of those windows, special tokens included.
    pub window_tokens: Vec<Vec<usize>>,
    /// Tokens of each text before truncation, special tokens included;
    /// for a text longer than the tokenizer reads, scaled from its head.
    pub token_counts: Vec<usize>,
    /// Which texts were longer than `max_total_tokens` (only their first
    /// tokens were embedded).
    pub truncated: Vec<bool>,
    /// Each text's token states, when asked for ([`Encoder::encode_with_tokens`]);
    /// empty otherwise.
    pub tokens: Vec<TokenStates>,
    /// Time spent tokenizing and splitting into windows.
    pub tokenize: Duration,
    /// Time spent in the forward pass and pooling.
    pub forward: Duration,
}

/// The last hidden state of every token of one text, window by window, and
/// where each token is in the text: what a token head (a PII tagger) reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenStates {
    /// Width of a state.
    pub width: usize,
    /// The text's windows, in text order.
    pub windows: Vec<WindowStates>,
}

/// One window (one row of the model) of a text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStates {
    /// `tokens × width`, row-major, special tokens included.
    pub states: Vec<f32>,
    /// Byte offsets of each token in the text (as the tokenizer maps them
    /// back through its normalizer); `None` for `[CLS]`, `[SEP]` and
    /// tokens without text.
    pub offsets: Vec<Option<(usize, usize)>>,
}

/// How an [`Encoder`] reads texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Most tokens in one window (one row of the model), special tokens
    /// included; at least 3 and at most the model's position embeddings.
    pub max_tokens: usize,
    /// Most tokens read of one text over all its windows, counted as
    /// [`Encoded::token_counts`] counts them (each window adds its own
    /// `[CLS]` and `[SEP]` on top); at least `max_tokens`. A longer text is
    /// truncated.
    pub max_total_tokens: usize,
    /// The number format the forward pass computes in.
    pub precision: EncoderPrecision,
}

impl EncoderOptions {
    /// Windows of `max_tokens`, the default total
    /// ([`DEFAULT_MAX_TOTAL_TOKENS`], or `max_tokens` if that is more) and
    /// `auto` precision.
    pub fn new(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            max_total_tokens: DEFAULT_MAX_TOTAL_TOKENS.max(max_tokens),
            precision: EncoderPrecision::Auto,
        }
    }
}

/// A loaded sentence encoder.
pub struct Encoder {
    backend: Backend,
    tokenizer: Tokenizer,
    device: Device,
    opts: EncoderOptions,
    dim: usize,
    pad_id: u32,
}

/// What runs the forward pass.
enum Backend {
    /// routemesh-inference's kernels (CPU).
    Kernels(Bert),
    /// candle-transformers (GPU), in `dtype`.
    Candle { model: BertModel, dtype: DType },
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("device", &self.device)
            .field("precision", &self.precision_in_use())
            .field("opts", &self.opts)
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
    pub fn load(dir: &Path, opts: &EncoderOptions) -> Result<Self, EncoderError> {
        Self::load_on(dir, opts, Device::Cpu)
    }

    /// Loads the model onto `device`.
    pub fn load_on(
        dir: &Path,
        opts: &EncoderOptions,
        device: Device,
    ) -> Result<Self, EncoderError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?).map_err(|e| {
            EncoderError::ModelConfig {
                path: config_path.clone(),
                message: e.to_string(),
            }
        })?;
        let max_tokens = opts.max_tokens;
        if max_tokens > config.max_position_embeddings || max_tokens < 3 {
            return Err(EncoderError::ModelConfig {
                path: config_path,
                message: format!(
                    "max_tokens {max_tokens} must be in 3..={} for this model",
                    config.max_position_embeddings
                ),
            });
        }
        if opts.max_total_tokens < max_tokens {
            return Err(EncoderError::Options(format!(
                "max_total_tokens {} is less than max_tokens {max_tokens}",
                opts.max_total_tokens
            )));
        }
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?)
            .map_err(|e| EncoderError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        // The shipped tokenizer.json pads every input to 128 and truncates at
        // 128; we pad per batch and split into windows ourselves so we can count.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);

        let backend = if device.is_cpu() {
            let precision = match opts.precision {
                EncoderPrecision::Auto => Precision::automatic(Isa::detect()),
                EncoderPrecision::F32 => Precision::F32,
                EncoderPrecision::Bf16 => Precision::Bf16,
                EncoderPrecision::Int8 => Precision::Int8,
            };
            Backend::Kernels(Bert::load(dir, precision)?)
        } else {
            let dtype = match opts.precision {
                EncoderPrecision::Auto | EncoderPrecision::F32 => DType::F32,
                EncoderPrecision::Bf16 => DType::BF16,
                EncoderPrecision::Int8 => {
                    return Err(EncoderError::Options(
                        "precision int8 runs on the CPU only: use f32 or bf16 on a GPU".into(),
                    ));
                }
            };
            let weights = read(&dir.join("model.safetensors"))?;
            let vb = VarBuilder::from_buffered_safetensors(weights, dtype, &device)?;
            Backend::Candle {
                model: BertModel::load(vb, &config)?,
                dtype,
            }
        };
        Ok(Self {
            backend,
            tokenizer,
            device,
            opts: *opts,
            dim: config.hidden_size,
            pad_id,
        })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Most tokens in one window.
    pub fn max_tokens(&self) -> usize {
        self.opts.max_tokens
    }

    /// Most tokens read of one text; longer texts are truncated.
    pub fn max_total_tokens(&self) -> usize {
        self.opts.max_total_tokens
    }

    /// The precision it was loaded with (as configured: may be `auto`).
    pub fn precision(&self) -> EncoderPrecision {
        self.opts.precision
    }

    /// The precision the forward pass runs in, and where: `int8`, `bf16`,
    /// `f32` on the CPU kernels, `f32 (candle, cuda)` and the like on a GPU.
    pub fn precision_in_use(&self) -> String {
        match &self.backend {
            Backend::Kernels(bert) => bert.precision().to_string(),
            Backend::Candle { dtype, .. } => {
                let dtype = if *dtype == DType::BF16 { "bf16" } else { "f32" };
                let device = if self.device.is_cuda() {
                    "cuda"
                } else {
                    "metal"
                };
                format!("{dtype} (candle, {device})")
            }
        }
    }

    /// Embeds a batch of texts: every window of every text in one
    /// [`Encoder::forward_rows`] call.
    pub fn encode(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        self.encode_inner(texts, false)
    }

    /// [`Encoder::encode`], keeping every token's last hidden state and its
    /// place in the text ([`Encoded::tokens`]). The embeddings are the same,
    /// bit for bit: they are pooled from those states.
    pub fn encode_with_tokens(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        self.encode_inner(texts, true)
    }

    fn encode_inner(&self, texts: &[&str], keep_tokens: bool) -> Result<Encoded, EncoderError> {
        if texts.is_empty() {
            return Ok(Encoded::default());
        }
        let started = Instant::now();
        // Only a text's head is read: the tokenizer reads no more of it
        // than `max_total_tokens` tokens can span, so a huge prompt costs
        // what a long one does.
        let read = self
            .opts
            .max_total_tokens
            .saturating_mul(BYTES_READ_PER_TOKEN);
        let heads: Vec<&str> = texts.iter().map(|t| head(t, read)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(heads.clone(), true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let mut rows: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
        let mut per_text = Vec::with_capacity(texts.len());
        let mut token_counts = Vec::with_capacity(texts.len());
        let mut truncated = Vec::with_capacity(texts.len());
        // per row, with tokens kept: each position's offsets in its text
        let mut row_offsets: Vec<Vec<Option<(usize, usize)>>> = Vec::new();
        for ((enc, text), head) in encodings.iter().zip(texts).zip(&heads) {
            let ids = enc.get_ids();
            token_counts.push(estimated_tokens(ids.len(), head.len(), text.len()));
            let windows = windows::split(ids, self.opts.max_tokens, self.opts.max_total_tokens);
            truncated.push(windows.cut || head.len() < text.len());
            per_text.push(windows.rows.len());
            if keep_tokens {
                row_offsets.extend(window_offsets(enc, &windows.rows));
            }
            rows.extend(windows.rows);
        }
        let tokenize = started.elapsed();

        let started = Instant::now();
        let (pooled, mut states) = if keep_tokens {
            let (pooled, states) = self.forward_rows_with_states(&rows)?;
            (pooled, Some(states.into_iter()))
        } else {
            (self.forward_rows(&rows)?, None)
        };
        if pooled.len() != rows.len() {
            return Err(EncoderError::Rows {
                got: pooled.len(),
                rows: rows.len(),
            });
        }
        let mut pooled = pooled.into_iter();
        let mut lengths = rows.iter().map(Vec::len);
        let mut embeddings = Vec::with_capacity(texts.len());
        let mut windows = Vec::with_capacity(texts.len());
        let mut window_tokens = Vec::with_capacity(texts.len());
        let mut tokens_kept = Vec::new();
        let mut offsets = row_offsets.into_iter();
        for n in per_text {
            let vectors: Vec<Vec<f32>> = pooled.by_ref().take(n).collect();
            let tokens: Vec<usize> = lengths.by_ref().take(n).collect();
            embeddings.push(windows::combine(&vectors, &tokens));
            windows.push(vectors);
            window_tokens.push(tokens);
            if let Some(states) = states.as_mut() {
                tokens_kept.push(TokenStates {
                    width: self.dim,
                    windows: states
                        .by_ref()
                        .take(n)
                        .zip(offsets.by_ref())
                        .map(|(states, offsets)| WindowStates { states, offsets })
                        .collect(),
                });
            }
        }
        Ok(Encoded {
            embeddings,
            windows,
            window_tokens,
            token_counts,
            truncated,
            tokens: tokens_kept,
            tokenize,
            forward: started.elapsed(),
        })
    }

    /// One L2-normalised, mean-pooled embedding per row of token ids, in
    /// order. Each row already holds its special tokens (`[CLS]` … `[SEP]`)
    /// and at most `max_tokens` ids; rows may have any lengths (padding and
    /// the attention mask are built here). Every precision runs through
    /// this one method.
    fn forward_rows(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let (model, dtype) = match &self.backend {
            Backend::Kernels(bert) => {
                let mut out = Vec::with_capacity(rows.len());
                // packed without padding: a pass is its rows' real tokens
                for pass in packed_passes(rows, KERNEL_PASS_TOKENS) {
                    let refs: Vec<&[u32]> = pass.iter().map(Vec::as_slice).collect();
                    out.extend(bert.embed(&refs)?);
                }
                return Ok(out);
            }
            Backend::Candle { model, dtype } => (model, *dtype),
        };
        let mut out = Vec::with_capacity(rows.len());
        for pass in passes(rows, PASS_TOKENS) {
            let width = pass.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(pass.len() * width);
            let mut mask = Vec::with_capacity(pass.len() * width);
            for row in pass {
                ids.extend_from_slice(row);
                ids.extend(std::iter::repeat_n(self.pad_id, width - row.len()));
                mask.extend(std::iter::repeat_n(1u32, row.len()));
                mask.extend(std::iter::repeat_n(0u32, width - row.len()));
            }
            let shape = (pass.len(), width);
            let ids = Tensor::from_vec(ids, shape, &self.device)?;
            let mask = Tensor::from_vec(mask, shape, &self.device)?;
            let token_types = ids.zeros_like()?;
            let hidden = model.forward(&ids, &token_types, Some(&mask))?;
            // bf16 on a GPU: pooled in f32
            let hidden = if dtype == DType::F32 {
                hidden
            } else {
                hidden.to_dtype(DType::F32)?
            };
            out.extend(pool_and_normalise(&hidden, &mask)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

/// Each row's pooled vector, and its last hidden states (`len × dim`).
type PooledAndStates = (Vec<Vec<f32>>, Vec<Vec<f32>>);

impl Encoder {
    /// [`Encoder::forward_rows`] that also gives each row's last hidden
    /// states (`len × dim`); the pooled vectors are computed from them as
    /// `forward_rows` computes its own.
    fn forward_rows_with_states(&self, rows: &[Vec<u32>]) -> Result<PooledAndStates, EncoderError> {
        let (mut pooled, mut states) = (Vec::with_capacity(rows.len()), Vec::new());
        let (model, dtype) =
            match &self.backend {
                Backend::Kernels(bert) => {
                    for pass in packed_passes(rows, KERNEL_PASS_TOKENS) {
                        let refs: Vec<&[u32]> = pass.iter().map(Vec::as_slice).collect();
                        let hidden = bert.hidden(&refs)?;
                        pooled.extend(hidden.mean_pooled());
                        let w = hidden.width;
                        states.extend(hidden.spans.iter().map(|&(start, len)| {
                            hidden.states[start * w..(start + len) * w].to_vec()
                        }));
                    }
                    return Ok((pooled, states));
                }
                Backend::Candle { model, dtype } => (model, *dtype),
            };
        for pass in passes(rows, PASS_TOKENS) {
            let width = pass.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(pass.len() * width);
            let mut mask = Vec::with_capacity(pass.len() * width);
            for row in pass {
                ids.extend_from_slice(row);
                ids.extend(std::iter::repeat_n(self.pad_id, width - row.len()));
                mask.extend(std::iter::repeat_n(1u32, row.len()));
                mask.extend(std::iter::repeat_n(0u32, width - row.len()));
            }
            let shape = (pass.len(), width);
            let ids = Tensor::from_vec(ids, shape, &self.device)?;
            let mask = Tensor::from_vec(mask, shape, &self.device)?;
            let token_types = ids.zeros_like()?;
            let hidden = model.forward(&ids, &token_types, Some(&mask))?;
            let hidden = if dtype == DType::F32 {
                hidden
            } else {
                hidden.to_dtype(DType::F32)?
            };
            pooled.extend(pool_and_normalise(&hidden, &mask)?.to_vec2::<f32>()?);
            for (row, h) in pass.iter().zip(hidden.to_vec3::<f32>()?) {
                states.push(h.into_iter().take(row.len()).flatten().collect());
            }
        }
        Ok((pooled, states))
    }
}

/// Each window row's token offsets in its text: a row of one window is the
/// encoding itself; the rows of a longer text wrap consecutive runs of its
/// wordpieces in the text's first and last special tokens
/// ([`windows::split`]).
fn window_offsets(
    enc: &tokenizers::Encoding,
    rows: &[Vec<u32>],
) -> Vec<Vec<Option<(usize, usize)>>> {
    let offsets = enc.get_offsets();
    let special = enc.get_special_tokens_mask();
    let at = |i: usize| -> Option<(usize, usize)> {
        let &(start, end) = offsets.get(i)?;
        (special.get(i) == Some(&0) && end > start).then_some((start, end))
    };
    if let [row] = rows {
        return vec![(0..row.len()).map(at).collect()];
    }
    let mut next = 1; // the first wordpiece: ids[0] is the leading special token
    rows.iter()
        .map(|row| {
            let pieces = row.len().saturating_sub(2);
            let mut out = Vec::with_capacity(row.len());
            out.push(None);
            out.extend((next..next + pieces).map(at));
            out.push(None);
            next += pieces;
            out
        })
        .collect()
}

/// Most padded tokens (rows × the longest row) in one forward pass of the
/// candle path: a full default batch (32 texts of 256 tokens) is one pass,
/// the windows of long texts are cut into several so that one pass's
/// attention scores (12 heads × rows × width² floats) stay near 200 MB.
const PASS_TOKENS: usize = 16_384;

/// Most tokens in one pass of the CPU kernels. Their buffers (about 14 KB per
/// token for MiniLM) are kept for the next pass, so this bounds what a burst
/// of long prompts leaves resident (~57 MB) without slowing a pass: 4,096
/// tokens are plenty of rows to keep both cores busy.
const KERNEL_PASS_TOKENS: usize = 4096;

/// `rows` cut, in order, into runs of at most `budget` real tokens (no
/// padding); a row longer than the budget is a run of its own.
fn packed_passes(rows: &[Vec<u32>], budget: usize) -> Vec<&[Vec<u32>]> {
    let mut out = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && tokens + row.len() > budget {
            out.push(&rows[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += row.len();
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// `rows` cut, in order, into runs of at most `budget` padded tokens; a row
/// longer than the budget is a run of its own.
fn passes(rows: &[Vec<u32>], budget: usize) -> Vec<&[Vec<u32>]> {
    let mut out = Vec::new();
    let (mut start, mut width) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let wider = width.max(row.len());
        if i > start && (i + 1 - start) * wider > budget {
            out.push(&rows[start..i]);
            (start, width) = (i, row.len());
        } else {
            width = wider;
        }
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Bytes of a text read per token embedded. A WordPiece token spans a few
/// bytes of ordinary text (about 4–5 in English, 3 in CJK's UTF-8 per
/// character) and a word longer than 100 characters is one `[UNK]`; 32
/// bytes per token leaves the first `max_total_tokens` tokens of any but
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
    use super::{EncoderOptions, estimated_tokens, head, passes};

    #[test]
    fn only_a_texts_head_is_read_cut_at_a_character() {
        assert_eq!(head("short", 32), "short");
        // `é` is two bytes: a cut inside it moves back before it.
        assert_eq!(head("abé", 3), "ab");
        assert_eq!(head("abé", 4), "abé");
        let huge = "word ".repeat(200_000);
        assert_eq!(head(&huge, 4096 * 32).len(), 4096 * 32);
    }

    #[test]
    fn a_huge_texts_token_count_is_scaled_from_its_head() {
        assert_eq!(estimated_tokens(300, 1000, 1000), 300, "read whole: exact");
        assert_eq!(estimated_tokens(2000, 8192, 900_000), 219_726);
    }

    #[test]
    fn passes_keep_the_order_and_stay_within_the_budget() {
        let rows = |lens: &[usize]| -> Vec<Vec<u32>> { lens.iter().map(|&n| vec![0; n]).collect() };
        let shape = |r: &[Vec<u32>], budget| -> Vec<Vec<usize>> {
            passes(r, budget)
                .iter()
                .map(|p| p.iter().map(Vec::len).collect())
                .collect()
        };
        // 3 rows padded to 4 = 12 ≤ 12; the fourth would make 4 × 5 = 20.
        let r = rows(&[2, 4, 3, 5, 5]);
        assert_eq!(shape(&r, 12), vec![vec![2, 4, 3], vec![5, 5]]);
        assert_eq!(
            shape(&r, 100),
            vec![vec![2, 4, 3, 5, 5]],
            "one pass when it fits"
        );
        assert_eq!(
            shape(&rows(&[8, 1]), 4),
            vec![vec![8], vec![1]],
            "a row past the budget runs alone"
        );
        assert!(passes(&[], 8).is_empty());
        // A full default batch (32 rows of 256) is one pass, as before windows.
        assert_eq!(passes(&rows(&[256; 32]), super::PASS_TOKENS).len(), 1);
    }

    #[test]
    fn options_default_to_the_configs_total_and_auto() {
        let o = EncoderOptions::new(256);
        assert_eq!((o.max_tokens, o.max_total_tokens), (256, 4096));
        assert_eq!(
            o.precision,
            routemesh_common::config::EncoderPrecision::Auto
        );
        assert_eq!(EncoderOptions::new(8192).max_total_tokens, 8192);
    }
}
