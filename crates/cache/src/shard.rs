//! The state of one shard, pure: entries by id, the exact map
//! `(scope id, key) → id`, the live ids of each scope, LRU order, expiry
//! order and the vector index. Time comes in as `now_ms` (milliseconds since
//! the UNIX epoch, so expiry survives restarts); every mutation returns the
//! ids it removed so the caller can delete them from the store.
//!
//! - **Scope.** Lookups only ever consider entries of the lookup's scope, and
//!   every candidate's full `Scope` is compared before it answers (scope ids
//!   are 64-bit hashes; a collision must not leak an answer).
//! - **LRU.** A hit touches its entry; past `capacity` the least recently used
//!   is evicted. Last access is memory-only: after a restart entries are
//!   ordered by insertion time.
//! - **TTL.** Expired entries are removed lazily when a lookup meets them and
//!   by [`Shard::sweep`] (expiry order is kept, so a sweep costs only what it
//!   removes).
//! - **Vectors.** A scope's vectors enter the HNSW graph only once the scope
//!   has more than `flat_below` live entries; until then its flat index
//!   alone answers (sign-bit codes, the `rerank` nearest rescored exactly;
//!   exact for scopes of at most `rerank` vectors). Every scope keeps its
//!   flat index, which never rebuilds; only graph scopes pay for graph
//!   inserts and rebuilds. Removed indexed vectors are tombstones; see
//!   [`crate::index`] for the rebuild rule. A rebuild is split into
//!   [`Shard::rebuild_job`] (a detached snapshot) and
//!   [`Shard::finish_rebuild`] (swap in, adding what was indexed meanwhile),
//!   so the owner may build on another thread.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::index::{FlatIndex, Graph, RebuildJob, Rebuilt, Scratch, best_flat};
use crate::types::{
    Answer, Hit, IndexParams, Insert, Lookup, Scope, ScopeFilter, ShardStats, Tier,
};

/// Candidates asked of the graph, so a few stale ones can be skipped.
const GRAPH_K: usize = 4;

/// What a shard is configured with.
#[derive(Clone, Debug)]
pub(crate) struct ShardConfig {
    pub(crate) shard: usize,
    pub(crate) capacity: usize,
    pub(crate) max_entry_bytes: usize,
    pub(crate) ttl: Duration,
    pub(crate) rebuild_fraction: f64,
    pub(crate) index: IndexParams,
}

/// A stored answer with what it answers for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub(crate) scope: Scope,
    pub(crate) key: u128,
    pub(crate) vector: Option<Arc<[f32]>>,
    pub(crate) answer: Arc<Answer>,
    pub(crate) inserted_ms: u64,
    pub(crate) expires_ms: u64,
}

impl Entry {
    fn bytes(&self) -> u64 {
        let v = self.vector.as_ref().map_or(0, |v| v.len() * 4);
        (self.answer.body.len() + self.answer.content_type.len() + v) as u64
    }
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    scope_id: u64,
    /// LRU tick of the last touch.
    touched: u64,
    /// The vector is a point of the current graph.
    indexed: bool,
}

#[derive(Debug, Default)]
struct ScopeIds {
    ids: HashSet<u64>,
    /// The vectors of the scope's entries that have one.
    flat: FlatIndex,
    /// The scope's vectors go into the graph.
    indexed: bool,
}

#[derive(Debug)]
struct Pending {
    generation: u64,
    /// Ids indexed into the old graph since the snapshot.
    added: Vec<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    rebuilds: u64,
    hits: u64,
    misses: u64,
    inserts: u64,
    dropped: u64,
    evictions: u64,
    expirations: u64,
    /// Graph searches that found nothing valid and fell back to a scan.
    graph_fallbacks: u64,
}

/// What [`Shard::nearest`] found.
#[derive(Debug, Default)]
struct Near {
    best: Option<(u64, f32)>,
    /// Expired entries met on the way, to remove.
    expired: Vec<u64>,
    fell_back: bool,
}

