//! The vector index of a shard: a flat index per scope (sign-bit codes
//! scanned by Hamming distance, the nearest few rescored exactly: [`flat`])
//! and an hnsw_rs graph (cosine as `1 − dot` on unit vectors) that scopes
//! past `flat_below` also enter. Pure: no clock, no IO.
//!
//! hnsw_rs cannot delete. A removed vector stays in the graph as a
//! *tombstone*: searches filter it out (the caller's filter accepts only live
//! ids of the scope searched), and once tombstones exceed `rebuild_fraction`
//! of the live points the owner builds a new graph from the live vectors
//! ([`RebuildJob`]), so the graph holds at most `live × (1 + fraction)`
//! points plus what arrives during an off-thread rebuild.
//!
//! hnsw_rs's `FilterT` is applied while walking the bottom layer: points that
//! fail it are still traversed (so the graph stays navigable) but never enter
//! the result heap, and the walk only stops early once `ef` accepted points
//! are held. A very selective filter therefore costs more distance
//! evaluations but keeps recall; scopes small enough to make that expensive
//! are flat-scanned instead (`flat_below`).

use std::sync::Arc;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::types::IndexParams;

mod codes;
mod flat;

pub(crate) use flat::{FlatIndex, Scratch};

/// hnsw_rs's own layer limit.
const MAX_LAYERS: usize = 16;

/// Dot product (cosine similarity of unit vectors), written in chunks of 8
/// independent accumulators so that it autovectorises. Over the shorter
/// length when the lengths differ.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum += x * y;
    }
    sum
}

/// `1 − dot`, clamped to `[0, 2]`, NaN read as the largest distance: hnsw_rs
/// asserts that distances are non-negative, and rounding makes `1 − dot`
/// of a duplicate slightly negative (the reason not to use `DistDot`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DotDistance;

impl Distance<f32> for DotDistance {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        let d = 1.0 - dot(va, vb);
        if d.is_nan() { 2.0 } else { d.clamp(0.0, 2.0) }
    }
}

/// The best (highest dot product) of `candidates`, ties to the first.
pub(crate) fn best_flat<'a>(
    query: &[f32],
    candidates: impl Iterator<Item = (u64, &'a [f32])>,
) -> Option<(u64, f32)> {
    let mut best: Option<(u64, f32)> = None;
    for (id, v) in candidates {
        let s = dot(query, v);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((id, s));
        }
    }
    best
}

/// An HNSW graph with its tombstone count.
pub(crate) struct Graph {
    hnsw: Hnsw<'static, f32, DotDistance>,
    points: usize,
    tombstones: usize,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("points", &self.points)
            .field("tombstones", &self.tombstones)
            .finish()
    }
}

impl Graph {
    /// An empty graph; `max_elements` is hnsw_rs's allocation hint.
    pub(crate) fn new(params: &IndexParams, max_elements: usize) -> Graph {
        // hnsw_rs exits the process for m > 256
        let m = params.m.clamp(2, 255);
        let mut hnsw = Hnsw::new(
            m,
            max_elements.max(16),
            MAX_LAYERS,
            params.ef_construction.max(m),
            DotDistance,
        );
        // Without it, clusters of more than `m` near-duplicates can end up
        // unreachable at low ef_construction (`rebuild_finds_near_duplicates`:
        // 20 of 1,500 stored vectors not found at ef_c 32; 0 with it).
        // `set_keeping_pruned` was tried too and made it worse (193).
        hnsw.set_extend_candidates(true);
        Graph {
            hnsw,
            points: 0,
            tombstones: 0,
        }
    }

    pub(crate) fn insert(&mut self, id: u64, v: &[f32]) {
        self.hnsw.insert_slice((v, id as usize));
        self.points += 1;
    }

    /// One of the points no longer answers.
    pub(crate) fn tombstone(&mut self) {
        self.tombstones = (self.tombstones + 1).min(self.points);
    }

    /// Points in the graph, tombstones included.
    pub(crate) fn size(&self) -> usize {
        self.points
    }

    pub(crate) fn tombstones(&self) -> usize {
        self.tombstones
    }

    /// Tombstones past `fraction` of the live points.
    pub(crate) fn needs_rebuild(&self, fraction: f64) -> bool {
        let live = self.points - self.tombstones;
        self.tombstones > 0 && self.tombstones as f64 > fraction * live as f64
    }

    /// Up to `k` ids accepted by `accept`, nearest first. Callers re-check
    /// what comes back: the filter is a search aid, not the guarantee.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<u64> {
        let filter = |id: &usize| accept(*id as u64);
        // ef ≥ 2: hnsw_rs's filtered walk may otherwise empty its heap
        let ef = ef.max(k).max(2);
        self.hnsw
            .search_filter(query, k.max(1), ef, Some(&filter))
            .into_iter()
            .map(|n| n.d_id as u64)
            .collect()
    }
}

/// Everything needed to build a new graph, detached from the shard so it can
/// run on another thread.
#[derive(Debug)]
pub(crate) struct RebuildJob {
    pub(crate) params: IndexParams,
    pub(crate) max_elements: usize,
    pub(crate) points: Vec<(u64, Arc<[f32]>)>,
    /// Ties the result to the shard state it was taken from.
    pub(crate) generation: u64,
}

/// A graph built from [`RebuildJob::points`].
#[derive(Debug)]
pub(crate) struct Rebuilt {
    pub(crate) graph: Graph,
    pub(crate) ids: Vec<u64>,
    pub(crate) generation: u64,
}

