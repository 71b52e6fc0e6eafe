//! The churn case: a cache of several shards kept full while concurrent tasks mix lookups and
//! inserts of fresh entries, so LRU eviction, tombstones and graph rebuilds run all the time.
//! A sampler records RSS and the shards' stats every second: memory must plateau.
//!
//! Inserts are fire and forget; each task awaits `stats()` every `barrier_every` inserts so the
//! shards' mailboxes cannot grow without bound (the gateway's insert rate is bounded by its
//! upstream calls; the benchmark runs closed-loop at what the shards sustain).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use routemesh_cache::{Cache, CacheSettings, Insert, Lookup, LookupResult, Scope};
use serde::{Deserialize, Serialize};

use super::data::{self, Source, Vectors};
use super::sized::{QUERY_COS, answer};
use super::{CacheBenchError, IndexSpec, Latency, StatsSum, barrier, histogram, record};

/// Inserted vectors each task remembers to look up again (paraphrased).
const RECENT: usize = 1024;
/// Base vectors of the synthetic fallback.
const SYNTHETIC_BASE: usize = 8192;

/// What the churn case does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnSpec {
    pub source: Source,
    pub seed: u64,
    pub shards: usize,
    /// Entries per shard.
    pub capacity: usize,
    pub index: IndexSpec,
    pub tasks: usize,
    pub secs: u64,
    /// Stop after this many operations, if sooner.
    pub max_ops: Option<u64>,
    /// Share of operations that are lookups.
    pub lookup_share: f64,
    pub deadline_ms: u64,
    pub threshold: f32,
    pub body_bytes: usize,
    pub barrier_every: usize,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    pub rss: u64,
    pub stats: StatsSum,
    pub lookups: u64,
    pub inserts: u64,
    pub hits: u64,
    pub timed_out: u64,
    /// Lookup latency within this second.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Memory once the cache is full.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plateau {
    /// First sample with the cache ≥ 98% full.
    pub full_at_s: f64,
    /// Over the second half of the samples after that.
    pub from_s: f64,
    pub rss_min: u64,
    pub rss_max: u64,
    pub rss_mean: f64,
    /// Least-squares slope of RSS over that window.
    pub rss_slope_mb_per_min: f64,
}

/// What the churn case measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnResult {
    pub spec: ChurnSpec,
    pub data_source: String,
    pub secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub lookups: u64,
    pub inserts: u64,
    pub hits: u64,
    pub timed_out: u64,
    pub unavailable: u64,
    pub latency: Latency,
    /// Lookups after the cache was full.
    pub latency_full: Latency,
    pub rss_start: u64,
    pub rss_peak: u64,
    pub plateau: Option<Plateau>,
    pub final_stats: StatsSum,
    pub samples: Vec<Sample>,
    /// 1-minute load average when the case ended.
    #[serde(default)]
    pub load_average: String,
}

#[derive(Debug, Default)]
struct Counters {
    ops: AtomicU64,
    lookups: AtomicU64,
    inserts: AtomicU64,
    hits: AtomicU64,
    timed_out: AtomicU64,
    unavailable: AtomicU64,
    keys: AtomicU64,
}

struct Shared {
    cache: Cache,
    base: Vectors,
    scopes: Vec<Scope>,
    spec: ChurnSpec,
    counters: Counters,
    stop: AtomicBool,
    /// Lookup latency of the current second.
    second: Mutex<Histogram<u64>>,
}

