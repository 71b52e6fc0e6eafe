//! Encoder micro-benchmark: latency of one short prompt and throughput of a
//! batch, on the CPU, with the real MiniLM model.
//!
//! `cargo run --release -p routemesh-classifier-worker --example encode_bench -- [MODEL_DIR]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use routemesh_classifier_worker::Encoder;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let encoder = Encoder::load(&dir, 256)?;
    // 16 tokens with [CLS] and [SEP].
    let short = "What is the best way to learn linear algebra quickly for exams?";
    let n = encoder.encode(&[short])?.token_counts[0];
    for _ in 0..20 {
        encoder.encode(&[short])?;
    }
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        encoder.encode(&[short])?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "batch 1 x {n} tokens: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );

    let prompt32 = "Please explain how the gradient descent algorithm converges on convex functions and why the step size matters so much";
    let batch: Vec<&str> = std::iter::repeat_n(prompt32, 32).collect();
    let tokens = encoder.encode(&batch[..1])?.token_counts[0];
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        encoder.encode(&batch)?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "batch 32 x {tokens} tokens: {:.0} prompts/s",
        (rounds * 32) as f64 / secs
    );
    Ok(())
}
