//! Validating the `encoder:` section (part of phase two): the model folder,
//! the window and total token limits, the batch size and the precision.

use std::path::Path;

use super::Validator;
use crate::config::raw::RawEncoder;
use crate::config::{DEFAULT_MAX_TOTAL_TOKENS, EncoderConfig, EncoderPrecision, MAX_TOTAL_TOKENS};

const DEFAULT_MAX_TOKENS: u32 = 256;
/// BERT-family encoders have 512 position embeddings.
const MAX_ENCODER_TOKENS: u32 = 512;
const DEFAULT_MAX_BATCH: u32 = 32;

impl Validator {
    /// `encoder:`, required with the embedded transport.
    pub(super) fn encoder(
        &mut self,
        raw: Option<RawEncoder>,
        base_dir: &Path,
    ) -> Option<EncoderConfig> {
        let raw = raw.unwrap_or_default();
        let dir = raw.model_dir.filter(|d| !d.trim().is_empty());
        if dir.is_none() {
            self.error(
                "encoder.model_dir",
                "required: the folder of the encoder model".into(),
            );
        }
        let max_tokens = raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if !(8..=MAX_ENCODER_TOKENS).contains(&max_tokens) {
            self.error(
                "encoder.max_tokens",
                format!("{max_tokens} is out of range 8..={MAX_ENCODER_TOKENS}"),
            );
        }
        let max_tokens = max_tokens as usize;
        let max_total_tokens = raw
            .max_total_tokens
            .map_or(DEFAULT_MAX_TOTAL_TOKENS, |n| n as usize);
        if !(max_tokens..=MAX_TOTAL_TOKENS).contains(&max_total_tokens) {
            self.error(
                "encoder.max_total_tokens",
                format!(
                    "{max_total_tokens} is out of range {max_tokens}..={MAX_TOTAL_TOKENS} (at least encoder.max_tokens)"
                ),
            );
        }
        let max_batch = raw.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
        if !(1..=1024).contains(&max_batch) {
            self.error(
                "encoder.max_batch",
                format!("{max_batch} is out of range 1..=1024"),
            );
        }
        let precision = match raw.precision.as_deref().map(str::parse::<EncoderPrecision>) {
            None => EncoderPrecision::default(),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.error("encoder.precision", e.to_string());
                EncoderPrecision::default()
            }
        };
        Some(EncoderConfig {
            model_dir: base_dir.join(dir?),
            max_tokens,
            max_total_tokens,
            max_batch: max_batch as usize,
            precision,
        })
    }
}
