//! The IO shell: a ractor actor per shard around the pure [`Shard`], and the
//! supervisor that starts them and restarts a shard that fails.
//!
//! Supervision tree: `cache-supervisor` → `shard 0 … n−1` (linked in the
//! supervisor's `pre_start`). A shard that panics or stops is respawned by
//! the supervisor; the new actor loads its entries from the store (the store
//! thread orders the load after every write the old actor sent), so a
//! restart loses at most what was in the old actor's mailbox. While a shard
//! is down its slot in [`Shared::shards`] is empty and calls on it answer
//! `Unavailable`. Memory-only caches restart a shard empty.
//!
//! Rebuilds of the HNSW graph up to [`INLINE_REBUILD_MAX`] points run in the
//! handler (milliseconds); bigger ones run on tokio's blocking pool and come
//! back as [`ShardMsg::Rebuilt`], the shard serving from the old graph
//! meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::index::Rebuilt;
use crate::shard::{Shard, ShardConfig};
use crate::store::Store;
use crate::types::{CacheSettings, Hit, Insert, Lookup, ScopeFilter, ShardStats};

/// Graphs with at most this many points are rebuilt inside the handler.
pub(crate) const INLINE_REBUILD_MAX: usize = 500;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const RETRY_RESPAWN_AFTER: Duration = Duration::from_secs(1);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Messages of a shard actor.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// Look an answer up; replies `None` for a miss. Skipped if the caller
    /// has already given up.
    Lookup(Lookup, RpcReplyPort<Option<Hit>>),
    /// Store an answer (fire and forget); the ticket counts it in the
    /// shard's insert backlog until handled.
    Insert(Insert, Queued),
    /// Counters and sizes.
    Stats(RpcReplyPort<ShardStats>),
    /// Remove the entries matching the filter; replies how many.
    Invalidate(ScopeFilter, RpcReplyPort<usize>),
    /// Remove everything; replies how many.
    Flush(RpcReplyPort<usize>),
    /// Periodic: remove expired entries.
    Sweep,
    /// A graph built off the handler.
    Rebuilt(Rebuilt),
    /// Panic, so tests can exercise supervision (`faults`).
    #[cfg(feature = "fault-injection")]
    Crash,
    /// Sleep in the handler, so tests can exercise deadlines (`faults`).
    #[cfg(feature = "fault-injection")]
    Stall(Duration),
}

/// What a shard actor starts from.
#[derive(Clone, Debug)]
pub(crate) struct ShardArgs {
    pub(crate) shard: usize,
    pub(crate) settings: Arc<CacheSettings>,
    pub(crate) store: Option<Store>,
    /// Entry ids, unique across shards and restarts.
    pub(crate) ids: Arc<AtomicU64>,
}

#[derive(Debug)]
pub(crate) struct ShardState {
    core: Shard,
    store: Option<Store>,
    ids: Arc<AtomicU64>,
}

impl ShardState {
    fn forget(&self, removed: Vec<u64>) {
        if let Some(store) = &self.store {
            store.remove(removed);
        }
    }

    fn maybe_rebuild(&mut self, myself: &ActorRef<ShardMsg>) {
        let Some(job) = self.core.rebuild_job() else {
            return;
        };
        if job.len() <= INLINE_REBUILD_MAX {
            self.core.finish_rebuild(job.run());
            return;
        }
        let me = myself.clone();
        tokio::task::spawn_blocking(move || {
            // a shard that died meanwhile no longer wants it
            let _ = me.cast(ShardMsg::Rebuilt(job.run()));
        });
    }
}

#[derive(Debug)]
pub(crate) struct ShardActor;

impl Actor for ShardActor {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        _: ActorRef<ShardMsg>,
        args: ShardArgs,
    ) -> Result<ShardState, ActorProcessingErr> {
        let s = &args.settings;
        let mut core = Shard::new(ShardConfig {
            shard: args.shard,
            capacity: s.capacity,
            max_entry_bytes: s.max_entry_bytes,
            ttl: s.ttl,
            rebuild_fraction: s.rebuild_fraction,
            index: s.index,
        });
        if let Some(store) = &args.store {
            let loaded = store
                .load(args.shard, s.shards)
                .await
                .ok_or("cache store is closed")?;
            let found = loaded.entries.len();
            let removed = core.load(loaded.entries, now_ms());
            tracing::info!(
                shard = args.shard,
                found,
                dropped = removed.len(),
                corrupt = loaded.corrupt,
                "cache: shard loaded"
            );
            store.remove(removed);
        }
        let mut state = ShardState {
            core,
            store: args.store,
            ids: args.ids,
        };
        state.core.rebuild_inline();
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<ShardMsg>,
        _: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_interval(SWEEP_EVERY, || ShardMsg::Sweep);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Lookup(l, reply) => {
                if reply.is_closed() {
                    return Ok(());
                }
                let (hit, removed) = state.core.lookup(&l, now_ms());
                state.forget(removed);
                let _ = reply.send(hit);
            }
            ShardMsg::Insert(i, _queued) => {
                let id = state.ids.fetch_add(1, Ordering::Relaxed);
                let (stored, removed) = state.core.insert(id, i, now_ms());
                if let (true, Some(store), Some(entry)) = (stored, &state.store, state.core.get(id))
                {
                    store.put(id, entry);
                }
                state.forget(removed);
                state.maybe_rebuild(&myself);
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.send(state.core.stats());
            }
            ShardMsg::Invalidate(filter, reply) => {
                let removed = state.core.invalidate(&filter);
                let n = removed.len();
                state.forget(removed);
                state.maybe_rebuild(&myself);
                let _ = reply.send(n);
            }
            ShardMsg::Flush(reply) => {
                let removed = state.core.flush();
                let n = removed.len();
                state.forget(removed);
                let _ = reply.send(n);
            }
            ShardMsg::Sweep => {
                let removed = state.core.sweep(now_ms());
                state.forget(removed);
                state.maybe_rebuild(&myself);
            }
            ShardMsg::Rebuilt(built) => {
                state.core.finish_rebuild(built);
                state.maybe_rebuild(&myself);
            }
            #[cfg(feature = "fault-injection")]
            ShardMsg::Crash => panic!("cache shard crashed on request (test)"),
            #[cfg(feature = "fault-injection")]
            ShardMsg::Stall(d) => tokio::time::sleep(d).await,
        }
        Ok(())
    }
}

