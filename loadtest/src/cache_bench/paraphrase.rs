//! The paraphrase curve: would the cache serve the right answer? Every pair
//! (`a`, `b`, `duplicate`) gets a scope of its own in a real [`Cache`]; `a`'s
//! answer is stored under the real encoder's embedding of `a`, then `b` is
//! looked up with threshold −1 (below any cosine), and the similarity the cache reports decides,
//! per threshold, whether `b` would have been served `a`'s answer. Hit
//! precision = served pairs that are duplicates / served pairs; paraphrase
//! recall = served duplicates / duplicates. Near-miss pairs (a `kind` per
//! pair: antonym, negation, number, unit, entity, date, question word, and
//! true paraphrases) are reported per kind.
//!
//! No verifier exists yet (issue 19, point 1): every row is the cosine
//! threshold alone, the baseline a verifier has to beat.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use routemesh_cache::{Cache, CacheSettings, Insert, Lookup, LookupResult, Scope};
use routemesh_classifier_worker::{Encoder, EncoderOptions};
use routemesh_common::config::EncoderPrecision;
use serde::{Deserialize, Serialize};

use super::sized::answer;
use super::{CacheBenchError, barrier};

/// Texts per encoder call.
const CHUNK: usize = 32;
/// Thresholds of the curve: 0.70, 0.71, ..., 0.99.
const CURVE: std::ops::RangeInclusive<u32> = 70..=99;
/// Thresholds of the per-kind table.
const KIND_THRESHOLDS: [f32; 4] = [0.85, 0.90, 0.95, 0.97];
/// The hit precision a verified cache must reach (issue 19's target).
pub const TARGET_PRECISION: f64 = 0.99;

