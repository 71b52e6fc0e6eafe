//! The cache's vocabulary: settings, scopes, answers, lookups and what comes
//! back. Plain data; no IO.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// How the cache is built. Checked by [`crate::Cache::start`].
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// Shard actors (at least 1). An entry lives in shard `scope.id() % shards`.
    pub shards: usize,
    /// Live entries per shard; the least recently used is evicted past it.
    pub capacity: usize,
    /// Answers whose body is larger than this are not stored (counted as `dropped`).
    pub max_entry_bytes: usize,
    /// Default time to live (an [`Insert`] may carry its own).
    pub ttl: Duration,
    /// Tombstones over live indexed vectors past which a shard rebuilds its
    /// HNSW graph (so the graph holds at most `live × (1 + fraction)` points).
    pub rebuild_fraction: f64,
    pub index: IndexParams,
    /// sled directory; `None` keeps everything in memory (a restarted shard
    /// then starts empty).
    pub store: Option<PathBuf>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            shards: 4,
            capacity: 10_000,
            max_entry_bytes: 1 << 20,
            ttl: Duration::from_secs(3600),
            rebuild_fraction: 0.25,
            index: IndexParams::default(),
            store: None,
        }
    }
}

/// Parameters of the vector index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexParams {
    /// HNSW links per point and layer (2..=255).
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// A scope with at most this many live entries is searched by its flat
    /// index alone; its vectors enter the HNSW graph only once it outgrows
    /// this.
    pub flat_below: usize,
    /// Candidates of a flat search (nearest by sign-bit code) whose exact
    /// similarity is computed; the best of them answers. A scope of at most
    /// this many vectors is scored exactly.
    pub rerank: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            flat_below: 10_000_000,
            rerank: 128,
        }
    }
}

/// Where an entry may answer: nothing is ever answered across scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub tenant: String,
    pub decision: String,
    pub model: String,
    /// Fingerprint of the conversation context, computed by the gateway.
    pub context: u128,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl Scope {
    /// A stable 64-bit id (FNV-1a over length-prefixed fields, then a
    /// finalising mix so `id % shards` is well spread). The same in every
    /// process and release: shard placement and stored entries rely on it.
    pub fn id(&self) -> u64 {
        let mut h = FNV_OFFSET;
        for field in [&self.tenant, &self.decision, &self.model] {
            h = fnv(h, &(field.len() as u64).to_le_bytes());
            h = fnv(h, field.as_bytes());
        }
        h = fnv(h, &self.context.to_le_bytes());
        // splitmix64 finaliser
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// How the answer was delivered upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerKind {
    Json,
    Sse,
}

/// An upstream answer, stored as opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: AnswerKind,
    pub content_type: String,
    pub body: Bytes,
}

/// Store an answer (after a successful upstream call).
#[derive(Clone, Debug)]
pub struct Insert {
    pub scope: Scope,
    /// Exact key: a hash of the normalised prompt, computed by the gateway.
    pub key: u128,
    /// Unit vector of the prompt; `None` stores in the exact tier only.
    pub vector: Option<Vec<f32>>,
    pub answer: Answer,
    /// Overrides [`CacheSettings::ttl`].
    pub ttl: Option<Duration>,
}

/// Look an answer up: exact key first, then the nearest vector of the scope.
#[derive(Clone, Debug)]
pub struct Lookup {
    pub scope: Scope,
    pub key: u128,
    /// `None` makes the lookup exact-only.
    pub vector: Option<Vec<f32>>,
    /// Least cosine similarity of a semantic hit.
    pub threshold: f32,
}

/// Which tier answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Exact,
    Semantic,
}

/// A cached answer.
#[derive(Clone, Debug)]
pub struct Hit {
    pub answer: Arc<Answer>,
    pub tier: Tier,
    /// Cosine similarity (dot product of unit vectors); 1.0 for an exact hit.
    pub similarity: f32,
    /// Time since the answer was stored.
    pub age: Duration,
}

/// What a lookup found. Only `Hit` carries an answer; the rest are misses
/// for different reasons (a degraded result, not an error).
#[derive(Clone, Debug)]
pub enum LookupResult {
    Hit(Hit),
    Miss,
    /// The shard did not answer within the deadline.
    TimedOut,
    /// The shard is down or restarting.
    Unavailable,
}

/// Selects entries by scope parts; `None` matches anything, so the default
/// filter matches every entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeFilter {
    pub tenant: Option<String>,
    pub decision: Option<String>,
    pub model: Option<String>,
}

impl ScopeFilter {
    pub fn matches(&self, scope: &Scope) -> bool {
        fn part(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        part(&self.tenant, &scope.tenant)
            && part(&self.decision, &scope.decision)
            && part(&self.model, &scope.model)
    }
}

/// Counters and sizes of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: usize,
    /// False when the shard did not answer (down, restarting or too slow);
    /// then only `shard` and `restarts` are filled in.
    pub available: bool,
    pub entries: usize,
    /// Answers and vectors, approximately.
    pub bytes: u64,
    /// Points in the HNSW graph, tombstones included.
    pub index_size: usize,
    pub tombstones: usize,
    pub rebuilds: u64,
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    /// Inserts refused: an answer larger than `max_entry_bytes`, or a full
    /// insert backlog (the shard could not keep up).
    pub dropped: u64,
    pub evictions: u64,
    pub expirations: u64,
    /// Restarts of this shard by the supervisor.
    pub restarts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(t: &str, d: &str, m: &str, c: u128) -> Scope {
        Scope {
            tenant: t.into(),
            decision: d.into(),
            model: m.into(),
            context: c,
        }
    }

    #[test]
    fn scope_id_is_stable_and_length_prefixed() {
        // pinned: changing the hash orphans every stored entry
        assert_eq!(scope("t", "d", "m", 7).id(), scope("t", "d", "m", 7).id());
        assert_eq!(scope("", "", "", 0).id(), 888_546_603_223_892_899);
        assert_ne!(scope("ab", "c", "m", 0).id(), scope("a", "bc", "m", 0).id());
        assert_ne!(scope("t", "d", "m", 1).id(), scope("t", "d", "m", 2).id());
    }

    #[test]
    fn filter_matches_any_combination() {
        let s = scope("t", "d", "m", 1);
        let f = |t: Option<&str>, d: Option<&str>, m: Option<&str>| ScopeFilter {
            tenant: t.map(Into::into),
            decision: d.map(Into::into),
            model: m.map(Into::into),
        };
        assert!(f(None, None, None).matches(&s));
        assert!(f(Some("t"), None, Some("m")).matches(&s));
        assert!(!f(Some("t"), Some("x"), None).matches(&s));
        assert!(!f(Some("u"), None, None).matches(&s));
    }
}
