//! The sharded semantic cache of routemesh.
//!
//! A [`Cache`] handle routes each call to the shard of its scope
//! (`scope.id() % shards`). Each shard is a ractor actor (`actor`) around a
//! pure state (`shard`): an exact map, a vector index (`index`: a flat index
//! of sign-bit codes per scope, and an hnsw_rs graph with tombstones and
//! rebuilds for scopes past `flat_below`), TTL and LRU eviction. Entries persist in sled (`store`, one IO thread); shards
//! load them at start and after a restart by their supervisor.
//!
//! **Invariant:** an answer is only ever returned for a lookup of exactly
//! the scope it was stored under (tenant, decision, model, context).
//! **API boundary:** answers are opaque bytes; the gateway computes keys,
//! vectors and context fingerprints, and decides what is cacheable.
//!
//! A degraded cache is data, not an error: a slow shard is
//! [`LookupResult::TimedOut`], a down one [`LookupResult::Unavailable`].
//! Tests make shards slow or down through `faults`, compiled only with the
//! `fault-injection` feature (off by default).

#![deny(unsafe_code)] // allowed only in `index::codes` (see Cargo.toml)

mod actor;
#[cfg(feature = "fault-injection")]
pub mod faults;
mod index;
mod shard;
mod store;
mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};

use crate::actor::{Queued, ShardMsg, Shared, Supervisor, SupervisorArgs, SupervisorMsg};
pub use crate::index::dot;
use crate::store::Store;
pub use crate::types::{
    Answer, AnswerKind, CacheSettings, Hit, IndexParams, Insert, Lookup, LookupResult, Scope,
    ScopeFilter, ShardStats, Tier,
};

/// How long admin calls (stats, invalidate, flush, shutdown) wait per shard.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Inserts waiting in one shard's mailbox past which new ones are refused
/// (counted in `dropped`): memory stays bounded when inserts outpace a shard.
const MAX_QUEUED_INSERTS: usize = 1024;
/// Most threads of the cache's own runtime.
const MAX_CACHE_THREADS: usize = 4;

/// The runtime the shard actors run on, apart from the caller's: a shard's
/// CPU work (graph inserts and searches, rebuild bookkeeping) never holds a
/// thread of the caller's runtime, so the caller's lookup deadline (a timer
/// on its own runtime) holds even when the cache is busy.
struct CacheRuntime {
    handle: tokio::runtime::Handle,
    /// Dropping it shuts the runtime down (on its own thread: a runtime
    /// cannot be dropped inside another's async context).
    _stop: std::sync::mpsc::Sender<()>,
}

impl CacheRuntime {
    fn start(threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("routemesh-cache")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("routemesh-cache-rt".into())
            .spawn(move || {
                // Returns when every sender is gone.
                let _ = stopped.recv();
                rt.shutdown_background();
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

/// The cache could not start.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache store `{path}`: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cache settings: {0}")]
    Settings(String),
    #[error("cache: the shard actors did not start: {0}")]
    Spawn(String),
}

/// Handle to the running cache; cheap to clone. Call [`Cache::shutdown`]
/// to stop the actors and flush the store.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    shards: usize,
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
    store: Option<Store>,
    /// Last: the actors' runtime outlives the references to them.
    _runtime: CacheRuntime,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.inner.shards)
            .field("persistent", &self.inner.store.is_some())
            .finish()
    }
}

fn validate(s: &CacheSettings) -> Result<(), CacheError> {
    let mut errors = Vec::new();
    if s.shards == 0 {
        errors.push("shards must be at least 1");
    }
    if s.capacity == 0 {
        errors.push("capacity must be at least 1");
    }
    if !(s.rebuild_fraction.is_finite() && s.rebuild_fraction > 0.0) {
        errors.push("rebuild_fraction must be a positive number");
    }
    if !(2..=255).contains(&s.index.m) {
        errors.push("index.m must be between 2 and 255");
    }
    if s.index.ef_search == 0 || s.index.ef_construction == 0 {
        errors.push("index.ef_search and index.ef_construction must be at least 1");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CacheError::Settings(errors.join("; ")))
    }
}

impl Cache {
    /// Opens the store (if any), then starts the supervisor, which starts the
    /// shards; each loads its entries (expired ones dropped) before this
    /// returns.
    pub async fn start(settings: CacheSettings) -> Result<Cache, CacheError> {
        validate(&settings)?;
        let (store, next_id) = match &settings.store {
            Some(path) => {
                let (store, next) = Store::open(path.clone()).await?;
                (Some(store), next)
            }
            None => (None, 1),
        };
        let shards = settings.shards;
        let shared = Arc::new(Shared::new(shards));
        let args = SupervisorArgs {
            settings: Arc::new(settings),
            store: store.clone(),
            ids: Arc::new(AtomicU64::new(next_id)),
            shared: Arc::clone(&shared),
        };
        let threads = shards.clamp(1, MAX_CACHE_THREADS);
        let runtime = match CacheRuntime::start(threads) {
            Ok(rt) => rt,
            Err(e) => {
                if let Some(store) = &store {
                    store.close().await;
                }
                return Err(CacheError::Spawn(format!(
                    "cannot start the cache's threads: {e}"
                )));
            }
        };
        // The supervisor, and the shards it spawns, run on the cache runtime.
        let spawned = runtime
            .handle
            .spawn(async move { Supervisor::spawn(None, Supervisor, args).await })
            .await;
        match spawned {
            Ok(Ok((supervisor, _))) => Ok(Cache {
                inner: Arc::new(Inner {
                    shards,
                    shared,
                    supervisor,
                    store,
                    _runtime: runtime,
                }),
            }),
            Ok(Err(e)) => {
                if let Some(store) = &store {
                    store.close().await;
                }
                Err(CacheError::Spawn(e.to_string()))
            }
            Err(e) => {
                if let Some(store) = &store {
                    store.close().await;
                }
                Err(CacheError::Spawn(format!(
                    "the supervisor's start panicked: {e}"
                )))
            }
        }
    }

