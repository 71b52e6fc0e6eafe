//! A simulated embedding model for scaling benchmarks only: it sleeps a
//! fixed time per forward pass and returns deterministic unit vectors derived
//! from each text. It is never a default and never used for routing.

use std::time::{Duration, Instant};

use crate::batcher::EmbeddingModel;
use crate::encoder::Encoded;
use crate::error::EncoderError;

/// Fixed-cost stand-in for a model.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedModel {
    /// Time one forward pass takes, whatever its size.
    pub cost: Duration,
    /// Width of the vectors.
    pub dim: usize,
}

impl EmbeddingModel for SimulatedModel {
    fn encode(&self, texts: &[&str]) -> Result<Encoded, EncoderError> {
        let started = Instant::now();
        std::thread::sleep(self.cost);
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| vector(t, self.dim)).collect();
        let token_counts: Vec<usize> = texts
            .iter()
            .map(|t| t.split_whitespace().count() + 2)
            .collect();
        Ok(Encoded {
            windows: embeddings.iter().map(|e| vec![e.clone()]).collect(),
            window_tokens: token_counts.iter().map(|&t| vec![t]).collect(),
            embeddings,
            truncated: vec![false; texts.len()],
            token_counts,
            tokens: Vec::new(),
            tokenize: Duration::ZERO,
            forward: started.elapsed(),
        })
    }
}

/// A unit vector that depends only on the text (FNV-1a seeded xorshift).
fn vector(text: &str, dim: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_distinct() {
        let m = SimulatedModel {
            cost: Duration::ZERO,
            dim: 16,
        };
        let a = m
            .encode(&["hello", "world", "hello"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.embeddings[0], a.embeddings[2]);
        assert_ne!(a.embeddings[0], a.embeddings[1]);
        let norm: f32 = a.embeddings[1].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}
