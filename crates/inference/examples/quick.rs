//! Quick look: latency per precision and cosine to f32 (a probe, not the benchmark).
use routemesh_inference::{Bert, Precision};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new("models/all-MiniLM-L6-v2");
    let mut tok =
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| e.to_string())?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| e.to_string())?;
    let text = "Please explain how the gradient descent algorithm converges on convex functions and why the step size matters so much in practice. ".repeat(20);
    let ids = tok
        .encode(text.as_str(), true)
        .map_err(|e| e.to_string())?
        .get_ids()
        .to_vec();
    let cut = |n: usize| {
        let mut v = ids[..n - 1].to_vec();
        v.push(102);
        v
    };
    let models: Vec<Bert> = Precision::ALL
        .iter()
        .map(|&p| Bert::load(dir, p))
        .collect::<Result<_, _>>()?;
    let r16 = cut(16);
    let r128 = cut(128);
    let r32 = cut(32);
    let f32e = models[0].embed(&[&r128])?;
    for m in &models {
        let e = m.embed(&[&r128])?;
        let cos: f32 = e[0].iter().zip(&f32e[0]).map(|(a, b)| a * b).sum();
        for (name, rows, reps) in [
            ("16", vec![r16.as_slice()], 300),
            ("128", vec![r128.as_slice()], 60),
            ("32x32", vec![r32.as_slice(); 32], 10),
        ] {
            let mut times = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                m.embed(&rows)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            let p50 = times[times.len() / 2];
            println!(
                "{:5} {:6} p50 {:8.3} ms  ({:.0} prompts/s)  cos128 {:.6}",
                m.precision().to_string(),
                name,
                p50,
                rows.len() as f64 / p50 * 1e3,
                cos
            );
        }
    }
    Ok(())
}
