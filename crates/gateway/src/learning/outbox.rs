//! The outbox: outcome events taken but not yet delivered to where they
//! are applied (the JetStream stream, or this gateway's learner), oldest
//! first. With a learning store it is the store's tree `outbox`, so an
//! event acknowledged to a client survives a crash (the caller flushes
//! before acknowledging); without one it is in memory. Keys are `u64`s,
//! big-endian, in the order taken; values are the events' wire JSON.
//!
//! An entry is deleted only once delivered; delivering it again after a
//! crash is harmless, since events are applied once per event id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use routemesh_common::wire::OutcomeEvent;
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::telemetry::OUTBOX_EVENTS;

/// The learning store's tree the outbox lives in.
pub(crate) const TREE: &str = "outbox";

/// Most events the outbox holds: past it, feedback is refused (503, not
/// acknowledged) and implicit outcomes are dropped, so an outage of the
/// stream cannot fill the disk. About 300 bytes each.
pub(crate) const LIMIT: usize = 1_000_000;

/// The outbox could not take or give an event.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboxError {
    #[error("outbox: {0}")]
    Sled(#[from] sled::Error),
    #[error("the outbox is full: {0} outcome events wait for delivery")]
    Full(usize),
    #[error("outbox: cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Debug)]
enum Events {
    Memory(Mutex<BTreeMap<u64, OutcomeEvent>>),
    Sled(sled::Tree),
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Outbox {
    events: Events,
    /// The next key.
    next: AtomicU64,
    depth: AtomicUsize,
    limit: usize,
}

impl Outbox {
    /// An outbox that a crash empties.
    pub(crate) fn in_memory(limit: usize) -> Self {
        Self::build(Events::Memory(Mutex::new(BTreeMap::new())), 0, 0, limit)
    }

    /// The outbox in a learning store's tree, with what it held.
    pub(crate) fn on_disk(tree: sled::Tree, limit: usize) -> Result<Self, OutboxError> {
        let next = match tree.last()? {
            Some((k, _)) => be_u64(&k).map_or(0, |k| k.saturating_add(1)),
            None => 0,
        };
        let depth = tree.len();
        Ok(Self::build(Events::Sled(tree), next, depth, limit))
    }

    fn build(events: Events, next: u64, depth: usize, limit: usize) -> Self {
        let outbox = Self {
            events,
            next: AtomicU64::new(next),
            depth: AtomicUsize::new(depth),
            limit,
        };
        outbox.report_depth();
        outbox
    }

    /// Whether what it holds survives a crash.
    pub(crate) fn is_durable(&self) -> bool {
        matches!(self.events, Events::Sled(_))
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    fn report_depth(&self) {
        metrics::gauge!(OUTBOX_EVENTS).set(self.len() as f64);
    }

    /// Counts an event in (refused when full) and gives it a key. It is
    /// counted *before* it is written: the drain task may deliver and
    /// remove it as soon as it is in the tree, and that removal must find it
    /// counted (counted after, a removal that came first left the depth one
    /// too high forever: an outbox that never drained).
    fn take_key(&self) -> Result<u64, OutboxError> {
        self.depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                (d < self.limit).then_some(d + 1)
            })
            .map_err(OutboxError::Full)?;
        self.report_depth();
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Undoes [`Outbox::take_key`]'s count when the write failed.
    fn not_written<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.gone();
        }
        result
    }

    /// Queues `event` (on disk when the next flush comes); returns its key.
    pub(crate) fn push(&self, event: &OutcomeEvent) -> Result<u64, OutboxError> {
        let json = match &self.events {
            Events::Memory(_) => Vec::new(),
            Events::Sled(_) => serde_json::to_vec(event)?,
        };
        let key = self.take_key()?;
        match &self.events {
            Events::Memory(m) => {
                lock(m).insert(key, event.clone());
            }
            Events::Sled(tree) => {
                self.not_written(tree.insert(key.to_be_bytes(), json))?;
            }
        }
        Ok(key)
    }

    /// Queues `event` and writes `value` at `key` of `beside` (another tree
    /// of the same store) in one transaction: both or neither. Without a
    /// store the two writes are simply made one after the other.
    pub(crate) fn push_beside(
        &self,
        event: &OutcomeEvent,
        beside: &sled::Tree,
        key: &[u8],
        value: &[u8],
    ) -> Result<u64, OutboxError> {
        let Events::Sled(tree) = &self.events else {
            beside.insert(key, value)?;
            return self.push(event);
        };
        let json = serde_json::to_vec(event)?;
        let ours = self.take_key()?;
        let written = (tree, beside)
            .transaction(|(outbox, other)| {
                outbox.insert(&ours.to_be_bytes(), json.as_slice())?;
                other.insert(key, value)?;
                Ok::<_, ConflictableTransactionError<sled::Error>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) | TransactionError::Storage(e) => e,
            });
        self.not_written(written)?;
        Ok(ours)
    }

    /// Writes what was taken to disk (nothing to do in memory).
    pub(crate) fn flush(&self) -> Result<(), OutboxError> {
        if let Events::Sled(tree) = &self.events {
            tree.flush()?;
        }
        Ok(())
    }

    /// Up to `n` of the oldest events, oldest first. An entry that cannot
    /// be read (written by another build) is dropped with a warning: it
    /// could never be delivered.
    pub(crate) fn oldest(&self, n: usize) -> Result<Vec<(u64, OutcomeEvent)>, OutboxError> {
        let tree = match &self.events {
            Events::Memory(m) => {
                return Ok(lock(m)
                    .iter()
                    .take(n)
                    .map(|(k, e)| (*k, e.clone()))
                    .collect());
            }
            Events::Sled(tree) => tree,
        };
        let mut out = Vec::new();
        for entry in tree.iter() {
            if out.len() == n {
                break;
            }
            let (k, v) = entry?;
            match (be_u64(&k), serde_json::from_slice::<OutcomeEvent>(&v)) {
                (Some(key), Ok(event)) => out.push((key, event)),
                (_, result) => {
                    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
                    tracing::warn!(%error, "dropping an unreadable outcome event from the outbox");
                    if tree.remove(&k)?.is_some() {
                        self.gone();
                    }
                }
            }
        }
        Ok(out)
    }

    /// Deletes a delivered event.
    pub(crate) fn remove(&self, key: u64) -> Result<(), OutboxError> {
        let removed = match &self.events {
            Events::Memory(m) => lock(m).remove(&key).is_some(),
            Events::Sled(tree) => tree.remove(key.to_be_bytes())?.is_some(),
        };
        if removed {
            self.gone();
        }
        Ok(())
    }

    fn gone(&self) {
        // Never below 0, even if two removals of one key raced.
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
        self.report_depth();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every write is one map operation: a panic cannot leave it half done.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str) -> OutcomeEvent {
        OutcomeEvent::new("d", "m", Some(1.0), source)
    }

    fn sources(outbox: &Outbox) -> Vec<String> {
        match outbox.oldest(100) {
            Ok(v) => v.into_iter().map(|(_, e)| e.source).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn events_leave_in_the_order_taken_and_only_when_removed()
    -> Result<(), Box<dyn std::error::Error>> {
        for outbox in [
            Outbox::in_memory(10),
            Outbox::on_disk(
                sled::Config::new()
                    .temporary(true)
                    .open()?
                    .open_tree(TREE)?,
                10,
            )?,
        ] {
            let a = outbox.push(&event("a"))?;
            let b = outbox.push(&event("b"))?;
            outbox.push(&event("c"))?;
            assert_eq!(sources(&outbox), ["a", "b", "c"]);
            assert_eq!(outbox.oldest(2)?.len(), 2);
            outbox.remove(b)?;
            outbox.remove(b)?;
            assert_eq!(sources(&outbox), ["a", "c"]);
            assert_eq!(outbox.len(), 2, "a second removal changes nothing");
            outbox.remove(a)?;
            assert_eq!(sources(&outbox), ["c"]);
        }
        Ok(())
    }

    #[test]
    fn a_full_outbox_refuses_events() -> Result<(), Box<dyn std::error::Error>> {
        let outbox = Outbox::in_memory(2);
        let a = outbox.push(&event("a"))?;
        outbox.push(&event("b"))?;
        assert!(matches!(
            outbox.push(&event("c")),
            Err(OutboxError::Full(2))
        ));
        outbox.remove(a)?;
        outbox.push(&event("c"))?;
        assert_eq!(sources(&outbox), ["b", "c"]);
        Ok(())
    }

    /// What a crash leaves (flushed) is there when the store is opened
    /// again, in order, and new events queue after it.
    #[test]
    fn a_reopened_outbox_has_what_was_flushed_and_the_write_beside_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let db = sled::open(dir.path())?;
            let outbox = Outbox::on_disk(db.open_tree(TREE)?, 10)?;
            let other = db.open_tree("requests")?;
            let first = outbox.push(&event("first"))?;
            outbox.push_beside(&event("rated"), &other, b"r1", b"rated")?;
            outbox.remove(first)?;
            db.flush()?;
        }
        let db = sled::open(dir.path())?;
        let outbox = Outbox::on_disk(db.open_tree(TREE)?, 10)?;
        assert_eq!(outbox.len(), 1);
        assert_eq!(sources(&outbox), ["rated"]);
        assert_eq!(
            db.open_tree("requests")?.get(b"r1")?.as_deref(),
            Some(&b"rated"[..])
        );
        outbox.push(&event("later"))?;
        assert_eq!(sources(&outbox), ["rated", "later"]);
        // An entry another build wrote is dropped, not delivered.
        db.open_tree(TREE)?
            .insert(u64::MAX.to_be_bytes(), b"{not json".as_slice())?;
        assert_eq!(sources(&outbox), ["rated", "later"]);
        assert!(db.open_tree(TREE)?.get(u64::MAX.to_be_bytes())?.is_none());
        Ok(())
    }
}
