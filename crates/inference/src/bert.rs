//! A BERT encoder (HF `BertModel`, absolute positions, exact GELU) on the
//! packed kernels.
//!
//! The sequences of a call are packed end to end: `t` rows for `t` real
//! tokens, no padding, so every linear layer works on real tokens only and
//! attention needs no mask. Per layer: one fused Q/K/V GEMM, attention per
//! (sequence, head), the output projection with the residual and layer norm
//! in one pass, then the feed-forward pair with GELU in place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

use crate::kernels::Isa;
use crate::kernels::gemm::{Format, Gemm, Prepared};
use crate::kernels::math;
use crate::{Error, Precision};

/// The parts of `config.json` the forward pass reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Must be `gelu` (the exact form).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Must be `absolute` when given.
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

fn default_position() -> String {
    "absolute".into()
}

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug)]
struct Layer {
    qkv: Gemm,
    out: Gemm,
    attention_norm: Norm,
    up: Gemm,
    down: Gemm,
    output_norm: Norm,
}

/// Buffers of one forward pass, kept for the next.
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    wide: Vec<f32>,
    prep: Prepared,
}

/// A loaded encoder.
#[derive(Debug)]
pub struct Bert {
    config: BertConfig,
    precision: Precision,
    isa: Isa,
    words: Vec<f32>,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    eps: f32,
    scratch: Mutex<Scratch>,
}

/// The last hidden state of each token of a call, sequences end to end.
#[derive(Debug, Clone)]
pub struct Hidden {
    /// `tokens × width`, row-major.
    pub states: Vec<f32>,
    /// Each sequence's first row and length.
    pub spans: Vec<(usize, usize)>,
    /// Width of a row.
    pub width: usize,
}

impl Hidden {
    /// Mean of each sequence's rows, scaled to unit length.
    pub fn mean_pooled(&self) -> Vec<Vec<f32>> {
        mean_pooled(&self.states, &self.spans, self.width)
    }
}

/// Mean of each span's rows of `states` (rows of `width`), unit length.
fn mean_pooled(states: &[f32], spans: &[(usize, usize)], width: usize) -> Vec<Vec<f32>> {
    spans
        .iter()
        .map(|&(start, len)| {
            let mut mean = vec![0.0f32; width];
            for row in states[start * width..(start + len) * width].chunks_exact(width) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|v| *v /= norm);
            mean
        })
        .collect()
}

