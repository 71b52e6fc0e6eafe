//! Signals from a prompt and its embedding: embedding-route similarity,
//! keyword rules and prompt length.

use regex::Regex;
use routemesh_common::Signals;
use routemesh_common::config::SignalsConfig;

use crate::encoder::Encoder;
use crate::error::EncoderError;

/// Computes [`Signals`] for the configured routes and keyword rules.
#[derive(Debug, Clone)]
pub struct SignalComputer {
    /// Unit-length embeddings of each route's examples, in route order.
    routes: Vec<Vec<Vec<f32>>>,
    keywords: Vec<Regex>,
}

impl SignalComputer {
    /// Embeds every route example once, `batch` at a time.
    pub fn build(
        encoder: &Encoder,
        config: &SignalsConfig,
        batch: usize,
    ) -> Result<Self, EncoderError> {
        let mut routes = Vec::with_capacity(config.routes.len());
        for route in &config.routes {
            let mut examples = Vec::with_capacity(route.examples.len());
            for chunk in route.examples.chunks(batch.max(1)) {
                let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                examples.extend(encoder.encode(&texts)?.embeddings);
            }
            routes.push(examples);
        }
        let keywords = config.keywords.iter().map(|k| k.matcher.clone()).collect();
        Ok(Self { routes, keywords })
    }

    /// Signals of one prompt. `embedding` must be unit length (as the encoder
    /// returns it), so a dot product is the cosine similarity.
    pub fn compute(
        &self,
        text: &str,
        embedding: &[f32],
        prompt_tokens: usize,
        truncated: bool,
    ) -> Signals {
        let route_scores = self
            .routes
            .iter()
            .map(|examples| {
                examples
                    .iter()
                    .map(|e| dot(e, embedding))
                    .fold(f32::NEG_INFINITY, f32::max)
                    .max(-1.0)
            })
            .collect();
        let keywords = self.keywords.iter().map(|re| re.is_match(text)).collect();
        Signals {
            route_scores,
            keywords,
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            truncated,
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