/// What the supervisor and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The live shard actors; `None` while one is down.
    pub(crate) shards: RwLock<Vec<Option<ActorRef<ShardMsg>>>>,
    /// Restarts per shard.
    pub(crate) restarts: Vec<AtomicU64>,
    /// Inserts sent to each shard and not yet handled.
    pub(crate) queued: Vec<Arc<AtomicUsize>>,
    /// Inserts refused because the shard's backlog was full.
    pub(crate) refused: Vec<AtomicU64>,
}

/// An insert in a shard's mailbox: counted in the backlog until it is
/// handled or dropped (with a dead actor's mailbox).
#[derive(Debug)]
pub(crate) struct Queued(pub(crate) Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn new(shards: usize) -> Shared {
        Shared {
            shards: RwLock::new(vec![None; shards]),
            restarts: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            queued: (0..shards).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
            refused: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn shard(&self, i: usize) -> Option<ActorRef<ShardMsg>> {
        let guard = self.shards.read().unwrap_or_else(|e| e.into_inner());
        guard.get(i).cloned().flatten()
    }

    fn set(&self, i: usize, actor: Option<ActorRef<ShardMsg>>) {
        let mut guard = self.shards.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = guard.get_mut(i) {
            *slot = actor;
        }
    }

    fn index_of(&self, cell: &ActorCell) -> Option<usize> {
        let guard = self.shards.read().unwrap_or_else(|e| e.into_inner());
        guard
            .iter()
            .position(|s| s.as_ref().is_some_and(|a| a.get_id() == cell.get_id()))
    }
}

/// Messages of the supervisor.
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// Try again to start shard `i` (a restart failed).
    Respawn(usize),
    /// Stop every shard, restarting none from now on; replies when done.
    Shutdown(RpcReplyPort<()>),
}

#[derive(Clone, Debug)]
pub(crate) struct SupervisorArgs {
    pub(crate) settings: Arc<CacheSettings>,
    pub(crate) store: Option<Store>,
    pub(crate) ids: Arc<AtomicU64>,
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    stopping: bool,
}

#[derive(Debug)]
pub(crate) struct Supervisor;

impl Supervisor {
    async fn spawn_shard(
        myself: &ActorRef<SupervisorMsg>,
        args: &SupervisorArgs,
        shard: usize,
    ) -> Result<(), ActorProcessingErr> {
        let shard_args = ShardArgs {
            shard,
            settings: Arc::clone(&args.settings),
            store: args.store.clone(),
            ids: Arc::clone(&args.ids),
        };
        let (actor, _) =
            Actor::spawn_linked(None, ShardActor, shard_args, myself.get_cell()).await?;
        args.shared.set(shard, Some(actor));
        Ok(())
    }

    async fn restart(myself: &ActorRef<SupervisorMsg>, state: &SupervisorState, shard: usize) {
        match Self::spawn_shard(myself, &state.args, shard).await {
            Ok(()) => {
                state.args.shared.restarts[shard].fetch_add(1, Ordering::Relaxed);
                tracing::info!(shard, "cache: shard restarted");
            }
            Err(e) => {
                tracing::warn!(shard, error = %e, "cache: shard restart failed; retrying");
                myself.send_after(RETRY_RESPAWN_AFTER, move || SupervisorMsg::Respawn(shard));
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        for shard in 0..args.settings.shards {
            Self::spawn_shard(&myself, &args, shard).await?;
        }
        Ok(SupervisorState {
            args,
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Respawn(shard) => {
                if !state.stopping && state.args.shared.shard(shard).is_none() {
                    Self::restart(&myself, state, shard).await;
                }
            }
            SupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                for shard in 0..state.args.settings.shards {
                    if let Some(actor) = state.args.shared.shard(shard) {
                        state.args.shared.set(shard, None);
                        if let Err(e) = actor.stop_and_wait(None, Some(STOP_TIMEOUT)).await {
                            tracing::warn!(shard, error = %e, "cache: shard did not stop in time");
                        }
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &evt {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(shard) = state.args.shared.index_of(cell) else {
            return Ok(());
        };
        state.args.shared.set(shard, None);
        if state.stopping {
            return Ok(());
        }
        tracing::warn!(shard, why, "cache: shard down; restarting from the store");
        Self::restart(&myself, state, shard).await;
        Ok(())
    }
}
