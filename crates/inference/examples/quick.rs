//! A probe of one case (not the benchmark: scripts/bench-encoder.sh is):
//! `cargo run --release -p routemesh-inference --example quick -- [int8|bf16|f32] [TOKENS] [BATCH]`
//! prints p50 over 3 s of back-to-back calls. For perf: run it under `perf record`.
use std::time::Instant;

use routemesh_inference::{Bert, Precision};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let precision: Precision = args.next().unwrap_or_else(|| "int8".into()).parse()?;
    let tokens: usize = args.next().map_or(Ok(256), |s| s.parse())?;
    let batch: usize = args.next().map_or(Ok(1), |s| s.parse())?;
    let dir = std::path::Path::new("models/all-MiniLM-L6-v2");
    let model = Bert::load(dir, precision)?;
    // ids of ordinary wordpieces; the exact text does not change the cost
    let row: Vec<u32> = std::iter::once(101)
        .chain((0..tokens.saturating_sub(2)).map(|i| 2000 + (i as u32 * 37) % 20000))
        .chain(std::iter::once(102))
        .collect();
    let rows: Vec<&[u32]> = vec![row.as_slice(); batch];
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < 3.0 {
        let t = Instant::now();
        model.embed(&rows)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    println!(
        "{precision} {tokens} tokens × {batch}: p50 {p50:.3} ms, {:.0} prompts/s",
        batch as f64 / p50 * 1e3
    );
    Ok(())
}