/// One pair of prompts.
#[derive(Debug, Clone, Deserialize)]
struct Pair {
    a: String,
    b: String,
    duplicate: bool,
    #[serde(default)]
    kind: Option<String>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct ParaphraseSpec {
    /// Pairs for the curve (JSON lines `{a, b, duplicate}`).
    pub pairs: PathBuf,
    /// Near-miss pairs with a `kind` each.
    pub near_misses: Option<PathBuf>,
    pub model_dir: PathBuf,
    pub precision: EncoderPrecision,
    /// Use at most this many pairs of `pairs` (the first ones).
    pub limit: Option<usize>,
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f32,
    pub served: usize,
    pub served_duplicates: usize,
    pub precision: f64,
    pub recall: f64,
}

/// Near-miss pairs of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindRow {
    pub kind: String,
    pub duplicate: bool,
    pub pairs: usize,
    pub mean_similarity: f64,
    /// Share served at each of [`KIND_THRESHOLDS`].
    pub served: Vec<f64>,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParaphraseResult {
    pub pairs_file: String,
    pub pairs: usize,
    pub duplicates: usize,
    pub texts_encoded: usize,
    pub encode_secs: f64,
    pub encoder_precision: String,
    /// Lookups that were not hits (should be 0: threshold −1).
    pub not_hits: usize,
    pub curve: Vec<CurvePoint>,
    pub near_misses_file: Option<String>,
    pub kind_thresholds: Vec<f32>,
    pub kinds: Vec<KindRow>,
    /// Near-miss pairs one by one: kind, duplicate, similarity, a, b.
    pub near_miss_pairs: Vec<(String, bool, f32, String, String)>,
}

fn read_pairs(path: &Path, limit: Option<usize>) -> Result<Vec<Pair>, CacheBenchError> {
    let bad = |detail: String| CacheBenchError::Data {
        path: path.to_owned(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let p: Pair = serde_json::from_str(&line).map_err(|e| {
            bad(format!(
                "line {}: {e} (want {{\"a\", \"b\", \"duplicate\"}})",
                n + 1
            ))
        })?;
        out.push(p);
    }
    if out.is_empty() {
        return Err(bad("no pairs".into()));
    }
    Ok(out)
}

/// Every distinct text's embedding, the seconds encoding took, and the
/// precision the encoder ran in.
struct Embedded {
    vectors: HashMap<String, Vec<f32>>,
    secs: f64,
    precision: String,
}

fn embed_all(spec: &ParaphraseSpec, texts: &[&str]) -> Result<Embedded, CacheBenchError> {
    let mut opts = EncoderOptions::new(256);
    opts.precision = spec.precision;
    let encoder = Encoder::load(&spec.model_dir, &opts).map_err(|e| {
        CacheBenchError::Config(format!(
            "cannot load the encoder from {}: {e} (scripts/fetch-model.sh fetches it)",
            spec.model_dir.display()
        ))
    })?;
    let started = Instant::now();
    let mut out = HashMap::with_capacity(texts.len());
    let mut last = Instant::now();
    for (c, chunk) in texts.chunks(CHUNK).enumerate() {
        let enc = encoder
            .encode(chunk)
            .map_err(|e| CacheBenchError::Config(format!("encoding failed: {e}")))?;
        for (t, v) in chunk.iter().zip(enc.embeddings) {
            out.insert((*t).to_owned(), v);
        }
        if last.elapsed() > Duration::from_secs(10) {
            last = Instant::now();
            eprintln!(
                "    [paraphrase] {}/{} texts encoded, {:.0} s so far",
                ((c + 1) * CHUNK).min(texts.len()),
                texts.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(Embedded {
        vectors: out,
        secs: started.elapsed().as_secs_f64(),
        precision: encoder.precision_in_use(),
    })
}

/// The similarity the cache reports for `b` after storing `a`, per pair
/// (`None`: not a hit).
async fn similarities(
    pairs: &[&Pair],
    vectors: &HashMap<String, Vec<f32>>,
) -> Result<Vec<Option<f32>>, CacheBenchError> {
    let settings = CacheSettings {
        shards: 4,
        capacity: pairs.len().max(1),
        ttl: Duration::from_secs(3600),
        ..CacheSettings::default()
    };
    let cache = Cache::start(settings).await?;
    let scope = |i: usize| Scope {
        tenant: format!("pair-{i}"),
        decision: "general".into(),
        model: "bench-model".into(),
        context: 0,
    };
    let vector = |t: &str| vectors.get(t).cloned();
    for (i, p) in pairs.iter().enumerate() {
        cache.insert(Insert {
            scope: scope(i),
            key: 2 * i as u128 + 1,
            vector: vector(&p.a),
            answer: answer(i, 600),
            ttl: None,
        });
        if i % 1000 == 999 {
            barrier(&cache).await?;
        }
    }
    let stats = barrier(&cache).await?;
    eprintln!(
        "    [paraphrase] stored {} entries of {} inserts ({} dropped, {} evicted)",
        stats.entries,
        pairs.len(),
        stats.dropped,
        stats.evictions
    );
    let mut out = Vec::with_capacity(pairs.len());
    let mut other = [0usize; 3];
    for (i, p) in pairs.iter().enumerate() {
        let got = cache
            .lookup(
                Lookup {
                    scope: scope(i),
                    key: 2 * i as u128 + 2,
                    vector: vector(&p.b),
                    // below any cosine: every pair gets its similarity, negative ones too
                    threshold: -1.0,
                },
                Duration::from_secs(1),
            )
            .await;
        out.push(match got {
            LookupResult::Hit(h) => Some(h.similarity),
            LookupResult::Miss => {
                other[0] += 1;
                None
            }
            LookupResult::TimedOut => {
                other[1] += 1;
                None
            }
            LookupResult::Unavailable => {
                other[2] += 1;
                None
            }
        });
    }
    if other.iter().any(|n| *n > 0) {
        eprintln!(
            "    [paraphrase] not hits: {} misses, {} timed out, {} unavailable",
            other[0], other[1], other[2]
        );
    }
    cache.shutdown().await;
    Ok(out)
}

fn curve(pairs: &[Pair], sims: &[Option<f32>]) -> Vec<CurvePoint> {
    let duplicates = pairs.iter().filter(|p| p.duplicate).count();
    CURVE
        .map(|c| {
            let t = c as f32 / 100.0;
            let served: Vec<bool> = pairs
                .iter()
                .zip(sims)
                .filter(|(_, s)| s.is_some_and(|s| s >= t))
                .map(|(p, _)| p.duplicate)
                .collect();
            let good = served.iter().filter(|d| **d).count();
            CurvePoint {
                threshold: t,
                served: served.len(),
                served_duplicates: good,
                precision: if served.is_empty() {
                    1.0
                } else {
                    good as f64 / served.len() as f64
                },
                recall: good as f64 / duplicates.max(1) as f64,
            }
        })
        .collect()
}

fn kinds(pairs: &[Pair], sims: &[Option<f32>]) -> Vec<KindRow> {
    let mut by: BTreeMap<(bool, String), Vec<f32>> = BTreeMap::new();
    for (p, s) in pairs.iter().zip(sims) {
        let kind = p.kind.clone().unwrap_or_else(|| "unlabelled".into());
        by.entry((p.duplicate, kind))
            .or_default()
            .push(s.unwrap_or(f32::NEG_INFINITY));
    }
    by.into_iter()
        .map(|((duplicate, kind), s)| KindRow {
            kind,
            duplicate,
            pairs: s.len(),
            mean_similarity: s.iter().map(|x| f64::from(x.max(0.0))).sum::<f64>() / s.len() as f64,
            served: KIND_THRESHOLDS
                .iter()
                .map(|t| s.iter().filter(|x| *x >= t).count() as f64 / s.len() as f64)
                .collect(),
        })
        .collect()
}

pub async fn run(spec: &ParaphraseSpec) -> Result<ParaphraseResult, CacheBenchError> {
    let pairs = read_pairs(&spec.pairs, spec.limit)?;
    let near = match &spec.near_misses {
        Some(p) => read_pairs(p, None)?,
        None => Vec::new(),
    };
    let mut texts: Vec<&str> = pairs
        .iter()
        .chain(&near)
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    texts.sort_unstable();
    texts.dedup();
    eprintln!(
        "    [paraphrase] {} pairs + {} near-miss pairs, {} distinct texts: encoding...",
        pairs.len(),
        near.len(),
        texts.len()
    );
    let spec2 = spec.clone();
    let owned: Vec<String> = texts.iter().map(|t| (*t).to_owned()).collect();
    let Embedded {
        vectors,
        secs: encode_secs,
        precision,
    } = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        embed_all(&spec2, &refs)
    })
    .await
    .map_err(|e| CacheBenchError::Config(format!("the encoder thread panicked: {e}")))??;
    let all: Vec<&Pair> = pairs.iter().chain(&near).collect();
    let sims = similarities(&all, &vectors).await?;
    let (main_sims, near_sims) = sims.split_at(pairs.len());
    let not_hits = sims.iter().filter(|s| s.is_none()).count();
    Ok(ParaphraseResult {
        pairs_file: spec.pairs.display().to_string(),
        pairs: pairs.len(),
        duplicates: pairs.iter().filter(|p| p.duplicate).count(),
        texts_encoded: texts.len(),
        encode_secs,
        encoder_precision: precision,
        not_hits,
        curve: curve(&pairs, main_sims),
        near_misses_file: spec.near_misses.as_ref().map(|p| p.display().to_string()),
        kind_thresholds: KIND_THRESHOLDS.to_vec(),
        kinds: kinds(&near, near_sims),
        near_miss_pairs: near
            .iter()
            .zip(near_sims)
            .map(|(p, s)| {
                (
                    p.kind.clone().unwrap_or_default(),
                    p.duplicate,
                    s.unwrap_or(f32::NAN),
                    p.a.clone(),
                    p.b.clone(),
                )
            })
            .collect(),
    })
}

impl ParaphraseResult {
    /// The report in Markdown; `header` is the run's header block.
    pub fn markdown(&self, header: &str) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "# Semantic cache: the paraphrase curve\n\n{header}");
        let _ = writeln!(
            s,
            "- pairs: `{}`, {} pairs ({} duplicates), {} distinct texts encoded in {:.1} s \
             (encoder {})\n- verifier: none (the cosine threshold alone)\n",
            self.pairs_file,
            self.pairs,
            self.duplicates,
            self.texts_encoded,
            self.encode_secs,
            self.encoder_precision
        );
        if self.not_hits > 0 {
            let _ = writeln!(
                s,
                "**{} lookups were not hits** (threshold −1 should always hit): they count as \
                 not served.\n",
                self.not_hits
            );
        }
        let _ = writeln!(s, "## Hit precision and paraphrase recall by threshold\n");
        let best = self
            .curve
            .iter()
            .filter(|p| p.precision >= TARGET_PRECISION && p.served > 0)
            .max_by(|a, b| a.recall.total_cmp(&b.recall));
        let _ = match best {
            Some(p) => writeln!(
                s,
                "Hit precision ≥ {TARGET_PRECISION} first at threshold {:.2}: recall {:.3} \
                 (target: ≥ 0.6 with a verifier).\n",
                p.threshold, p.recall
            ),
            None => writeln!(
                s,
                "No threshold up to 0.99 reaches hit precision {TARGET_PRECISION}.\n"
            ),
        };
        let _ = writeln!(
            s,
            "| threshold | served | served duplicates | hit precision | paraphrase recall |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
        for p in &self.curve {
            let _ = writeln!(
                s,
                "| {:.2} | {} | {} | {:.3} | {:.3} |",
                p.threshold, p.served, p.served_duplicates, p.precision, p.recall
            );
        }
        if let Some(f) = &self.near_misses_file {
            let _ = writeln!(s, "\n## Near misses and paraphrases by kind (`{f}`)\n");
            let heads: Vec<String> = self
                .kind_thresholds
                .iter()
                .map(|t| format!("served at {t:.2}"))
                .collect();
            let _ = writeln!(
                s,
                "| kind | same question | pairs | mean similarity | {} |",
                heads.join(" | ")
            );
            let _ = writeln!(
                s,
                "|---|---|---:|---:|{}",
                "---:|".repeat(self.kind_thresholds.len())
            );
            for k in &self.kinds {
                let served: Vec<String> = k.served.iter().map(|x| format!("{x:.2}")).collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.3} | {} |",
                    k.kind,
                    if k.duplicate { "yes" } else { "no" },
                    k.pairs,
                    k.mean_similarity,
                    served.join(" | ")
                );
            }
            let _ = writeln!(s, "\n| kind | same question | similarity | a | b |");
            let _ = writeln!(s, "|---|---|---:|---|---|");
            for (kind, dup, sim, a, b) in &self.near_miss_pairs {
                let cell = |t: &str| t.replace('|', "\\|");
                let _ = writeln!(
                    s,
                    "| {kind} | {} | {sim:.3} | {} | {} |",
                    if *dup { "yes" } else { "no" },
                    cell(a),
                    cell(b)
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Method\n\nEach pair is its own scope in a real `Cache` (4 shards, memory only): \
             `a`'s answer is stored under the encoder's embedding of `a`, then `b` is looked up \
             with threshold −1 (below any cosine) and a fresh exact key, so the semantic tier answers with the \
             similarity the gateway would compare with its threshold \
             (`x-routemesh-cache-similarity`). A pair counts as served at threshold t when that \
             similarity is ≥ t."
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(duplicate: bool, kind: &str) -> Pair {
        Pair {
            a: "a".into(),
            b: "b".into(),
            duplicate,
            kind: Some(kind.into()),
        }
    }

    #[test]
    fn the_curve_counts_what_each_threshold_serves() {
        let pairs = vec![
            pair(true, "p"),
            pair(false, "n"),
            pair(true, "p"),
            pair(false, "n"),
        ];
        let sims = vec![Some(0.96), Some(0.93), Some(0.80), None];
        let c = curve(&pairs, &sims);
        let at = |t: f32| {
            c.iter()
                .find(|p| (p.threshold - t).abs() < 1e-6)
                .map(|p| (p.served, p.served_duplicates, p.precision, p.recall))
        };
        assert_eq!(at(0.80), Some((3, 2, 2.0 / 3.0, 1.0)));
        assert_eq!(at(0.90), Some((2, 1, 0.5, 0.5)));
        assert_eq!(at(0.95), Some((1, 1, 1.0, 0.5)));
        // nothing served: precision is vacuous, recall 0
        assert_eq!(at(0.99), Some((0, 0, 1.0, 0.0)));

        let k = kinds(&pairs, &sims);
        let n = k.iter().find(|k| k.kind == "n").map(|k| k.served.clone());
        // 0.93 is served at 0.85 and 0.90; the miss never is
        assert_eq!(n, Some(vec![0.5, 0.5, 0.0, 0.0]));
    }

    #[test]
    fn bad_pair_files_name_the_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("pairs.jsonl");
        std::fs::write(
            &p,
            "{\"a\": \"x\", \"b\": \"y\", \"duplicate\": true}\n{\"a\": 1}\n",
        )
        .expect("write");
        let err = read_pairs(&p, None).expect_err("line 2 is bad").to_string();
        assert!(err.contains("line 2"), "{err}");
        assert_eq!(read_pairs(&p, Some(1)).map(|v| v.len()).ok(), Some(1));
    }
}
