//! Integration tests of the classifier worker with the real MiniLM model.

#![allow(unreachable_pub)]

mod embedded;
mod encoder;
mod hf;
mod windows;

/// The MiniLM folder: `$ROUTEMESH_MODEL_DIR` or `<workspace>/models/all-MiniLM-L6-v2`.
pub use routemesh_test_support::model_dir;

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
