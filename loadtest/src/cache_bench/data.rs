//! The benchmark's vectors: real MiniLM embeddings read from a JSONL file, more derived from
//! them to reach the sizes asked for, paraphrase-like queries, the exact nearest neighbours
//! (brute force) and answer bodies that say which entry they belong to. Pure apart from reading
//! the file; the RNG is seeded by the caller.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::CacheBenchError;

/// Norm of the Gaussian noise added to a derived vector (before renormalising).
pub const DERIVED_NOISE: f32 = 0.15;
/// Largest weight of the second real embedding in a derived vector.
pub const DERIVED_MIX: f32 = 0.5;
/// Base vectors of the synthetic low-rank fallback.
pub const SYNTHETIC_RANK: usize = 64;
/// Dimension of the synthetic fallback (MiniLM's).
pub const SYNTHETIC_DIM: usize = 384;
/// Norm of the noise of a synthetic vector, relative to its low-rank part.
const SYNTHETIC_NOISE: f32 = 0.1;

/// Where the vectors come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Source {
    /// A JSONL file whose lines carry a `"vector"` array (real embeddings).
    Embeddings(PathBuf),
    /// Random low-rank vectors: no real data.
    Synthetic,
}

impl Source {
    /// The first `*.jsonl` (by name) in `dir`, if any.
    pub fn find_default(dir: &Path) -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files.into_iter().next()
    }
}

/// Many vectors of one dimension, stored contiguously.
#[derive(Debug, Clone)]
pub struct Vectors {
    pub dim: usize,
    data: Vec<f32>,
}