impl RebuildJob {
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// Builds serially, on whatever thread calls it. hnsw_rs's
    /// `parallel_insert` was tried and dropped: on clustered data it built
    /// graphs that missed 150–440 of 1,500 stored vectors (cosine 0.33
    /// answers) where the serial build missed none, and it is not
    /// deterministic.
    pub(crate) fn run(self) -> Rebuilt {
        let mut graph = Graph::new(&self.params, self.max_elements.max(self.points.len()));
        for (id, v) in &self.points {
            graph.insert(*id, v);
        }
        Rebuilt {
            graph,
            ids: self.points.into_iter().map(|(id, _)| id).collect(),
            generation: self.generation,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so tests need no crate.
    #[derive(Debug)]
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [-1, 1).
        pub(crate) fn unit(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
        pub(crate) fn vector(&mut self, dim: usize) -> Vec<f32> {
            normalise((0..dim).map(|_| self.unit()).collect())
        }
    }

    pub(crate) fn normalise(mut v: Vec<f32>) -> Vec<f32> {
        let n = dot(&v, &v).sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// Embedding-like data: random combinations of `base` vectors plus noise.
    pub(crate) fn low_rank(rng: &mut Rng, bases: &[Vec<f32>], noise: f32) -> Vec<f32> {
        let dim = bases[0].len();
        let mut v = vec![0.0; dim];
        for b in bases {
            let w = rng.unit();
            v.iter_mut().zip(b).for_each(|(x, y)| *x += w * y);
        }
        v.iter_mut().for_each(|x| *x += noise * rng.unit());
        normalise(v)
    }

    fn check(a: &[f32], b: &[f32], want: f32) {
        let got = dot(a, b);
        let naive: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!((got - want).abs() < 1e-4, "dot {got} want {want}");
        assert!((got - naive).abs() < 1e-4);
    }

    #[test]
    fn dot_handles_tails_and_lengths() {
        check(&[1.0; 3], &[2.0; 3], 6.0);
        check(&[1.0; 8], &[0.5; 8], 4.0);
        check(&[1.0; 19], &[1.0; 19], 19.0);
        let mut rng = Rng(7);
        let v = rng.vector(384);
        check(&v, &v, 1.0);
    }

    #[test]
    fn distance_is_never_negative_or_nan() {
        let mut rng = Rng(3);
        for _ in 0..100 {
            let v = rng.vector(33);
            assert!(DotDistance.eval(&v, &v) >= 0.0);
        }
        assert_eq!(DotDistance.eval(&[f32::NAN], &[1.0]), 2.0);
        assert_eq!(DotDistance.eval(&[2.0], &[2.0]), 0.0);
    }

    #[test]
    fn flat_scan_picks_the_nearest() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let q = normalise(vec![0.2, 0.9]);
        let got = best_flat(&q, [(1, &a[..]), (2, &b[..])].into_iter());
        assert_eq!(got.map(|g| g.0), Some(2));
        assert_eq!(best_flat(&q, std::iter::empty()), None);
    }

    #[test]
    fn graph_search_filters_and_counts_tombstones() {
        let mut rng = Rng(11);
        let params = IndexParams::default();
        let mut g = Graph::new(&params, 100);
        let vs: Vec<Vec<f32>> = (0..100).map(|_| rng.vector(16)).collect();
        for (i, v) in vs.iter().enumerate() {
            g.insert(i as u64, v);
        }
        // odd ids only: the nearest to an even vector is then never itself
        let got = g.search(&vs[10], 3, 64, &|id| id % 2 == 1);
        assert!(!got.is_empty());
        assert!(got.iter().all(|id| id % 2 == 1), "{got:?}");
        let got = g.search(&vs[10], 1, 64, &|_| true);
        assert_eq!(got, vec![10]);

        assert!(!g.needs_rebuild(0.25));
        for _ in 0..20 {
            g.tombstone();
        }
        assert!(!g.needs_rebuild(0.25)); // 20 > 0.25 × 80 is false
        g.tombstone();
        assert!(g.needs_rebuild(0.25));
        assert_eq!((g.size(), g.tombstones()), (100, 21));
    }

    #[test]
    fn rebuild_job_builds_every_point() {
        let mut rng = Rng(5);
        let points: Vec<(u64, Arc<[f32]>)> =
            (0..1_200).map(|i| (i * 3, rng.vector(8).into())).collect();
        let q = points[7].1.clone();
        let job = RebuildJob {
            params: IndexParams::default(),
            max_elements: 10,
            points,
            generation: 1,
        };
        assert_eq!(job.len(), 1_200);
        let built = job.run();
        assert_eq!(built.graph.size(), 1_200);
        assert_eq!(built.ids.len(), 1_200);
        assert_eq!(built.graph.search(&q, 1, 64, &|_| true), vec![21]);
    }

    /// Clustered vectors (a Weyl sequence: tight clusters of near-duplicates,
    /// cosine 0.33 between clusters): every stored vector must be found.
    /// Pins `set_extend_candidates` (20 misses without it at ef_c 32).
    #[test]
    fn rebuild_finds_near_duplicates() {
        let vector = |i: usize| -> Vec<f32> {
            normalise(
                (0..8)
                    .map(|d| {
                        let x = ((i * 8 + d) as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                    })
                    .collect(),
            )
        };
        let points: Vec<(u64, Arc<[f32]>)> =
            (0..1_500).map(|i| (i as u64, vector(i).into())).collect();
        let params = IndexParams {
            ef_construction: 32,
            ..IndexParams::default()
        };
        let job = RebuildJob {
            params,
            max_elements: 1_500,
            points: points.clone(),
            generation: 0,
        };
        let g = job.run().graph;
        for (_, v) in &points {
            let got = g.search(v, 4, 64, &|_| true);
            let best = got.first().map_or(-1.0, |f| dot(v, &points[*f as usize].1));
            assert!(best > 0.999, "nearest found at cosine {best}");
        }
    }
}
