//! One sized case: N entries in ONE shard and ONE scope (so a scope past `flat_below` is
//! searched through the HNSW graph), loaded through `Cache::insert` in batches with
//! `Cache::stats` as the barrier; then sequential lookups of paraphrase-like queries through
//! `Cache::lookup`, timed one by one, each answer checked against the exact nearest neighbour.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use routemesh_cache::{
    Answer, AnswerKind, Cache, CacheSettings, Insert, Lookup, LookupResult, Scope,
};
use serde::{Deserialize, Serialize};

use super::data::{self, Source};
use super::{CacheBenchError, IndexSpec, Latency, Progress, StatsSum, barrier, histogram, record};

/// Cosine of a query to the stored vector it was made from, by default: paraphrase-like.
pub const QUERY_COS: (f32, f32) = (0.90, 0.95);

/// What a sized case does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizedSpec {
    pub source: Source,
    pub seed: u64,
    /// Entries stored.
    pub size: usize,
    pub index: IndexSpec,
    /// Flat index only (sign-bit codes, `index.rerank` nearest rescored exactly):
    /// `index.flat_below` is at least `size`, so the scope never enters the graph.
    pub flat: bool,
    /// Entries also go to a sled store in a temporary folder.
    pub store: bool,
    /// Measured lookups (each also a recall query).
    pub queries: usize,
    /// Lookups before the measured ones, not recorded.
    pub warmup: usize,
    pub body_bytes: usize,
    /// Inserts between two `stats()` barriers.
    pub insert_batch: usize,
    pub deadline_ms: u64,
    /// Threads of the exact search.
    pub threads: usize,
    /// Range of the cosine of a query to the stored vector it is made from.
    #[serde(default = "default_query_cos")]
    pub query_cos: (f32, f32),
}

fn default_query_cos() -> (f32, f32) {
    QUERY_COS
}

impl SizedSpec {
    pub fn label(&self) -> String {
        let index = if self.flat {
            format!("flat, rerank {}", self.index.rerank)
        } else {
            format!(
                "hnsw M={} ef_c={} ef_s={}",
                self.index.m, self.index.ef_construction, self.index.ef_search
            )
        };
        let store = if self.store { ", sled store" } else { "" };
        format!("{} entries, {index}{store}", self.size)
    }
}

/// Where the vectors came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataInfo {
    /// The embeddings file, or `synthetic`.
    pub source: String,
    pub synthetic: bool,
    pub dim: usize,
    /// Real embeddings stored as they are.
    pub real: usize,
    /// Vectors derived from them (or synthetic).
    pub derived: usize,
}

/// Loading N entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InsertResult {
    pub entries: usize,
    /// From the first insert to the last barrier.
    pub secs: f64,
    pub per_sec: f64,
}

/// Memory before and after loading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// RSS with the data, queries and exact answers in memory, before the cache starts.
    pub rss_before: u64,
    pub rss_after: u64,
    /// Peak RSS of the case's process (VmHWM).
    pub rss_peak: u64,
    pub rss_per_entry: f64,
    /// The cache's own `bytes` stat (answers and vectors, approximately).
    pub cache_bytes: u64,
    pub cache_bytes_per_entry: f64,
}

/// Recall@1 of the lookups against exact search.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recall {
    pub queries: usize,
    /// The answer's entry is the exact nearest (or exactly as similar).
    pub correct: usize,
    pub recall_at_1: f64,
    pub hits: usize,
    pub misses: usize,
    pub timed_out: usize,
    pub unavailable: usize,
    /// Hits whose body named no stored entry (should be 0).
    pub unreadable: usize,
    /// Mean cosine of a query to the vector it was made from.
    pub mean_source_cos: f64,
    /// Share of queries whose exact nearest is the vector they were made from.
    pub source_is_nearest: f64,
    /// Mean similarity reported by the cache for hits.
    pub mean_hit_similarity: f64,
}

/// What a sized case measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizedResult {
    pub spec: SizedSpec,
    pub label: String,
    pub data: DataInfo,
    pub insert: InsertResult,
    pub memory: Memory,
    pub stats: StatsSum,
    pub latency: Latency,
    pub recall: Recall,
    /// `Cache::shutdown` (with a store: its flush to disk).
    pub shutdown_secs: f64,
    /// Size of the sled folder after shutdown.
    pub store_bytes_on_disk: Option<u64>,
    /// 1-minute load average when the case ended.
    #[serde(default)]
    pub load_average: String,
}

fn scope() -> Scope {
    Scope {
        tenant: "bench".into(),
        decision: "general".into(),
        model: "bench-model".into(),
        context: 0,
    }
}

