//! The flat index of one scope: every vector's sign-bit code end to end in
//! one array (scanned by Hamming distance), its id and its f32 vector (for
//! the exact rescoring of the few nearest codes). Inserts append, removals
//! swap the last entry into the hole: both O(1), no rebuild ever.
//!
//! A search is two passes: the Hamming distance of the query's code to every
//! code (a histogram of the distances gives the cut-off of the `rerank`
//! nearest without a sort), then the exact dot product of those candidates.
//! A scope of at most `rerank` vectors is simply scored exactly. The exact
//! nearest vector is missed only when its code is not among the `rerank`
//! nearest codes, which the benchmark measures as recall@1.

use std::collections::HashMap;
use std::sync::Arc;

use super::codes::{cut_off, distances, push_code, words};
use super::dot;

/// The vectors of one scope.
#[derive(Debug, Default)]
pub(crate) struct FlatIndex {
    /// `u64` words per code (fixed by the first vector).
    words: usize,
    codes: Vec<u64>,
    ids: Vec<u64>,
    vectors: Vec<Arc<[f32]>>,
    /// Position of each id in `ids`.
    at: HashMap<u64, usize>,
}

/// Buffers a search reuses (one per shard: searches run one at a time).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    query: Vec<u64>,
    distances: Vec<u16>,
    hist: Vec<u32>,
    /// Candidates with their exact scores, best first after a search.
    pub(crate) scored: Vec<(u64, f32)>,
}

impl FlatIndex {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Adds (or replaces) `id`'s vector. Vectors of one index must share a
    /// dimension (the shard checks it).
    pub(crate) fn insert(&mut self, id: u64, v: Arc<[f32]>) {
        self.remove(id);
        if self.ids.is_empty() {
            self.words = words(v.len());
        }
        push_code(&v, &mut self.codes);
        self.at.insert(id, self.ids.len());
        self.ids.push(id);
        self.vectors.push(v);
    }

    /// Removes `id`'s vector; false if it had none here.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.at.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if i != last {
            let moved = self.ids[last];
            self.ids.swap(i, last);
            self.vectors.swap(i, last);
            let w = self.words;
            self.codes.copy_within(last * w..(last + 1) * w, i * w);
            self.at.insert(moved, i);
        }
        self.ids.pop();
        self.vectors.pop();
        self.codes.truncate(last * self.words);
        true
    }

    /// Scores the `rerank` candidates nearest to `q` by code (all vectors,
    /// when there are no more) exactly, into `scratch.scored`, best first.
    pub(crate) fn search(&self, q: &[f32], rerank: usize, scratch: &mut Scratch) {
        scratch.scored.clear();
        let n = self.ids.len();
        if n == 0 {
            return;
        }
        let score = |i: usize| (self.ids[i], dot(q, &self.vectors[i]));
        if n <= rerank.max(1) {
            scratch.scored.extend((0..n).map(score));
        } else {
            scratch.query.clear();
            push_code(q, &mut scratch.query);
            scratch.query.resize(self.words, 0);
            distances(
                &scratch.query,
                &self.codes,
                &mut scratch.distances,
                &mut scratch.hist,
            );
            let k = rerank.max(1);
            let cut = cut_off(&scratch.hist, k);
            // every code below the cut, then codes at the cut until k
            let mut at_cut = k - scratch.hist[..cut]
                .iter()
                .map(|&c| c as usize)
                .sum::<usize>();
            for (i, &d) in scratch.distances.iter().enumerate() {
                let d = usize::from(d);
                if d < cut {
                    scratch.scored.push(score(i));
                } else if d == cut && at_cut > 0 {
                    at_cut -= 1;
                    scratch.scored.push(score(i));
                }
            }
        }
        // best first; ties (and NaN, which a finite vector cannot give) by id
        scratch
            .scored
            .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Rng, low_rank};
    use super::*;

    fn exact_best(index: &FlatIndex, q: &[f32]) -> Option<u64> {
        let mut best: Option<(u64, f32)> = None;
        for (i, v) in index.vectors.iter().enumerate() {
            let s = dot(q, v);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((index.ids[i], s));
            }
        }
        best.map(|b| b.0)
    }

    #[test]
    fn removal_keeps_ids_codes_and_vectors_aligned() {
        let mut rng = Rng(9);
        let mut index = FlatIndex::default();
        let vs: Vec<Arc<[f32]>> = (0..50).map(|_| rng.vector(100).into()).collect();
        for (i, v) in vs.iter().enumerate() {
            index.insert(i as u64 * 10, Arc::clone(v));
        }
        for id in [0, 490, 250, 250, 7] {
            let had = index.at.contains_key(&id);
            assert_eq!(index.remove(id), had);
        }
        assert_eq!(index.len(), 47);
        let mut scratch = Scratch::default();
        for (i, v) in vs.iter().enumerate() {
            let id = i as u64 * 10;
            let live = ![0, 490, 250].contains(&id);
            // each live vector is its own nearest, found through its code
            index.search(v, 1, &mut scratch);
            assert_eq!(
                scratch.scored.first().map(|s| s.0) == Some(id),
                live,
                "id {id}"
            );
            if live {
                let at = index.at[&id];
                let mut code = Vec::new();
                push_code(v, &mut code);
                assert_eq!(
                    &index.codes[at * index.words..(at + 1) * index.words],
                    &code[..]
                );
            }
        }
        // replacing an id keeps one entry for it
        index.insert(10, Arc::clone(&vs[3]));
        assert_eq!(index.len(), 47);
    }

    #[test]
    fn search_rescores_exactly_and_finds_the_nearest_of_near_duplicates() {
        let mut rng = Rng(21);
        let bases: Vec<Vec<f32>> = (0..8).map(|_| rng.vector(384)).collect();
        let mut index = FlatIndex::default();
        for id in 0..5_000 {
            index.insert(id, low_rank(&mut rng, &bases, 0.05).into());
        }
        let mut scratch = Scratch::default();
        let mut found = 0;
        for _ in 0..200 {
            let q = low_rank(&mut rng, &bases, 0.05);
            index.search(&q, 64, &mut scratch);
            assert_eq!(scratch.scored.len(), 64);
            assert!(scratch.scored.windows(2).all(|w| w[0].1 >= w[1].1));
            for (id, s) in &scratch.scored {
                let v = &index.vectors[index.at[id]];
                assert_eq!(*s, dot(&q, v));
            }
            found += usize::from(scratch.scored[0].0 == exact_best(&index, &q).unwrap_or(u64::MAX));
        }
        // low-rank data is the hard case for sign codes; still nearly always found
        assert!(found >= 190, "exact nearest found for {found} of 200");
    }

    #[test]
    fn small_indexes_are_scored_whole() {
        let mut index = FlatIndex::default();
        index.insert(1, Arc::from(vec![1.0, 0.0]));
        index.insert(2, Arc::from(vec![0.0, 1.0]));
        let mut scratch = Scratch::default();
        index.search(&[0.6, 0.8], 8, &mut scratch);
        assert_eq!(scratch.scored, vec![(2, 0.8), (1, 0.6)]);
        index.search(&[0.6, 0.8], 0, &mut scratch);
        assert_eq!(
            scratch.scored.len(),
            1,
            "rerank 0 still scores one candidate"
        );
    }
}
