//! Persistence in sled: one tree of entries keyed by their id (u64,
//! big-endian) holding a compact binary record (format below), behind one
//! IO thread for the whole cache.
//!
//! Every operation — writes from the shards, a restarted shard's load, the
//! final flush — goes through one channel to that thread, in order, so a
//! shard that loads reads everything written before it asked (the channel is
//! the barrier). The sled `Db` lives only on that thread and is dropped when
//! it closes, so the directory can be opened again in the same process.
//! Writes are flushed whenever the queue runs empty (one fsync per burst,
//! off the shards' path), so a crash loses only what was still queued and
//! never corrupts the store.
//!
//! Record, version 1: `u8 version`, tenant, decision, model (each `u32 LE`
//! length + UTF-8), `u128 LE` context, `u128 LE` key, `u64 LE` inserted and
//! expiry (ms since the UNIX epoch), `u8` kind (0 JSON, 1 SSE), content type
//! (length + UTF-8), body (`u32 LE` length + bytes), `u8` has-vector, then
//! `u32 LE` count + `f32 LE` values. Records that do not decode are removed
//! with a warning.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::CacheError;
use crate::shard::Entry;
use crate::types::{Answer, AnswerKind, Scope};

const TREE: &[u8] = b"entries";
const VERSION: u8 = 1;

/// Encodes an entry; `None` if a length does not fit the format.
pub(crate) fn encode(e: &Entry) -> Option<Vec<u8>> {
    let vec_len = e.vector.as_ref().map_or(0, |v| v.len() * 4);
    let mut out = Vec::with_capacity(80 + e.answer.body.len() + vec_len);
    out.push(VERSION);
    for s in [&e.scope.tenant, &e.scope.decision, &e.scope.model] {
        put_bytes(&mut out, s.as_bytes())?;
    }
    out.extend_from_slice(&e.scope.context.to_le_bytes());
    out.extend_from_slice(&e.key.to_le_bytes());
    out.extend_from_slice(&e.inserted_ms.to_le_bytes());
    out.extend_from_slice(&e.expires_ms.to_le_bytes());
    out.push(match e.answer.kind {
        AnswerKind::Json => 0,
        AnswerKind::Sse => 1,
    });
    put_bytes(&mut out, e.answer.content_type.as_bytes())?;
    put_bytes(&mut out, &e.answer.body)?;
    match &e.vector {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(v.len()).ok()?.to_le_bytes());
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    Some(out)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(b.len()).ok()?.to_le_bytes());
    out.extend_from_slice(b);
    Some(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "truncated")
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }
    fn len(&mut self) -> Result<usize, &'static str> {
        usize::try_from(u32::from_le_bytes(self.array()?)).map_err(|_| "length")
    }
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.len()?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, &'static str> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "not UTF-8")
    }
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode(b: &[u8]) -> Result<Entry, &'static str> {
    let mut r = Reader(b);
    if r.u8()? != VERSION {
        return Err("unknown version");
    }
    let scope = Scope {
        tenant: r.string()?,
        decision: r.string()?,
        model: r.string()?,
        context: u128::from_le_bytes(r.array()?),
    };
    let key = u128::from_le_bytes(r.array()?);
    let inserted_ms = u64::from_le_bytes(r.array()?);
    let expires_ms = u64::from_le_bytes(r.array()?);
    let kind = match r.u8()? {
        0 => AnswerKind::Json,
        1 => AnswerKind::Sse,
        _ => return Err("unknown answer kind"),
    };
    let content_type = r.string()?;
    let body = Bytes::copy_from_slice(r.bytes()?);
    let vector = match r.u8()? {
        0 => None,
        1 => {
            let n = r.len()?;
            let raw = r.take(n.checked_mul(4).ok_or("length")?)?;
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(Arc::<[f32]>::from(v))
        }
        _ => return Err("bad vector flag"),
    };
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(Entry {
        scope,
        key,
        vector,
        answer: Arc::new(Answer {
            kind,
            content_type,
            body,
        }),
        inserted_ms,
        expires_ms,
    })
}

/// What a shard finds in the store.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) entries: Vec<(u64, Entry)>,
    /// Records skipped (and removed) because they did not decode.
    pub(crate) corrupt: usize,
}

enum Op {
    Put(u64, Vec<u8>),
    Remove(Vec<u64>),
    Load {
        shard: usize,
        shards: usize,
        reply: oneshot::Sender<Loaded>,
    },
    Close(oneshot::Sender<()>),
}

/// Handle to the IO thread. Calls after [`Store::close`] do nothing.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    tx: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Put(..) => "Put",
            Op::Remove(_) => "Remove",
            Op::Load { .. } => "Load",
            Op::Close(_) => "Close",
        })
    }
}