pub async fn run(spec: &SizedSpec) -> Result<SizedResult, CacheBenchError> {
    let label = spec.label();
    if spec.size == 0 || spec.queries == 0 {
        return Err(CacheBenchError::Config(
            "size and queries must be positive".into(),
        ));
    }
    let t = Instant::now();
    let ds = data::dataset(&spec.source, spec.size, spec.seed)?;
    let stored = &ds.vectors;
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5151_5151);
    let qs = data::queries(stored, spec.queries + spec.warmup, spec.query_cos, &mut rng);
    eprintln!(
        "    [{label}] {} vectors ({} real), {} queries in {:.1} s; exact search...",
        stored.len(),
        ds.real,
        qs.vectors.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let exact = data::exact_nearest(stored, &qs.vectors, spec.threads);
    eprintln!(
        "    [{label}] exact search in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let info = DataInfo {
        source: match &spec.source {
            Source::Embeddings(p) => p.display().to_string(),
            Source::Synthetic => "synthetic".into(),
        },
        synthetic: matches!(spec.source, Source::Synthetic),
        dim: stored.dim,
        real: ds.real,
        derived: stored.len() - ds.real,
    };

    let store_dir = if spec.store {
        Some(tempfile::tempdir()?)
    } else {
        None
    };
    let mut index = spec.index;
    if spec.flat {
        index.flat_below = index.flat_below.max(spec.size);
    }
    let settings = CacheSettings {
        shards: 1,
        capacity: spec.size,
        max_entry_bytes: spec.body_bytes.max(1) * 4,
        ttl: Duration::from_secs(24 * 3600),
        index: index.params(),
        store: store_dir.as_ref().map(|d| d.path().join("cache")),
        ..CacheSettings::default()
    };
    let rss_before = data::rss_bytes();
    let cache = Cache::start(settings).await?;

    // load
    let sc = scope();
    let mut progress = Progress::new(&label, spec.size);
    let started = Instant::now();
    let batch = spec.insert_batch.max(1);
    let mut stats = StatsSum::default();
    for from in (0..spec.size).step_by(batch) {
        let to = (from + batch).min(spec.size);
        for i in from..to {
            cache.insert(Insert {
                scope: sc.clone(),
                key: i as u128 + 1,
                vector: Some(stored.get(i).to_vec()),
                answer: answer(i, spec.body_bytes),
                ttl: None,
            });
        }
        stats = barrier(&cache).await?;
        progress.tick(to);
    }
    let secs = started.elapsed().as_secs_f64();
    let insert = InsertResult {
        entries: spec.size,
        secs,
        per_sec: spec.size as f64 / secs.max(1e-9),
    };
    let rss_after = data::rss_bytes();
    let memory = Memory {
        rss_before,
        rss_after,
        rss_peak: data::peak_rss_bytes(),
        rss_per_entry: rss_after.saturating_sub(rss_before) as f64 / spec.size as f64,
        cache_bytes: stats.bytes,
        cache_bytes_per_entry: stats.bytes as f64 / stats.entries.max(1) as f64,
    };
    if stats.entries != spec.size {
        eprintln!(
            "    [{label}] warning: {} entries held after {} inserts",
            stats.entries, spec.size
        );
    }

    // lookups
    let deadline = Duration::from_millis(spec.deadline_ms);
    let mut h = histogram()?;
    let mut recall = Recall {
        queries: spec.queries,
        ..Recall::default()
    };
    let mut sim_sum = 0.0f64;
    for (k, &(nn, nn_sim)) in exact.iter().enumerate() {
        let measured = k >= spec.warmup;
        let q = qs.vectors.get(k);
        let l = Lookup {
            scope: sc.clone(),
            key: (1u128 << 100) + k as u128,
            vector: Some(q.to_vec()),
            threshold: 0.0,
        };
        let t = Instant::now();
        let got = cache.lookup(l, deadline).await;
        let took = t.elapsed();
        if !measured {
            continue;
        }
        record(&mut h, took);
        recall.mean_source_cos += f64::from(qs.source_cos[k]);
        recall.source_is_nearest += f64::from(u8::from(nn == qs.source[k]));
        match got {
            LookupResult::Hit(hit) => {
                recall.hits += 1;
                sim_sum += f64::from(hit.similarity);
                match data::body_entry(&hit.answer.body).filter(|i| *i < stored.len()) {
                    Some(i) => {
                        let s = data::dot(q, stored.get(i));
                        if i == nn || s >= nn_sim - 1e-6 {
                            recall.correct += 1;
                        }
                    }
                    None => recall.unreadable += 1,
                }
            }
            LookupResult::Miss => recall.misses += 1,
            LookupResult::TimedOut => recall.timed_out += 1,
            LookupResult::Unavailable => recall.unavailable += 1,
        }
    }
    let n = spec.queries as f64;
    recall.recall_at_1 = recall.correct as f64 / n;
    recall.mean_source_cos /= n;
    recall.source_is_nearest /= n;
    recall.mean_hit_similarity = sim_sum / recall.hits.max(1) as f64;
    let stats_end = barrier(&cache).await.unwrap_or(stats);

    let t = Instant::now();
    cache.shutdown().await;
    let shutdown_secs = t.elapsed().as_secs_f64();
    let store_bytes_on_disk = store_dir.as_ref().map(|d| dir_size(d.path()));
    let latency = Latency::of(&h);
    eprintln!(
        "    [{label}] {:.0} inserts/s; lookup p50 {:.3} ms p99 {:.3} ms; recall@1 {:.4}",
        insert.per_sec,
        latency.p50_ms.unwrap_or(f64::NAN),
        latency.p99_ms.unwrap_or(f64::NAN),
        recall.recall_at_1
    );
    Ok(SizedResult {
        spec: spec.clone(),
        label,
        data: info,
        insert,
        memory,
        stats: stats_end,
        latency,
        recall,
        shutdown_secs,
        store_bytes_on_disk,
        load_average: super::load_average(),
    })
}

/// The answer stored for entry `i`: a JSON body that names it.
pub fn answer(i: usize, body_bytes: usize) -> Answer {
    Answer {
        kind: AnswerKind::Json,
        content_type: "application/json".into(),
        body: Bytes::from(data::body(i, body_bytes)),
    }
}

/// Bytes of the files under `dir`, recursively (0 where unreadable).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
