//! The accuracy gate of the reduced precisions (issue 17): on 1,200 real
//! prompts of mixed length (tests/fixtures/gate_prompts.jsonl, built from
//! shared/data — MMLU-Pro questions, prompt-injection validation texts,
//! presidio's synthetic PII texts; see tests/fixtures/README.md), each
//! precision's embedding is compared with the f32 one: the gate is a mean
//! cosine ≥ 0.999 and a minimum ≥ 0.995. Every precision the config's
//! `auto` picks on some CPU (int8, bf16) must pass it; the figures of every precision are printed per
//! source (`cargo test -p routemesh-inference --test gate -- --nocapture`).
//!
//! The f32 path itself is held to sentence-transformers' embeddings
//! (the classifier worker's reference fixture).

use std::collections::BTreeMap;
use std::path::PathBuf;

use routemesh_inference::{Bert, Isa, Precision};

/// Tokens per prompt, as the encoder's default `max_tokens`.
const MAX_TOKENS: usize = 256;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("ROUTEMESH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "the MiniLM model is missing at {}: run scripts/fetch-model.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

fn tokenizer() -> tokenizers::Tokenizer {
    let path = model_dir().join("tokenizer.json");
    let mut t = tokenizers::Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    t.with_padding(None);
    t.with_truncation(None).unwrap_or_else(|e| panic!("{e}"));
    t
}

/// Token ids of `text`, cut like the encoder does: the first 255, then [SEP].
fn ids(tok: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    let ids = tok
        .encode(text, true)
        .unwrap_or_else(|e| panic!("{e}"))
        .get_ids()
        .to_vec();
    if ids.len() <= MAX_TOKENS {
        return ids;
    }
    let mut out = ids[..MAX_TOKENS - 1].to_vec();
    out.extend(ids.last());
    out
}

/// Embeddings of `rows`, batched 32 at a time in order of length (as the
/// batcher would see them), returned in input order.
fn embed_all(model: &Bert, rows: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let mut out = vec![Vec::new(); rows.len()];
    for chunk in order.chunks(32) {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| rows[i].as_slice()).collect();
        let embedded = model.embed(&batch).unwrap_or_else(|e| panic!("{e}"));
        for (&i, e) in chunk.iter().zip(embedded) {
            out[i] = e;
        }
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[derive(serde::Deserialize)]
struct Prompt {
    source: String,
    text: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    n: usize,
    sum: f64,
    min: f64,
}

impl Stats {
    fn add(&mut self, c: f64) {
        if self.n == 0 || c < self.min {
            self.min = c;
        }
        self.n += 1;
        self.sum += c;
    }

    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }
}

#[test]
fn the_automatic_precisions_pass_the_accuracy_gate_on_real_prompts() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gate_prompts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let prompts: Vec<Prompt> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect();
    assert!(
        prompts.len() >= 1000,
        "the gate needs at least 1,000 prompts"
    );
    let tok = tokenizer();
    let rows: Vec<Vec<u32>> = prompts.iter().map(|p| ids(&tok, &p.text)).collect();
    let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert!(
        lengths.iter().any(|&n| n < 16) && lengths.contains(&MAX_TOKENS),
        "mixed lengths: from a few tokens to the window"
    );

    let dir = model_dir();
    let reference = embed_all(
        &Bert::load(&dir, Precision::F32).unwrap_or_else(|e| panic!("{e}")),
        &rows,
    );
    let auto = Precision::automatic(Isa::detect());
    let mut verdicts = BTreeMap::new();
    for precision in [Precision::Bf16, Precision::Int8] {
        let model = Bert::load(&dir, precision).unwrap_or_else(|e| panic!("{e}"));
        let got = embed_all(&model, &rows);
        let mut all = Stats::default();
        let mut by_source: BTreeMap<&str, Stats> = BTreeMap::new();
        for ((p, a), b) in prompts.iter().zip(&got).zip(&reference) {
            let c = cosine(a, b);
            all.add(c);
            by_source.entry(p.source.as_str()).or_default().add(c);
        }
        println!(
            "{precision}: mean cosine to f32 {:.6}, min {:.6} over {} prompts",
            all.mean(),
            all.min,
            all.n
        );
        for (source, s) in &by_source {
            println!(
                "  {source:16} n {:4}  mean {:.6}  min {:.6}",
                s.n,
                s.mean(),
                s.min
            );
        }
        verdicts.insert(
            precision.as_str(),
            (all.mean() >= 0.999 && all.min >= 0.995, all),
        );
    }
    println!("auto picks {auto} on this CPU");
    // `auto` picks int8 on VNNI CPUs and bf16 on BF16 ones: both must pass,
    // whatever this CPU is (without the instructions the portable kernels
    // compute the same products).
    for candidate in [Precision::Int8, Precision::Bf16] {
        let (pass, s) = verdicts[candidate.as_str()];
        assert!(
            pass,
            "{candidate} can be `auto`'s pick but fails the gate: mean {:.6}, min {:.6}",
            s.mean(),
            s.min
        );
    }
}

#[test]
fn the_f32_path_reproduces_sentence_transformers() {
    let path =
        workspace().join("crates/classifier-worker/tests/fixtures/reference_embeddings.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let items = fixture["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items"));
    let tok = tokenizer();
    let model = Bert::load(&model_dir(), Precision::F32).unwrap_or_else(|e| panic!("{e}"));
    // one batch with every length together: packing must not mix sequences
    let rows: Vec<Vec<u32>> = items
        .iter()
        .map(|i| ids(&tok, i["text"].as_str().unwrap_or_default()))
        .collect();
    let batch: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    let got = model.embed(&batch).unwrap_or_else(|e| panic!("{e}"));
    for (item, e) in items.iter().zip(&got) {
        let want: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap_or_else(|| panic!("no embedding"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
            .collect();
        let worst = e
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{:?}: max abs diff {worst}", item["text"]);
    }
}