impl Store {
    /// Opens the sled directory on a new IO thread. Returns the store and
    /// the first unused entry id.
    pub(crate) async fn open(path: PathBuf) -> Result<(Store, u64), CacheError> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("routemesh-cache-store".into())
            .spawn(move || {
                let opened = open_db(&thread_path).and_then(|db| {
                    let tree = db.open_tree(TREE)?;
                    let next = next_id(&tree)?;
                    Ok((db, tree, next))
                });
                match opened {
                    Ok((db, tree, next)) => {
                        let _ = ready_tx.send(Ok(next));
                        run(db, tree, rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| CacheError::Store {
                path: path.clone(),
                source: sled::Error::Io(e),
            })?;
        match ready_rx.await {
            Ok(Ok(next)) => Ok((Store { tx }, next)),
            Ok(Err(source)) => Err(CacheError::Store { path, source }),
            Err(_) => Err(CacheError::Store {
                path,
                source: sled::Error::ReportableBug("store thread ended while opening".into()),
            }),
        }
    }

    pub(crate) fn put(&self, id: u64, entry: &Entry) {
        match encode(entry) {
            Some(record) => self.send(Op::Put(id, record)),
            None => tracing::warn!(id, "cache: entry too large for its record; not persisted"),
        }
    }

    pub(crate) fn remove(&self, ids: Vec<u64>) {
        if !ids.is_empty() {
            self.send(Op::Remove(ids));
        }
    }

    /// The entries of `shard` (of `shards`), after every write sent before.
    /// `None` if the store is closed.
    pub(crate) async fn load(&self, shard: usize, shards: usize) -> Option<Loaded> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Load {
            shard,
            shards,
            reply,
        });
        rx.await.ok()
    }

    /// Applies what is queued, flushes to disk and closes the database.
    pub(crate) async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Close(reply));
        let _ = rx.await;
    }

    fn send(&self, op: Op) {
        if self.tx.send(op).is_err() {
            tracing::debug!("cache: store closed; operation dropped");
        }
    }
}

/// How long an open waits for the directory's lock to be let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its lock: sled lets
/// go of the lock only when its background threads have dropped their
/// handles, a moment after a close, so a cache restarted in the same
/// process at once could find its own lock still held. Another process
/// holding it still fails, after the wait, with sled's error.
fn open_db(path: &std::path::Path) -> sled::Result<sled::Db> {
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::open(path) {
            // sled reports the lock as an `Other` IO error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < until =>
            {
                // Real time: a blocking IO thread waiting on a file lock.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// One past the largest id stored (keys that are not ids are skipped).
fn next_id(tree: &sled::Tree) -> sled::Result<u64> {
    for item in tree.iter().rev() {
        let (k, _) = item?;
        if let Some(id) = id_of(&k) {
            return Ok(id.saturating_add(1));
        }
    }
    Ok(1)
}

fn id_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// The IO thread: applies operations in order until closed. Writes are
/// flushed to disk as soon as the queue is empty, so a burst of inserts
/// costs one fsync and a crash loses at most what was still queued.
fn run(db: sled::Db, tree: sled::Tree, rx: mpsc::Receiver<Op>) {
    let mut dirty = false;
    loop {
        // Block only when everything written so far is on disk.
        let op = match rx.try_recv() {
            Ok(op) => op,
            Err(mpsc::TryRecvError::Empty) => {
                if dirty {
                    flush(&db);
                    dirty = false;
                }
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let result = match op {
            Op::Put(id, record) => {
                dirty = true;
                tree.insert(id.to_be_bytes(), record).map(drop)
            }
            Op::Remove(ids) => {
                dirty = true;
                ids.iter()
                    .try_for_each(|id| tree.remove(id.to_be_bytes()).map(drop))
            }
            Op::Load {
                shard,
                shards,
                reply,
            } => {
                let _ = reply.send(load(&tree, shard, shards));
                Ok(())
            }
            Op::Close(reply) => {
                flush(&db);
                drop(tree);
                drop(db);
                let _ = reply.send(());
                return;
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cache: store write failed");
        }
    }
    // every handle dropped without close
    flush(&db);
}

fn flush(db: &sled::Db) {
    if let Err(e) = db.flush() {
        tracing::warn!(error = %e, "cache: store flush failed");
    }
}

fn load(tree: &sled::Tree, shard: usize, shards: usize) -> Loaded {
    let mut loaded = Loaded::default();
    let mut bad = Vec::new();
    for item in tree.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                tracing::warn!(shard, error = %e, "cache: store read failed; loading what was read");
                break;
            }
        };
        let decoded = id_of(&k)
            .ok_or("bad key")
            .and_then(|id| Ok((id, decode(&v)?)));
        match decoded {
            Ok((id, entry)) => {
                if (entry.scope.id() % shards.max(1) as u64) as usize == shard {
                    loaded.entries.push((id, entry));
                }
            }
            Err(why) => {
                tracing::warn!(shard, key = ?&k[..], why, "cache: undecodable record skipped and removed");
                loaded.corrupt += 1;
                bad.push(k);
            }
        }
    }
    for k in bad {
        if let Err(e) = tree.remove(k) {
            tracing::warn!(error = %e, "cache: store write failed");
        }
    }
    loaded
}

#[cfg(test)]
mod tests;
