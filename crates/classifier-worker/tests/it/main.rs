//! Integration tests of the classifier worker with the real MiniLM model.

#![allow(unreachable_pub)]

mod embedded;
mod encoder;
mod hf;

use std::path::PathBuf;

/// The MiniLM folder: `$ROUTEMESH_MODEL_DIR` or `<workspace>/models/all-MiniLM-L6-v2`.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("ROUTEMESH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the MiniLM model is missing at {}: run scripts/fetch-model.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