/// The pure state of one shard.
#[derive(Debug)]
pub(crate) struct Shard {
    cfg: ShardConfig,
    entries: HashMap<u64, Slot>,
    exact: HashMap<(u64, u128), u64>,
    scopes: HashMap<u64, ScopeIds>,
    lru: BTreeMap<u64, u64>,
    expiry: BTreeSet<(u64, u64)>,
    tick: u64,
    /// Fixed by the first vector seen.
    dim: Option<usize>,
    graph: Graph,
    pending: Option<Pending>,
    generation: u64,
    bytes: u64,
    counters: Counters,
    /// The flat search's buffers, reused.
    scratch: Scratch,
}

impl Shard {
    pub(crate) fn new(mut cfg: ShardConfig) -> Shard {
        cfg.capacity = cfg.capacity.max(1);
        let graph = Graph::new(&cfg.index, graph_hint(&cfg));
        Shard {
            cfg,
            entries: HashMap::new(),
            exact: HashMap::new(),
            scopes: HashMap::new(),
            lru: BTreeMap::new(),
            expiry: BTreeSet::new(),
            tick: 0,
            dim: None,
            graph,
            pending: None,
            generation: 0,
            bytes: 0,
            counters: Counters::default(),
            scratch: Scratch::default(),
        }
    }

    /// Loads stored entries (oldest first, so LRU order is insertion order).
    /// Returns the ids dropped: expired, or past capacity.
    pub(crate) fn load(&mut self, mut stored: Vec<(u64, Entry)>, now_ms: u64) -> Vec<u64> {
        stored.sort_by_key(|(id, e)| (e.inserted_ms, *id));
        let mut removed = Vec::new();
        for (id, entry) in stored {
            if entry.expires_ms <= now_ms {
                self.counters.expirations += 1;
                removed.push(id);
            } else {
                self.admit(id, entry, &mut removed);
            }
        }
        removed
    }