    fn shard_of(&self, scope: &Scope) -> usize {
        (scope.id() % self.inner.shards as u64) as usize
    }

    /// Exact tier, then semantic. A shard that does not answer within
    /// `deadline` is `TimedOut`; one that is down is `Unavailable`.
    pub async fn lookup(&self, l: Lookup, deadline: Duration) -> LookupResult {
        let Some(actor) = self.inner.shared.shard(self.shard_of(&l.scope)) else {
            return LookupResult::Unavailable;
        };
        let call = actor.call(|reply| ShardMsg::Lookup(l, reply), None);
        match tokio::time::timeout(deadline, call).await {
            Err(_) | Ok(Ok(CallResult::Timeout)) => LookupResult::TimedOut,
            Ok(Ok(CallResult::Success(Some(hit)))) => LookupResult::Hit(hit),
            Ok(Ok(CallResult::Success(None))) => LookupResult::Miss,
            Ok(Ok(CallResult::SenderError)) | Ok(Err(_)) => LookupResult::Unavailable,
        }
    }

    /// Stores an answer, fire and forget. Answers larger than
    /// `max_entry_bytes` are dropped (counted in the shard's `dropped`); so
    /// are inserts while the shard is down.
    pub fn insert(&self, i: Insert) {
        let shard = self.shard_of(&i.scope);
        let shared = &self.inner.shared;
        let Some(actor) = shared.shard(shard) else {
            return;
        };
        // A shard that cannot keep up sheds inserts rather than letting
        // its mailbox (answers and vectors) grow without bound.
        let queued = &shared.queued[shard];
        if queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED_INSERTS {
            queued.fetch_sub(1, Ordering::Relaxed);
            shared.refused[shard].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let ticket = Queued(Arc::clone(queued));
        if actor.cast(ShardMsg::Insert(i, ticket)).is_err() {
            tracing::debug!("cache: insert dropped; shard down");
        }
    }

    /// One entry per shard, in shard order; a shard that does not answer
    /// has `available: false`.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut out = Vec::with_capacity(self.inner.shards);
        for shard in 0..self.inner.shards {
            let got = self.ask(shard, ShardMsg::Stats).await;
            let mut st = got.unwrap_or(ShardStats {
                shard,
                ..ShardStats::default()
            });
            st.restarts = self.inner.shared.restarts[shard].load(Ordering::Relaxed);
            st.dropped += self.inner.shared.refused[shard].load(Ordering::Relaxed);
            out.push(st);
        }
        out
    }

    /// Removes the entries whose scope matches `f`, in memory and in the
    /// store. Returns how many.
    pub async fn invalidate(&self, f: &ScopeFilter) -> usize {
        let mut n = 0;
        for shard in 0..self.inner.shards {
            let f = f.clone();
            n += self
                .ask(shard, |r| ShardMsg::Invalidate(f, r))
                .await
                .unwrap_or(0);
        }
        n
    }

    /// Removes every entry. Returns how many.
    pub async fn flush(&self) -> usize {
        let mut n = 0;
        for shard in 0..self.inner.shards {
            n += self.ask(shard, ShardMsg::Flush).await.unwrap_or(0);
        }
        n
    }

    /// Stops the actors and flushes the store to disk; later calls answer
    /// `Unavailable` / nothing.
    pub async fn shutdown(&self) {
        let sup = &self.inner.supervisor;
        match sup.call(SupervisorMsg::Shutdown, Some(ADMIN_TIMEOUT)).await {
            Ok(CallResult::Success(())) => {}
            _ => tracing::warn!("cache: supervisor did not confirm the shutdown"),
        }
        if let Err(e) = sup.stop_and_wait(None, Some(ADMIN_TIMEOUT)).await {
            tracing::warn!(error = %e, "cache: supervisor did not stop in time");
        }
        if let Some(store) = &self.inner.store {
            store.close().await;
        }
    }

    /// Sends `msg` to the shard's actor without waiting (nothing when the
    /// shard is down or out of range).
    #[cfg(feature = "fault-injection")]
    fn cast(&self, shard: usize, msg: ShardMsg) {
        if let Some(actor) = self.inner.shared.shard(shard) {
            let _ = actor.cast(msg);
        }
    }

    async fn ask<R: Send + 'static>(
        &self,
        shard: usize,
        msg: impl FnOnce(ractor::RpcReplyPort<R>) -> ShardMsg,
    ) -> Option<R> {
        let actor = self.inner.shared.shard(shard)?;
        match actor.call(msg, Some(ADMIN_TIMEOUT)).await {
            Ok(CallResult::Success(r)) => Some(r),
            _ => None,
        }
    }
}