impl Bert {
    /// Loads `config.json` and `model.safetensors` from `dir` and packs the
    /// weights for `precision` on this CPU.
    pub fn load(dir: &Path, precision: Precision) -> Result<Self, Error> {
        let config_path = dir.join("config.json");
        let bytes = std::fs::read(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: BertConfig = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let bad = |message: String| Error::Config {
            path: config_path.clone(),
            message,
        };
        if config.hidden_act != "gelu" {
            return Err(bad(format!(
                "hidden_act `{}`: only `gelu` is supported",
                config.hidden_act
            )));
        }
        if config.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type `{}`: only `absolute` is supported",
                config.position_embedding_type
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(
                "hidden_size must be a multiple of num_attention_heads".into()
            ));
        }
        let weights_path = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(|e| {
            Error::Weights {
                path: weights_path.clone(),
                message: e.to_string(),
            }
        })?;
        Self::from_tensors(config, &tensors, precision).map_err(|message| Error::Weights {
            path: weights_path,
            message,
        })
    }

    fn from_tensors(
        config: BertConfig,
        tensors: &HashMap<String, Tensor>,
        precision: Precision,
    ) -> Result<Self, String> {
        let isa = Isa::detect();
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let full = format!("{prefix}{name}");
            let t = tensors.get(&full).ok_or(format!("no tensor `{full}`"))?;
            if t.dims() != shape {
                return Err(format!(
                    "`{full}` has shape {:?}, expected {shape:?}",
                    t.dims()
                ));
            }
            t.to_dtype(candle_core::DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| format!("`{full}`: {e}"))
        };
        let (h, ff) = (config.hidden_size, config.intermediate_size);
        let norm = |name: &str| -> Result<Norm, String> {
            Ok(Norm {
                gamma: get(&format!("{name}.weight"), &[h])?,
                beta: get(&format!("{name}.bias"), &[h])?,
            })
        };
        let format = match precision {
            Precision::F32 => Format::F32,
            Precision::Bf16 => Format::Bf16,
            Precision::Int8 => Format::Int8,
        };
        // int8 keeps the two projections whose inputs quantize worst per
        // token (the attention context, the GELU outputs) in bf16 — f32
        // where the CPU has no bf16 dot product: all-int8 misses the gate
        // (mean cosine 0.99893 on tests/gate.rs), this mix passes it.
        let sensitive = match format {
            Format::Int8 if isa.bf16 => Format::Bf16,
            Format::Int8 => Format::F32,
            other => other,
        };
        let linear = |name: &str, n: usize, k: usize, format: Format| -> Result<Gemm, String> {
            let w = get(&format!("{name}.weight"), &[n, k])?;
            let b = get(&format!("{name}.bias"), &[n])?;
            Ok(Gemm::new(&w, &b, n, k, format, isa))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let at = format!("encoder.layer.{i}");
            let (mut w, mut b) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
            for part in ["query", "key", "value"] {
                w.extend(get(&format!("{at}.attention.self.{part}.weight"), &[h, h])?);
                b.extend(get(&format!("{at}.attention.self.{part}.bias"), &[h])?);
            }
            layers.push(Layer {
                qkv: Gemm::new(&w, &b, 3 * h, h, format, isa),
                out: linear(&format!("{at}.attention.output.dense"), h, h, sensitive)?,
                attention_norm: norm(&format!("{at}.attention.output.LayerNorm"))?,
                up: linear(&format!("{at}.intermediate.dense"), ff, h, format)?,
                down: linear(&format!("{at}.output.dense"), h, ff, sensitive)?,
                output_norm: norm(&format!("{at}.output.LayerNorm"))?,
            });
        }
        let token_types = tensors
            .get(&format!("{prefix}embeddings.token_type_embeddings.weight"))
            .map_or(1, |t| t.dims().first().copied().unwrap_or(1));
        Ok(Self {
            words: get("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            positions: get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            // only segment 0: a single sequence per input
            token_type: get("embeddings.token_type_embeddings.weight", &[token_types, h])?[..h]
                .to_vec(),
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            eps: config.layer_norm_eps as f32,
            precision,
            isa,
            config,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The precision the weights were packed for.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Mean-pooled, unit-length embeddings of token-id rows (each with its
    /// special tokens, at most `max_position_embeddings` long).
    pub fn embed(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>, Error> {
        // pooled straight from the pass's buffer: no copy of the states
        self.forward(rows, |states, spans, width| {
            mean_pooled(states, spans, width)
        })
    }

    /// The last hidden state of every token of `rows`.
    pub fn hidden(&self, rows: &[&[u32]]) -> Result<Hidden, Error> {
        self.forward(rows, |states, spans, width| Hidden {
            states: states.to_vec(),
            spans: spans.to_vec(),
            width,
        })
    }

    /// Runs the pass over `rows` and hands the last hidden states (`tokens ×
    /// width`, sequences end to end, each at its span) to `read`.
    fn forward<R>(
        &self,
        rows: &[&[u32]],
        read: impl FnOnce(&[f32], &[(usize, usize)], usize) -> R + Send,
    ) -> Result<R, Error>
    where
        R: Send,
    {
        let mut spans = Vec::with_capacity(rows.len());
        let mut t = 0;
        for row in rows {
            if row.len() > self.config.max_position_embeddings {
                return Err(Error::Input(format!(
                    "a row of {} tokens: this model reads at most {}",
                    row.len(),
                    self.config.max_position_embeddings
                )));
            }
            if let Some(&id) = row
                .iter()
                .find(|&&id| id as usize >= self.config.vocab_size)
            {
                return Err(Error::Input(format!(
                    "token id {id} is outside the vocabulary"
                )));
            }
            spans.push((t, row.len()));
            t += row.len();
        }
        // The whole pass runs on a worker of the pool: its GEMMs then split
        // by work stealing instead of waking the pool from outside each time.
        rayon::scope(|_| self.run(rows, &spans, t, read))
    }

    fn run<R>(
        &self,
        rows: &[&[u32]],
        spans: &[(usize, usize)],
        t: usize,
        read: impl FnOnce(&[f32], &[(usize, usize)], usize) -> R,
    ) -> Result<R, Error> {
        let h = self.config.hidden_size;
        let mut guard = self
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = &mut *guard;
        resize(&mut s.x, t * h);
        let mut r = 0;
        for row in rows {
            for (pos, &id) in row.iter().enumerate() {
                let dst = &mut s.x[r * h..(r + 1) * h];
                let word = &self.words[id as usize * h..][..h];
                let position = &self.positions[pos * h..][..h];
                for (((d, w), p), ty) in
                    dst.iter_mut().zip(word).zip(position).zip(&self.token_type)
                {
                    *d = w + p + ty;
                }
                r += 1;
            }
        }
        let norm = &self.embedding_norm;
        math::layer_norm(self.isa, &mut s.x, &norm.gamma, &norm.beta, self.eps);
        for layer in &self.layers {
            self.layer(layer, t, spans, s);
        }
        Ok(read(&s.x[..t * h], spans, h))
    }

    fn layer(&self, layer: &Layer, t: usize, spans: &[(usize, usize)], s: &mut Scratch) {
        let h = self.config.hidden_size;
        let ff = self.config.intermediate_size;
        resize(&mut s.qkv, t * 3 * h);
        layer.qkv.forward(&s.x, t, &mut s.qkv, &mut s.prep);
        resize(&mut s.ctx, t * h);
        math::attention(
            self.isa,
            &s.qkv,
            spans,
            self.config.num_attention_heads,
            h,
            &mut s.ctx,
        );
        // the projection lands in `qkv`'s first t × h, then becomes x
        let projected = &mut s.qkv[..t * h];
        layer.out.forward(&s.ctx, t, projected, &mut s.prep);
        let n = &layer.attention_norm;
        math::add_layer_norm(self.isa, projected, &s.x, &n.gamma, &n.beta, self.eps);
        s.x[..t * h].copy_from_slice(projected);
        resize(&mut s.wide, t * ff);
        layer.up.forward(&s.x, t, &mut s.wide, &mut s.prep);
        let isa = self.isa;
        if t >= PARALLEL_ROWS {
            s.wide
                .par_chunks_mut(PARALLEL_ROWS * ff)
                .for_each(|c| math::gelu(isa, c));
        } else {
            math::gelu(isa, &mut s.wide);
        }
        let out = &mut s.ctx[..t * h];
        layer.down.forward(&s.wide, t, out, &mut s.prep);
        let n = &layer.output_norm;
        math::add_layer_norm(self.isa, out, &s.x, &n.gamma, &n.beta, self.eps);
        s.x[..t * h].copy_from_slice(out);
    }
}

/// Rows per task of the element-wise passes when a call is large enough to
/// split them.
const PARALLEL_ROWS: usize = 64;

/// Sets `v`'s length to `len`, keeping its allocation for the next call.
fn resize(v: &mut Vec<f32>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    } else {
        v.truncate(len);
    }
}
