//! The request memory's copy in the learning store: tree `requests`, the
//! request id → the remembered request (JSON: tenant, decision, model,
//! when routed on the learning clock, rated). It is written under the
//! memory's lock, so it mirrors the memory exactly, and a flusher thread
//! writes it to disk soon after each change (one flush covers every change
//! made while the previous one ran), off the request path. A restart,
//! graceful or not, loads it back: feedback for a request answered before
//! it is taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use serde::{Deserialize, Serialize};

use super::memory::{Millis, Remembered, RoutedRequest};

/// The learning store's tree the request memory lives in.
pub(crate) const TREE: &str = "requests";

/// A remembered request as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    tenant: String,
    decision: String,
    model: String,
    at: Millis,
    rated: bool,
}

/// How many changes were made and how many of them are on disk.
#[derive(Debug, Default)]
struct Progress {
    made: AtomicU64,
    flushed: AtomicU64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Requests {
    tree: sled::Tree,
    progress: Arc<Progress>,
    /// Wakes the flusher thread (a full channel: a flush is due already);
    /// `None` once dropped, which ends the thread.
    poke: Option<mpsc::SyncSender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Requests {
    /// Uses `tree` and starts its flusher thread, which ends when this is
    /// dropped.
    pub(crate) fn open(tree: sled::Tree) -> std::io::Result<Self> {
        let (poke, woken) = mpsc::sync_channel::<()>(1);
        let progress = Arc::new(Progress::default());
        let (t, p) = (tree.clone(), progress.clone());
        let flusher = std::thread::Builder::new()
            .name("learning-flush".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let made = p.made.load(Ordering::Acquire);
                    match t.flush() {
                        Ok(_) => p.flushed.store(made, Ordering::Release),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot flush the request memory")
                        }
                    }
                }
            })?;
        Ok(Self {
            tree,
            progress,
            poke: Some(poke),
            flusher: Some(flusher),
        })
    }

    /// The tree, for a transaction with the outbox.
    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Everything stored, oldest first. An entry that cannot be read is
    /// dropped with a warning.
    pub(crate) fn load(&self) -> Result<Vec<(String, Remembered)>, sled::Error> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            let id = String::from_utf8(k.to_vec()).ok();
            match (id, serde_json::from_slice::<Stored>(&v)) {
                (Some(id), Ok(s)) => out.push((id, decode(s))),
                _ => {
                    tracing::warn!("dropping an unreadable entry of the request memory");
                    self.tree.remove(&k)?;
                }
            }
        }
        out.sort_by_key(|(_, r)| r.at);
        Ok(out)
    }

    /// Writes `id`'s entry; on disk with the flusher's next flush.
    pub(crate) fn put(&self, id: &str, r: &Remembered) -> Result<(), sled::Error> {
        self.tree.insert(id.as_bytes(), encode(r))?;
        self.changed();
        Ok(())
    }

    /// Deletes forgotten entries.
    pub(crate) fn forget(&self, ids: &[String]) -> Result<(), sled::Error> {
        for id in ids {
            self.tree.remove(id.as_bytes())?;
        }
        if !ids.is_empty() {
            self.changed();
        }
        Ok(())
    }

    /// Counts a change made outside [`Requests::put`] (in a transaction).
    pub(crate) fn changed(&self) {
        self.progress.made.fetch_add(1, Ordering::AcqRel);
        // Full: the flusher is woken already and will see this change.
        if let Some(poke) = &self.poke {
            let _ = poke.try_send(());
        }
    }

    /// Changes not yet known to be on disk.
    pub(crate) fn unflushed(&self) -> u64 {
        let made = self.progress.made.load(Ordering::Acquire);
        made.saturating_sub(self.progress.flushed.load(Ordering::Acquire))
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        // Ends the flusher thread and waits for it, so the store is closed
        // once this is gone (a reopen in the same process finds it free).
        self.poke = None;
        if let Some(thread) = self.flusher.take() {
            let _ = thread.join();
        }
        if let Err(e) = self.tree.flush() {
            tracing::error!(error = %e, "cannot flush the request memory");
        }
    }
}

/// The stored form of a remembered request.
pub(crate) fn encode(r: &Remembered) -> Vec<u8> {
    let stored = Stored {
        tenant: r.tenant.clone(),
        decision: r.routed.decision.clone(),
        model: r.routed.model.clone(),
        at: r.at,
        rated: r.rated,
    };
    // A struct of strings, a number and a bool always serialises.
    serde_json::to_vec(&stored).unwrap_or_default()
}

fn decode(s: Stored) -> Remembered {
    Remembered {
        tenant: s.tenant,
        routed: RoutedRequest {
            decision: s.decision,
            model: s.model,
        },
        at: s.at,
        rated: s.rated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: Millis, rated: bool) -> Remembered {
        Remembered {
            tenant: "acme".into(),
            routed: RoutedRequest {
                decision: "math".into(),
                model: "m".into(),
            },
            at,
            rated,
        }
    }

    #[test]
    fn what_was_remembered_is_loaded_back_oldest_first() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let db = sled::open(dir.path())?;
            let requests = Requests::open(db.open_tree(TREE)?)?;
            requests.put("late", &entry(30, false))?;
            requests.put("early", &entry(10, true))?;
            requests.put("gone", &entry(20, false))?;
            requests.forget(&["gone".to_owned()])?;
            // Dropped without a flush of its own: the drop flushes.
        }
        let db = sled::open(dir.path())?;
        db.open_tree(TREE)?.insert(b"bad", b"{".as_slice())?;
        let requests = Requests::open(db.open_tree(TREE)?)?;
        assert_eq!(
            requests.load()?,
            [
                ("early".to_owned(), entry(10, true)),
                ("late".to_owned(), entry(30, false))
            ]
        );
        assert!(
            db.open_tree(TREE)?.get(b"bad")?.is_none(),
            "an unreadable entry is dropped"
        );
        Ok(())
    }

    #[test]
    fn the_flusher_catches_up_with_every_change() -> Result<(), Box<dyn std::error::Error>> {
        let db = sled::Config::new().temporary(true).open()?;
        let requests = Requests::open(db.open_tree(TREE)?)?;
        for i in 0..50 {
            requests.put(&format!("r{i}"), &entry(i, false))?;
        }
        // Real: the flusher is a thread doing disk IO; a bounded poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while requests.unflushed() > 0 {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }
}
