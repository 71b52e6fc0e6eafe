//! routemesh's encoder on CPU: a BERT-family forward pass on kernels of its
//! own (see `kernels`), with the linear layers' weights packed once at load
//! time in f32, bf16 or int8.
//!
//! candle reads the safetensors file and stays the tensor library of the GPU
//! path; on CPU its generic GEMM (packing per call, padding to the longest
//! prompt, scalar `erf`) was the limit, so the hot loop lives here. One
//! thread pool: rayon's global one, which candle's CPU kernels share
//! (`RAYON_NUM_THREADS`, default one thread per core).

mod bert;
mod dense;
mod kernels;

use std::path::PathBuf;

pub use bert::{Bert, BertConfig, Hidden};
pub use dense::Dense;
pub use kernels::Isa;

/// Sizes rayon's global pool — the one pool of this engine and of candle's
/// CPU kernels — to `threads`. Call it before the first forward pass: once
/// the pool runs, its size is fixed and this fails.
pub fn init_threads(threads: usize) -> Result<(), String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| format!("cannot size the thread pool to {threads}: {e}"))
}

/// Threads of the pool the forward pass runs on.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Number format of the packed linear-layer weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// As shipped: the reference.
    F32,
    /// bf16 weights and activations, f32 sums (AVX-512 BF16).
    Bf16,
    /// int8 weights per output channel, int8 activations per token, i32
    /// sums (AVX-512 VNNI) for the Q/K/V and feed-forward-up projections;
    /// the attention-output and feed-forward-down projections in bf16.
    Int8,
}

impl Precision {
    /// Every precision, fastest last.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    /// The name used in config and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }

    /// What `precision: auto` runs on a CPU: the fastest precision that passes
    /// the accuracy gate (tests/gate.rs) and has its instructions there.
    pub fn automatic(isa: Isa) -> Self {
        if isa.vnni {
            Self::Int8
        } else if isa.bf16 {
            Self::Bf16
        } else {
            Self::F32
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a precision: use f32, bf16 or int8"))
    }
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` is not a BERT this engine runs.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The weights are missing or misshapen.
    #[error("{path}: {message}")]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A row the model cannot read (too long, unknown token id).
    #[error("{0}")]
    Input(String),
}