/// One scope per shard (`scope.id() % shards` covers every shard), so every shard churns and
/// every scope is large enough for the graph.
fn scopes(shards: usize) -> Vec<Scope> {
    let mut out: Vec<Option<Scope>> = vec![None; shards];
    for context in 0u128..1_000_000 {
        let s = Scope {
            tenant: "bench".into(),
            decision: "churn".into(),
            model: "bench-model".into(),
            context,
        };
        let shard = (s.id() % shards as u64) as usize;
        if out[shard].is_none() {
            out[shard] = Some(s);
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    out.into_iter().flatten().collect()
}

pub async fn run(spec: &ChurnSpec) -> Result<ChurnResult, CacheBenchError> {
    if spec.shards == 0 || spec.tasks == 0 || spec.capacity == 0 {
        return Err(CacheBenchError::Config(
            "shards, tasks and capacity must be positive".into(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let (base, data_source) = match &spec.source {
        Source::Embeddings(p) => (data::read_embeddings(p)?, p.display().to_string()),
        Source::Synthetic => (
            data::synthetic(data::SYNTHETIC_DIM, SYNTHETIC_BASE, &mut rng),
            "synthetic".to_owned(),
        ),
    };
    let settings = CacheSettings {
        shards: spec.shards,
        capacity: spec.capacity,
        max_entry_bytes: spec.body_bytes.max(1) * 4,
        ttl: Duration::from_secs(24 * 3600),
        index: spec.index.params(),
        store: None,
        ..CacheSettings::default()
    };
    let rss_start = data::rss_bytes();
    let cache = Cache::start(settings).await?;
    let shared = Arc::new(Shared {
        cache: cache.clone(),
        base,
        scopes: scopes(spec.shards),
        spec: spec.clone(),
        counters: Counters::default(),
        stop: AtomicBool::new(false),
        second: Mutex::new(histogram()?),
    });

    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..spec.tasks {
        let shared = Arc::clone(&shared);
        let seed = spec.seed.wrapping_add(1 + task as u64);
        handles.push(tokio::spawn(async move { worker(&shared, seed).await }));
    }

    let full_entries = (spec.shards * spec.capacity) as f64 * 0.98;
    let mut samples: Vec<Sample> = Vec::new();
    let mut total = histogram()?;
    let mut full_hist = histogram()?;
    let mut full_since: Option<f64> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_report = Instant::now();
    loop {
        tick.tick().await;
        let done = started.elapsed().as_secs() >= spec.secs
            || spec
                .max_ops
                .is_some_and(|m| shared.counters.ops.load(Ordering::Relaxed) >= m);
        let h = match shared.second.lock() {
            Ok(mut g) => std::mem::replace(&mut *g, histogram()?),
            Err(_) => histogram()?,
        };
        let stats = StatsSum::of(&cache.stats().await);
        let t = started.elapsed().as_secs_f64();
        if full_since.is_none() && stats.entries as f64 >= full_entries {
            full_since = Some(t);
        }
        let _ = total.add(&h);
        if full_since.is_some() {
            let _ = full_hist.add(&h);
        }
        let lat = Latency::of(&h);
        let c = &shared.counters;
        let sample = Sample {
            t,
            rss: data::rss_bytes(),
            stats,
            lookups: c.lookups.load(Ordering::Relaxed),
            inserts: c.inserts.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            p50_ms: lat.p50_ms,
            p99_ms: lat.p99_ms,
        };
        if last_report.elapsed() >= Duration::from_secs(5) || done {
            last_report = Instant::now();
            eprintln!(
                "    [churn] {t:.0}/{} s: {} ops, RSS {:.0} MB, {} entries, index {} ({} tombstones), {} rebuilds, {} evictions",
                spec.secs,
                c.ops.load(Ordering::Relaxed),
                sample.rss as f64 / 1e6,
                sample.stats.entries,
                sample.stats.index_size,
                sample.stats.tombstones,
                sample.stats.rebuilds,
                sample.stats.evictions,
            );
        }
        samples.push(sample);
        if done {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let final_stats = barrier(&cache).await.unwrap_or_default();
    cache.shutdown().await;
    let c = &shared.counters;
    let ops = c.ops.load(Ordering::Relaxed);
    Ok(ChurnResult {
        spec: spec.clone(),
        data_source,
        secs,
        ops,
        ops_per_sec: ops as f64 / secs.max(1e-9),
        lookups: c.lookups.load(Ordering::Relaxed),
        inserts: c.inserts.load(Ordering::Relaxed),
        hits: c.hits.load(Ordering::Relaxed),
        timed_out: c.timed_out.load(Ordering::Relaxed),
        unavailable: c.unavailable.load(Ordering::Relaxed),
        latency: Latency::of(&total),
        latency_full: Latency::of(&full_hist),
        rss_start,
        rss_peak: data::peak_rss_bytes(),
        plateau: full_since.and_then(|f| plateau(&samples, f)),
        final_stats,
        samples,
        load_average: super::load_average(),
    })
}

/// RSS over the second half of the samples taken after the cache filled.
pub fn plateau(samples: &[Sample], full_at_s: f64) -> Option<Plateau> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= full_at_s).collect();
    let window = &after[after.len() / 2..];
    if window.len() < 2 {
        return None;
    }
    let n = window.len() as f64;
    let (mt, mr) = window
        .iter()
        .fold((0.0, 0.0), |(a, b), s| (a + s.t / n, b + s.rss as f64 / n));
    let (num, den) = window.iter().fold((0.0, 0.0), |(num, den), s| {
        let dt = s.t - mt;
        (num + dt * (s.rss as f64 - mr), den + dt * dt)
    });
    let slope = if den > 0.0 { num / den } else { 0.0 };
    Some(Plateau {
        full_at_s,
        from_s: window[0].t,
        rss_min: window.iter().map(|s| s.rss).min().unwrap_or(0),
        rss_max: window.iter().map(|s| s.rss).max().unwrap_or(0),
        rss_mean: mr,
        rss_slope_mb_per_min: slope * 60.0 / 1e6,
    })
}

async fn worker(shared: &Shared, seed: u64) {
    let spec = &shared.spec;
    let mut rng = StdRng::seed_from_u64(seed);
    let dim = shared.base.dim;
    let mut recent: VecDeque<(usize, Vec<f32>)> = VecDeque::with_capacity(RECENT);
    let mut inserted = 0usize;
    let deadline = Duration::from_millis(spec.deadline_ms);
    let c = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        if spec
            .max_ops
            .is_some_and(|m| c.ops.load(Ordering::Relaxed) >= m)
        {
            break;
        }
        let lookup = !recent.is_empty() && rng.random_bool(spec.lookup_share.clamp(0.0, 1.0));
        if lookup {
            let (scope, v) = &recent[rng.random_range(0..recent.len())];
            let mut q = vec![0.0f32; dim];
            let cos = rng.random_range(QUERY_COS.0..=QUERY_COS.1);
            data::perturb(v, cos, &mut rng, &mut q);
            let l = Lookup {
                scope: shared.scopes[*scope].clone(),
                key: u128::from(rng.random::<u64>()) << 64,
                vector: Some(q),
                threshold: spec.threshold,
            };
            let t = Instant::now();
            let got = shared.cache.lookup(l, deadline).await;
            let took = t.elapsed();
            if let Ok(mut h) = shared.second.lock() {
                record(&mut h, took);
            }
            c.lookups.fetch_add(1, Ordering::Relaxed);
            match got {
                LookupResult::Hit(_) => c.hits.fetch_add(1, Ordering::Relaxed),
                LookupResult::Miss => 0,
                LookupResult::TimedOut => c.timed_out.fetch_add(1, Ordering::Relaxed),
                LookupResult::Unavailable => c.unavailable.fetch_add(1, Ordering::Relaxed),
            };
        } else {
            let mut v = vec![0.0f32; dim];
            data::derive_one(&shared.base, &mut rng, &mut v);
            let scope = rng.random_range(0..shared.scopes.len());
            let key = c.keys.fetch_add(1, Ordering::Relaxed);
            shared.cache.insert(Insert {
                scope: shared.scopes[scope].clone(),
                key: u128::from(key) + 1,
                vector: Some(v.clone()),
                answer: answer(key as usize, spec.body_bytes),
                ttl: None,
            });
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back((scope, v));
            c.inserts.fetch_add(1, Ordering::Relaxed);
            inserted += 1;
            if inserted.is_multiple_of(spec.barrier_every.max(1)) {
                let _ = shared.cache.stats().await;
            }
        }
        c.ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: u64) -> Sample {
        Sample {
            t,
            rss,
            stats: StatsSum::default(),
            lookups: 0,
            inserts: 0,
            hits: 0,
            timed_out: 0,
            p50_ms: None,
            p99_ms: None,
        }
    }

    #[test]
    fn plateau_takes_the_second_half_after_full_and_fits_a_slope() {
        // filling up to t=4, then growing 1 MB/s
        let s: Vec<Sample> = (0..13)
            .map(|t| sample(f64::from(t), 100_000_000 + u64::from(t as u32) * 1_000_000))
            .collect();
        let p = plateau(&s, 4.0).unwrap();
        assert_eq!(p.from_s, 8.0);
        assert_eq!((p.rss_min, p.rss_max), (108_000_000, 112_000_000));
        assert!(
            (p.rss_slope_mb_per_min - 60.0).abs() < 1e-6,
            "{}",
            p.rss_slope_mb_per_min
        );
        assert!(plateau(&s, 12.0).is_none());
    }

    #[test]
    fn every_shard_gets_a_scope() {
        let s = scopes(4);
        let mut shards: Vec<u64> = s.iter().map(|s| s.id() % 4).collect();
        shards.sort_unstable();
        assert_eq!(shards, vec![0, 1, 2, 3]);
    }
}