    /// Stores an answer under `id` (unique, never reused). Returns whether it
    /// was stored and the ids removed (a replaced key, evictions).
    pub(crate) fn insert(&mut self, id: u64, ins: Insert, now_ms: u64) -> (bool, Vec<u64>) {
        let mut removed = Vec::new();
        if ins.answer.body.len() > self.cfg.max_entry_bytes {
            self.counters.dropped += 1;
            return (false, removed);
        }
        let ttl = ins.ttl.unwrap_or(self.cfg.ttl);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return (false, removed);
        }
        let entry = Entry {
            scope: ins.scope,
            key: ins.key,
            vector: ins.vector.map(Arc::from),
            answer: Arc::new(ins.answer),
            inserted_ms: now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
        };
        self.counters.inserts += 1;
        self.admit(id, entry, &mut removed);
        (true, removed)
    }

    fn admit(&mut self, id: u64, mut entry: Entry, removed: &mut Vec<u64>) {
        let scope_id = entry.scope.id();
        // a key stored again replaces the old entry (also on a scope-id collision)
        if let Some(old) = self.exact.get(&(scope_id, entry.key)).copied() {
            self.remove(old);
            removed.push(old);
        }
        entry.vector = entry.vector.filter(|v| self.accept_vector(v));
        self.tick += 1;
        self.lru.insert(self.tick, id);
        self.expiry.insert((entry.expires_ms, id));
        self.exact.insert((scope_id, entry.key), id);
        self.bytes += entry.bytes();
        let vector = entry.vector.clone();
        let has_vector = vector.is_some();
        self.entries.insert(
            id,
            Slot {
                entry,
                scope_id,
                touched: self.tick,
                indexed: false,
            },
        );
        let scope = self.scopes.entry(scope_id).or_default();
        scope.ids.insert(id);
        if let Some(v) = vector {
            scope.flat.insert(id, v);
        }
        if has_vector && scope.indexed {
            self.index_one(id);
        } else if !scope.indexed && scope.ids.len() > self.cfg.index.flat_below {
            self.index_scope(scope_id);
        }
        while self.entries.len() > self.cfg.capacity {
            let Some((_, victim)) = self.lru.first_key_value().map(|(t, v)| (*t, *v)) else {
                break;
            };
            self.remove(victim);
            self.counters.evictions += 1;
            removed.push(victim);
        }
    }

    /// A vector is kept if it is finite and has the shard's dimension (the
    /// first vector seen fixes it); otherwise the entry is exact-only.
    fn accept_vector(&mut self, v: &[f32]) -> bool {
        if v.is_empty() || !v.iter().all(|x| x.is_finite()) {
            tracing::warn!(
                shard = self.cfg.shard,
                "cache: vector not finite or empty; stored exact-only"
            );
            return false;
        }
        match self.dim {
            None => {
                self.dim = Some(v.len());
                true
            }
            Some(d) if d == v.len() => true,
            Some(d) => {
                tracing::warn!(
                    shard = self.cfg.shard,
                    want = d,
                    got = v.len(),
                    "cache: vector dimension differs; stored exact-only"
                );
                false
            }
        }
    }

    fn index_one(&mut self, id: u64) {
        let Some(slot) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(v) = slot.entry.vector.as_ref() else {
            return;
        };
        if slot.indexed {
            return;
        }
        self.graph.insert(id, v);
        slot.indexed = true;
        if let Some(p) = self.pending.as_mut() {
            p.added.push(id);
        }
    }

    fn index_scope(&mut self, scope_id: u64) {
        let Some(scope) = self.scopes.get_mut(&scope_id) else {
            return;
        };
        scope.indexed = true;
        let ids: Vec<u64> = scope.ids.iter().copied().collect();
        for id in ids {
            self.index_one(id);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let slot = self.entries.remove(&id)?;
        let e = &slot.entry;
        if self.exact.get(&(slot.scope_id, e.key)) == Some(&id) {
            self.exact.remove(&(slot.scope_id, e.key));
        }
        if let Some(scope) = self.scopes.get_mut(&slot.scope_id) {
            scope.ids.remove(&id);
            scope.flat.remove(id);
            if scope.ids.is_empty() {
                self.scopes.remove(&slot.scope_id);
            }
        }
        self.lru.remove(&slot.touched);
        self.expiry.remove(&(e.expires_ms, id));
        self.bytes = self.bytes.saturating_sub(e.bytes());
        if slot.indexed {
            self.graph.tombstone();
        }
        Some(slot.entry)
    }

    fn touch(&mut self, id: u64) {
        let Some(slot) = self.entries.get_mut(&id) else {
            return;
        };
        self.lru.remove(&slot.touched);
        self.tick += 1;
        slot.touched = self.tick;
        self.lru.insert(self.tick, id);
    }

    /// Exact tier first, then the nearest vector of the scope at or above the
    /// threshold. Returns the hit (if any) and the expired ids removed.
    pub(crate) fn lookup(&mut self, l: &Lookup, now_ms: u64) -> (Option<Hit>, Vec<u64>) {
        let mut removed = Vec::new();
        let scope_id = l.scope.id();
        if let Some(id) = self.exact.get(&(scope_id, l.key)).copied()
            && let Some(slot) = self.entries.get(&id).filter(|s| s.entry.scope == l.scope)
        {
            if slot.entry.expires_ms > now_ms {
                let hit = self.hit(id, Tier::Exact, 1.0, now_ms);
                return (hit, removed);
            }
            self.expire(id, &mut removed);
        }
        let query = l
            .vector
            .as_deref()
            .filter(|q| Some(q.len()) == self.dim && q.iter().all(|x| x.is_finite()));
        if let Some(q) = query {
            let mut scratch = std::mem::take(&mut self.scratch);
            let near = self.nearest(scope_id, &l.scope, q, now_ms, &mut scratch);
            self.scratch = scratch;
            self.counters.graph_fallbacks += u64::from(near.fell_back);
            for id in near.expired {
                self.expire(id, &mut removed);
            }
            if let Some((id, sim)) = near.best.filter(|(_, s)| *s >= l.threshold) {
                let hit = self.hit(id, Tier::Semantic, sim, now_ms);
                return (hit, removed);
            }
        }
        self.counters.misses += 1;
        (None, removed)
    }

    fn expire(&mut self, id: u64, removed: &mut Vec<u64>) {
        if self.remove(id).is_some() {
            self.counters.expirations += 1;
            removed.push(id);
        }
    }

    fn hit(&mut self, id: u64, tier: Tier, similarity: f32, now_ms: u64) -> Option<Hit> {
        self.touch(id);
        let slot = self.entries.get(&id)?;
        self.counters.hits += 1;
        Some(Hit {
            answer: Arc::clone(&slot.entry.answer),
            tier,
            similarity,
            age: Duration::from_millis(now_ms.saturating_sub(slot.entry.inserted_ms)),
        })
    }

    /// The most similar live vector of `scope` and the expired ids met.
    fn nearest(
        &self,
        scope_id: u64,
        scope: &Scope,
        q: &[f32],
        now_ms: u64,
        scratch: &mut Scratch,
    ) -> Near {
        let mut near = Near::default();
        let Some(ids) = self.scopes.get(&scope_id) else {
            return near;
        };
        let candidate = |id: u64| {
            let slot = self.entries.get(&id)?;
            let v = slot.entry.vector.as_deref()?;
            (slot.entry.scope == *scope).then_some((slot, v))
        };
        if ids.indexed && ids.ids.len() > self.cfg.index.flat_below {
            let accept = |id: u64| {
                ids.ids.contains(&id)
                    && self
                        .entries
                        .get(&id)
                        .is_some_and(|s| s.entry.expires_ms > now_ms)
            };
            let found = self
                .graph
                .search(q, GRAPH_K, self.cfg.index.ef_search, &accept);
            // re-check: scope, liveness, and the similarity itself
            let best = best_flat(
                q,
                found.into_iter().filter_map(|id| {
                    candidate(id)
                        .filter(|(s, _)| s.entry.expires_ms > now_ms)
                        .map(|(_, v)| (id, v))
                }),
            );
            if best.is_some() {
                near.best = best;
                return near;
            }
            near.fell_back = true;
            tracing::debug!(
                shard = self.cfg.shard,
                "cache: graph search found nothing live; scanning"
            );
        }
        // The scope's flat index: its nearest codes rescored exactly, best
        // first; the first live one of exactly this scope answers (the full
        // scope is compared: the index is per 64-bit scope id). When none of
        // the candidates does, every vector is scored.
        let rerank = self.cfg.index.rerank;
        for rerank in [rerank, usize::MAX] {
            ids.flat.search(q, rerank, scratch);
            near.expired.clear();
            for &(id, s) in &scratch.scored {
                let Some(slot) = self.entries.get(&id) else {
                    continue;
                };
                if slot.entry.expires_ms <= now_ms {
                    near.expired.push(id);
                } else if candidate(id).is_some() {
                    near.best = Some((id, s));
                    return near;
                }
            }
            if scratch.scored.len() >= ids.flat.len() {
                break;
            }
        }
        near
    }

    /// Removes expired entries.
    pub(crate) fn sweep(&mut self, now_ms: u64) -> Vec<u64> {
        let mut removed = Vec::new();
        while let Some(&(expires, id)) = self.expiry.first() {
            if expires > now_ms {
                break;
            }
            self.expiry.remove(&(expires, id));
            self.expire(id, &mut removed);
        }
        removed
    }

    /// Removes the entries whose scope matches.
    pub(crate) fn invalidate(&mut self, f: &ScopeFilter) -> Vec<u64> {
        let ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, s)| f.matches(&s.entry.scope))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.remove(*id);
        }
        ids
    }

    /// Removes everything (the graph too).
    pub(crate) fn flush(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        self.entries.clear();
        self.exact.clear();
        self.scopes.clear();
        self.lru.clear();
        self.expiry.clear();
        self.bytes = 0;
        self.graph = Graph::new(&self.cfg.index, graph_hint(&self.cfg));
        self.pending = None;
        self.generation += 1;
        ids
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id).map(|s| &s.entry)
    }

    #[cfg(test)]
    pub(crate) fn graph_fallbacks(&self) -> u64 {
        self.counters.graph_fallbacks
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A detached snapshot to build a new graph from, when tombstones call
    /// for it and no rebuild is under way. Scopes that shrank to
    /// `flat_below` or less leave the graph.
    pub(crate) fn rebuild_job(&mut self) -> Option<RebuildJob> {
        if self.pending.is_some() || !self.graph.needs_rebuild(self.cfg.rebuild_fraction) {
            return None;
        }
        let flat_below = self.cfg.index.flat_below;
        for scope in self.scopes.values_mut() {
            scope.indexed &= scope.ids.len() > flat_below;
        }
        let points = self
            .entries
            .iter()
            .filter(|(_, s)| self.scopes.get(&s.scope_id).is_some_and(|sc| sc.indexed))
            .filter_map(|(id, s)| Some((*id, Arc::clone(s.entry.vector.as_ref()?))))
            .collect();
        self.generation += 1;
        self.pending = Some(Pending {
            generation: self.generation,
            added: Vec::new(),
        });
        Some(RebuildJob {
            params: self.cfg.index,
            max_elements: graph_hint(&self.cfg),
            points,
            generation: self.generation,
        })
    }

    /// Swaps in a graph built from [`Shard::rebuild_job`]'s snapshot: ids
    /// removed since are tombstones, vectors indexed since are added. A
    /// result from before a flush is dropped.
    pub(crate) fn finish_rebuild(&mut self, built: Rebuilt) {
        let Some(pending) = self.pending.take_if(|p| p.generation == built.generation) else {
            return;
        };
        let mut graph = built.graph;
        for slot in self.entries.values_mut() {
            slot.indexed = false;
        }
        for id in built.ids {
            match self.entries.get_mut(&id) {
                Some(slot) => slot.indexed = true,
                None => graph.tombstone(),
            }
        }
        self.graph = graph;
        for id in pending.added {
            let indexed_scope = self
                .entries
                .get(&id)
                .and_then(|s| self.scopes.get(&s.scope_id))
                .is_some_and(|sc| sc.indexed);
            if indexed_scope {
                self.index_one(id);
            }
        }
        self.counters.rebuilds += 1;
    }

    /// Runs a due rebuild on this thread.
    pub(crate) fn rebuild_inline(&mut self) {
        if let Some(job) = self.rebuild_job() {
            let built = job.run();
            self.finish_rebuild(built);
        }
    }

    /// Counters and sizes (`restarts` is the supervisor's to fill).
    pub(crate) fn stats(&self) -> ShardStats {
        let c = &self.counters;
        ShardStats {
            shard: self.cfg.shard,
            available: true,
            entries: self.entries.len(),
            bytes: self.bytes,
            index_size: self.graph.size(),
            tombstones: self.graph.tombstones(),
            rebuilds: c.rebuilds,
            hits: c.hits,
            misses: c.misses,
            inserts: c.inserts,
            dropped: c.dropped,
            evictions: c.evictions,
            expirations: c.expirations,
            restarts: 0,
        }
    }
}

/// hnsw_rs's allocation hint: a full shard plus the tombstones allowed.
fn graph_hint(cfg: &ShardConfig) -> usize {
    let f = cfg.rebuild_fraction.clamp(0.0, 4.0);
    (cfg.capacity as f64 * (1.0 + f)).ceil() as usize + 16
}

#[cfg(test)]
mod tests;