impl Vectors {
    fn with_capacity(dim: usize, n: usize) -> Vectors {
        Vectors {
            dim,
            data: Vec::with_capacity(dim * n),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn get(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn push(&mut self, v: &[f32]) {
        self.data.extend_from_slice(v);
    }
}

#[derive(Deserialize)]
struct Line {
    vector: Vec<f32>,
}

/// Reads every line's `"vector"` (other fields ignored), normalised; all must share a
/// dimension.
pub fn read_embeddings(path: &Path) -> Result<Vectors, CacheBenchError> {
    let bad = |detail: String| CacheBenchError::Data {
        path: path.to_owned(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut out: Option<Vectors> = None;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Line { vector } =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
        let v = normalised(vector).ok_or_else(|| bad(format!("line {}: zero vector", n + 1)))?;
        let vs = out.get_or_insert_with(|| Vectors::with_capacity(v.len(), 10_000));
        if v.len() != vs.dim {
            return Err(bad(format!(
                "line {}: {} dimensions, earlier lines {}",
                n + 1,
                v.len(),
                vs.dim
            )));
        }
        vs.push(&v);
    }
    out.filter(|v| !v.is_empty())
        .ok_or_else(|| bad("no vectors".into()))
}

/// The stored vectors of one run: `n` vectors, the real ones first (in a seeded random order),
/// then derived ones.
#[derive(Debug)]
pub struct Dataset {
    pub vectors: Vectors,
    /// Real embeddings among `vectors` (0 for synthetic data).
    pub real: usize,
}

/// Builds `n` vectors from `source` (see [`derive`] and [`synthetic`]).
pub fn dataset(source: &Source, n: usize, seed: u64) -> Result<Dataset, CacheBenchError> {
    let mut rng = StdRng::seed_from_u64(seed);
    match source {
        Source::Embeddings(path) => {
            let base = read_embeddings(path)?;
            Ok(derive(&base, n, &mut rng))
        }
        Source::Synthetic => Ok(Dataset {
            vectors: synthetic(SYNTHETIC_DIM, n, &mut rng),
            real: 0,
        }),
    }
}

/// `n` vectors from `base`: the real ones in a random order (as many as fit), then
/// `normalise(e_i + b·e_j + g)` with `i ≠ j` uniform over `base`, `b ~ U(0, DERIVED_MIX)` and
/// `g` Gaussian of expected norm `DERIVED_NOISE`: each derived vector stays on the real
/// embeddings' manifold (a blend of two real prompts, mostly the first) instead of being
/// isotropic noise.
pub fn derive(base: &Vectors, n: usize, rng: &mut StdRng) -> Dataset {
    let dim = base.dim;
    let mut order: Vec<usize> = (0..base.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let real = n.min(base.len());
    let mut out = Vectors::with_capacity(dim, n);
    for &i in &order[..real] {
        out.push(base.get(i));
    }
    let mut v = vec![0.0f32; dim];
    while out.len() < n {
        derive_one(base, rng, &mut v);
        out.push(&v);
    }
    Dataset { vectors: out, real }
}

/// One derived vector into `v` (see [`derive`]).
pub fn derive_one(base: &Vectors, rng: &mut StdRng, v: &mut [f32]) {
    let dim = base.dim;
    let sigma = DERIVED_NOISE / (dim as f32).sqrt();
    let i = rng.random_range(0..base.len());
    let j = rng.random_range(0..base.len());
    let b: f32 = rng.random_range(0.0..DERIVED_MIX);
    let (ei, ej) = (base.get(i), base.get(j));
    for k in 0..dim {
        let g: f32 = rng.sample(StandardNormal);
        v[k] = ei[k] + b * ej[k] + sigma * g;
    }
    normalise_in_place(v);
}

/// `v` plus Gaussian noise, renormalised, so that its cosine to `v` is about `cos`.
pub fn perturb(v: &[f32], cos: f32, rng: &mut StdRng, out: &mut [f32]) {
    // for noise g ⟂ v of norm t: cos = 1 / sqrt(1 + t²)
    let t = (1.0 / (cos * cos) - 1.0).max(0.0).sqrt();
    let sigma = t / (v.len() as f32).sqrt();
    for (o, x) in out.iter_mut().zip(v) {
        let g: f32 = rng.sample(StandardNormal);
        *o = x + sigma * g;
    }
    normalise_in_place(out);
}

/// `n` synthetic vectors: Gaussian combinations of [`SYNTHETIC_RANK`] random base vectors plus
/// a little noise, normalised (low-rank like embeddings; isotropic vectors would make recall
/// meaningless).
pub fn synthetic(dim: usize, n: usize, rng: &mut StdRng) -> Vectors {
    let bases: Vec<Vec<f32>> = (0..SYNTHETIC_RANK)
        .map(|_| {
            let mut b: Vec<f32> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
            normalise_in_place(&mut b);
            b
        })
        .collect();
    let sigma = SYNTHETIC_NOISE / (dim as f32).sqrt();
    let mut out = Vectors::with_capacity(dim, n);
    let mut v = vec![0.0f32; dim];
    for _ in 0..n {
        v.iter_mut().for_each(|x| *x = 0.0);
        for b in &bases {
            let w: f32 = rng.sample(StandardNormal);
            v.iter_mut().zip(b).for_each(|(x, y)| *x += w * y);
        }
        let norm = dot(&v, &v).sqrt();
        for x in &mut v {
            let g: f32 = rng.sample(StandardNormal);
            *x += norm * sigma * g;
        }
        normalise_in_place(&mut v);
        out.push(&v);
    }
    out
}

/// Paraphrase-like queries: each a stored vector plus Gaussian noise, renormalised, with the
/// noise scaled so the cosine to its source is drawn uniformly from `cos_range`.
#[derive(Debug)]
pub struct Queries {
    pub vectors: Vectors,
    /// The stored vector each query was made from.
    pub source: Vec<usize>,
    /// Realised cosine to the source.
    pub source_cos: Vec<f32>,
}

pub fn queries(stored: &Vectors, q: usize, cos_range: (f32, f32), rng: &mut StdRng) -> Queries {
    let dim = stored.dim;
    let mut out = Queries {
        vectors: Vectors::with_capacity(dim, q),
        source: Vec::with_capacity(q),
        source_cos: Vec::with_capacity(q),
    };
    let mut v = vec![0.0f32; dim];
    for _ in 0..q {
        let s = rng.random_range(0..stored.len());
        let c: f32 = rng.random_range(cos_range.0..=cos_range.1);
        let src = stored.get(s);
        perturb(src, c, rng, &mut v);
        out.source_cos.push(dot(&v, src));
        out.vectors.push(&v);
        out.source.push(s);
    }
    out
}

/// Queries compared with each stored vector while it is in cache: the scan is memory-bound
/// otherwise (every query would stream all stored vectors from RAM).
const EXACT_BLOCK: usize = 32;

/// The exact nearest stored vector (highest dot product) of every query, and its similarity;
/// brute force over `threads` threads.
pub fn exact_nearest(stored: &Vectors, queries: &Vectors, threads: usize) -> Vec<(usize, f32)> {
    let q = queries.len();
    let per = q.div_ceil(threads.max(1)).max(1);
    let mut out = vec![(0usize, f32::NEG_INFINITY); q];
    std::thread::scope(|s| {
        for (chunk_no, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || {
                for (block_no, block) in chunk.chunks_mut(EXACT_BLOCK).enumerate() {
                    let first = chunk_no * per + block_no * EXACT_BLOCK;
                    for i in 0..stored.len() {
                        let v = stored.get(i);
                        for (k, slot) in block.iter_mut().enumerate() {
                            let d = dot(queries.get(first + k), v);
                            if d > slot.1 {
                                *slot = (i, d);
                            }
                        }
                    }
                }
            });
        }
    });
    out
}

/// The cache's own dot product (cosine of unit vectors), so brute force and
/// the cache compute similarity identically.
pub use routemesh_cache::dot;

fn normalise_in_place(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn normalised(mut v: Vec<f32>) -> Option<Vec<f32>> {
    let n = dot(&v, &v).sqrt();
    (n > 0.0 && n.is_finite()).then(|| {
        v.iter_mut().for_each(|x| *x /= n);
        v
    })
}

const BODY_PREFIX: &str = "{\"bench_entry\":";

/// A chat-completion-like JSON answer of about `bytes` bytes (never less than its skeleton)
/// that names entry `idx`, so a hit tells which entry answered.
pub fn body(idx: usize, bytes: usize) -> String {
    let head = format!(
        "{BODY_PREFIX}{idx},\"object\":\"chat.completion\",\"model\":\"bench\",\"choices\":[{{\"index\":0,\
         \"finish_reason\":\"stop\",\"message\":{{\"role\":\"assistant\",\"content\":\""
    );
    let tail = "\"}}]}";
    const FILLER: &str = "The answer is (C): the cache benchmark pads its bodies to a realistic \
                          size with this sentence. ";
    let room = bytes.saturating_sub(head.len() + tail.len());
    let content: String = FILLER.chars().cycle().take(room).collect();
    format!("{head}{content}{tail}")
}

/// The entry named by a [`body`].
pub fn body_entry(body: &[u8]) -> Option<usize> {
    let rest = body.strip_prefix(BODY_PREFIX.as_bytes())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Resident set size of this process in bytes (`VmRSS`), or 0 where unreadable.
pub fn rss_bytes() -> u64 {
    proc_status_kb("VmRSS:") * 1024
}

/// Peak resident set size of this process in bytes (`VmHWM`), or 0 where unreadable.
pub fn peak_rss_bytes() -> u64 {
    proc_status_kb("VmHWM:") * 1024
}

fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check_unit(v: &[f32]) {
        assert!((dot(v, v) - 1.0).abs() < 1e-4, "norm² {}", dot(v, v));
    }

    #[test]
    fn body_round_trips_and_has_the_asked_size() {
        let b = body(12_345, 600);
        assert_eq!(b.len(), 600);
        assert!(serde_json::from_str::<serde_json::Value>(&b).is_ok(), "{b}");
        assert_eq!(body_entry(b.as_bytes()), Some(12_345));
        assert_eq!(body_entry(b"{\"other\":1}"), None);
        // too small a size still gives a valid body
        assert_eq!(body_entry(body(7, 10).as_bytes()), Some(7));
    }

    #[test]
    fn derived_and_synthetic_vectors_are_unit_and_seeded() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = synthetic(16, 20, &mut rng);
        base.data.chunks(16).for_each(check_unit);
        let a = derive(&base, 50, &mut StdRng::seed_from_u64(9));
        let b = derive(&base, 50, &mut StdRng::seed_from_u64(9));
        assert_eq!((a.vectors.len(), a.real), (50, 20));
        assert_eq!(a.vectors.data, b.vectors.data);
        a.vectors.data.chunks(16).for_each(check_unit);
        let few = derive(&base, 5, &mut rng);
        assert_eq!((few.vectors.len(), few.real), (5, 5));
    }

    #[test]
    fn queries_hit_their_cosine_and_exact_search_finds_the_best() {
        let mut rng = StdRng::seed_from_u64(3);
        let stored = synthetic(384, 300, &mut rng);
        let qs = queries(&stored, 40, (0.90, 0.95), &mut rng);
        for c in &qs.source_cos {
            assert!((0.87..=0.97).contains(c), "cos {c}");
        }
        let nn = exact_nearest(&stored, &qs.vectors, 3);
        assert_eq!(nn.len(), 40);
        for (k, (i, s)) in nn.iter().enumerate() {
            let q = qs.vectors.get(k);
            assert!((dot(q, stored.get(*i)) - s).abs() < 1e-6);
            let best = (0..stored.len())
                .map(|j| dot(q, stored.get(j)))
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(*s, best);
        }
    }

    #[test]
    fn rss_is_read_on_linux() {
        assert!(rss_bytes() > 0);
        assert!(peak_rss_bytes() >= rss_bytes() / 2);
    }
}
