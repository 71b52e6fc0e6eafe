//! The validated `encoder:` section and the encoder's precision setting,
//! which the `classifier-worker` binary's `--precision` flag shares.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `encoder.max_total_tokens` when the key is absent (and the worker's
/// `--max-total-tokens` default).
pub const DEFAULT_MAX_TOTAL_TOKENS: usize = 4096;

/// The largest `encoder.max_total_tokens` accepted.
pub const MAX_TOTAL_TOKENS: usize = 65_536;

/// `encoder:` — the sentence encoder that embeds prompts.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// Folder with `config.json`, `tokenizer.json`, `model.safetensors`;
    /// a relative path in the file is resolved against the file's folder.
    pub model_dir: PathBuf,
    /// Most tokens in one window: a longer prompt is read in consecutive
    /// windows of at most this many tokens each.
    pub max_tokens: usize,
    /// Most tokens read of one prompt, over all its windows (special tokens
    /// counted once); the rest is not read and the prompt is `truncated`.
    /// At least `max_tokens`.
    pub max_total_tokens: usize,
    /// Most prompts embedded in one forward pass.
    pub max_batch: usize,
    /// The number format the encoder computes in.
    pub precision: EncoderPrecision,
}

/// `encoder.precision` (and the worker's `--precision`): the number format
/// the encoder computes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EncoderPrecision {
    /// The fastest precision that passes the accuracy gate on this machine.
    #[default]
    Auto,
    /// 32-bit floats: the reference the others are measured against.
    F32,
    /// bfloat16.
    Bf16,
    /// 8-bit integer weights.
    Int8,
}

impl EncoderPrecision {
    /// Every value, in the order the choices are listed.
    pub const ALL: [Self; 4] = [Self::Auto, Self::F32, Self::Bf16, Self::Int8];

    /// The name in the config file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }
}

impl fmt::Display for EncoderPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EncoderPrecision {
    type Err = UnknownPrecision;

    /// The lowercase name; anything else is an error listing the choices.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPrecision(s.to_owned()))
    }
}

/// A precision name that is none of [`EncoderPrecision::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: use auto, f32, bf16 or int8")]
pub struct UnknownPrecision(pub String);

#[cfg(test)]
mod tests {
    use super::EncoderPrecision;

    #[test]
    fn precisions_parse_from_their_lowercase_names_only() {
        for p in EncoderPrecision::ALL {
            assert_eq!(p.to_string().parse::<EncoderPrecision>(), Ok(p));
        }
        assert_eq!(EncoderPrecision::default(), EncoderPrecision::Auto);
        let err = "F32".parse::<EncoderPrecision>().map_err(|e| e.to_string());
        assert_eq!(err, Err("`F32`: use auto, f32, bf16 or int8".to_owned()));
        assert!("fp16".parse::<EncoderPrecision>().is_err());
    }
}
