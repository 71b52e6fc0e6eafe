//! The learner's state in sled: one entry per (decision, model) arm, the
//! ids of the outcome events already applied, and the last stream sequence
//! applied. An event is committed in one transaction (arm, id, sequence)
//! and flushed before the call returns, so a restart (or a crash after the
//! call returned) restores exactly what was learned and never applies an
//! event twice.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::sampler::Posterior;

/// Event ids remembered for idempotence; older ones are forgotten (the
/// stream sequence still guards against re-delivery of those).
const APPLIED_IDS_KEPT: u64 = 200_000;
const LAST_SEQUENCE: &[u8] = b"last_sequence";
const NEXT_ORDINAL: &[u8] = b"next_ordinal";

/// Reading or writing the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("learning store: {0}")]
    Sled(#[from] sled::Error),
    #[error("learning store: corrupt entry `{key}`: {message}")]
    Corrupt { key: String, message: String },
    #[error("learning store: tree `{0}` is the learner's own")]
    Reserved(String),
}

/// The learner's own trees: [`LearnStore::tree`] does not lend them.
const OWN_TREES: [&str; 4] = ["arms", "applied", "applied_order", "meta"];

/// What is known about one (decision, model) arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    pub posterior: Posterior,
    /// Mean completion tokens of this arm's answers (a running mean over
    /// the last [`crate::learner::TOKEN_WINDOW`] or so).
    pub out_tokens: f64,
    /// Answers whose completion tokens were seen.
    pub out_samples: u64,
    /// Rewards applied.
    pub rewards: u64,
}

/// The learner's persistent state.
#[derive(Debug, Clone)]
pub struct LearnStore {
    db: sled::Db,
    arms: sled::Tree,
    /// event id → ordinal (insertion order)
    applied: sled::Tree,
    /// ordinal → event id, to forget the oldest ids
    applied_order: sled::Tree,
    meta: sled::Tree,
}

/// `decision` and `model` joined by a byte that names cannot contain.
fn key(decision: &str, model: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(decision.len() + model.len() + 1);
    k.extend_from_slice(decision.as_bytes());
    k.push(0);
    k.extend_from_slice(model.as_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

/// The result of [`LearnStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Written.
    Applied,
    /// The event id was applied before; nothing changed.
    Duplicate,
}

impl LearnStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        Ok(Self {
            arms: db.open_tree(OWN_TREES[0])?,
            applied: db.open_tree(OWN_TREES[1])?,
            applied_order: db.open_tree(OWN_TREES[2])?,
            meta: db.open_tree(OWN_TREES[3])?,
            db,
        })
    }

    /// Another tree of the same sled database, for state that must commit
    /// or flush together with the learner's (the gateway's outbox of
    /// outcome events and its memory of routed requests). A sled folder is
    /// opened once per process, so whoever shares it asks here.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        if OWN_TREES.contains(&name) {
            return Err(StoreError::Reserved(name.to_owned()));
        }
        Ok(self.db.open_tree(name)?)
    }

    /// Writes everything committed so far to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Every stored arm, by (decision, model).
    pub fn arms(&self) -> Result<BTreeMap<(String, String), ArmState>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.arms.iter() {
            let (k, v) = entry?;
            let text = String::from_utf8_lossy(&k);
            let (decision, model) = text.split_once('\0').unwrap_or((&text, ""));
            let arm: ArmState = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: text.replace('\0', "/"),
                message: e.to_string(),
            })?;
            out.insert((decision.to_owned(), model.to_owned()), arm);
        }
        Ok(out)
    }

    /// The last stream sequence applied (or skipped), if any.
    pub fn last_sequence(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.meta.get(LAST_SEQUENCE)?.and_then(|v| be_u64(&v)))
    }

    /// Whether the event id was applied (among the last ids kept).
    pub fn was_applied(&self, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.applied.contains_key(event_id.as_bytes())?)
    }

    /// Writes an arm's new state, marks `event_id` applied and, with a
    /// stream sequence, records it as the last one; all or nothing, flushed
    /// to disk before returning. A known `event_id` changes nothing.
    pub fn commit(
        &self,
        decision: &str,
        model: &str,
        arm: &ArmState,
        event_id: &str,
        sequence: Option<u64>,
    ) -> Result<Commit, StoreError> {
        let value = serde_json::to_vec(arm).map_err(|e| StoreError::Corrupt {
            key: format!("{decision}/{model}"),
            message: e.to_string(),
        })?;
        let arm_key = key(decision, model);
        let result = (&self.arms, &self.applied, &self.applied_order, &self.meta).transaction(
            |(arms, applied, order, meta)| {
                if applied.get(event_id.as_bytes())?.is_some() {
                    if let Some(seq) = sequence {
                        meta.insert(LAST_SEQUENCE, &seq.to_be_bytes())?;
                    }
                    return Ok(Commit::Duplicate);
                }
                let ordinal = meta
                    .get(NEXT_ORDINAL)?
                    .and_then(|v| be_u64(&v))
                    .unwrap_or(0);
                meta.insert(NEXT_ORDINAL, &(ordinal + 1).to_be_bytes())?;
                applied.insert(event_id.as_bytes(), &ordinal.to_be_bytes())?;
                order.insert(&ordinal.to_be_bytes(), event_id.as_bytes())?;
                arms.insert(arm_key.as_slice(), value.as_slice())?;
                if let Some(seq) = sequence {
                    meta.insert(LAST_SEQUENCE, &seq.to_be_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(Commit::Applied)
            },
        );
        let commit = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        })?;
        self.forget_old_ids()?;
        self.db.flush()?;
        Ok(commit)
    }

    /// Records a stream sequence that carried nothing to apply (e.g. an
    /// event this build cannot read), so it is not fetched again.
    pub fn skip(&self, sequence: u64) -> Result<(), StoreError> {
        self.meta.insert(LAST_SEQUENCE, &sequence.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Keeps the id sets bounded: drops the oldest ids beyond
    /// [`APPLIED_IDS_KEPT`].
    fn forget_old_ids(&self) -> Result<(), StoreError> {
        while self.applied_order.len() as u64 > APPLIED_IDS_KEPT {
            let Some((ordinal, id)) = self.applied_order.pop_min()? else {
                break;
            };
            // The id may have been re-applied under a newer ordinal: only
            // forget it if this was its entry.
            if self.applied.get(&id)?.as_deref() == Some(&ordinal[..]) {
                self.applied.remove(&id)?;
            }
        }
        Ok(())
    }
}

/// How long an open waits for the directory's lock to be let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its lock: sled lets
/// go of it only when its background threads have dropped their handles,
/// a moment after a close, so a learner reopened in the same process at
/// once (a restart, a test) could find its own lock still held. Another
/// process holding it still fails, after the wait, with sled's error. (The
/// cache's store does the same: `routemesh_cache::store`.)
fn open_db(path: &Path) -> sled::Result<sled::Db> {
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::open(path) {
            // sled reports the lock as an `Other` IO error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < until =>
            {
                // Real time: a blocking open waiting on a file lock.
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(alpha: f64, beta: f64, out_tokens: f64) -> ArmState {
        ArmState {
            posterior: Posterior { alpha, beta },
            out_tokens,
            out_samples: 1,
            rewards: 1,
        }
    }

    #[test]
    fn a_reopened_store_has_exactly_what_was_committed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut p = Posterior::UNIFORM;
        {
            let store = LearnStore::open(dir.path())?;
            for (i, r) in [1.0, 0.25, 0.0, 0.9].into_iter().enumerate() {
                p.update(r, 0.99, Posterior::UNIFORM);
                let a = ArmState {
                    posterior: p,
                    out_tokens: 123.25,
                    out_samples: 4,
                    rewards: 4,
                };
                store.commit(
                    "math",
                    "qwen-math",
                    &a,
                    &format!("e{i}"),
                    Some(i as u64 + 10),
                )?;
            }
            store.commit("math", "llama", &arm(3.0, 9.5, 7.0), "e9", None)?;
        }
        let store = LearnStore::open(dir.path())?;
        let all = store.arms()?;
        assert_eq!(all.len(), 2);
        let got = all[&("math".to_owned(), "qwen-math".to_owned())];
        assert_eq!(
            (got.posterior.alpha.to_bits(), got.posterior.beta.to_bits()),
            (p.alpha.to_bits(), p.beta.to_bits()),
            "bit-exact"
        );
        assert_eq!(got.out_tokens, 123.25);
        assert_eq!(
            all[&("math".to_owned(), "llama".to_owned())],
            arm(3.0, 9.5, 7.0)
        );
        assert_eq!(store.last_sequence()?, Some(13), "the None commit keeps it");
        assert!(store.was_applied("e2")? && !store.was_applied("e7")?);
        Ok(())
    }

    #[test]
    fn a_shared_tree_commits_beside_the_learner_and_its_own_trees_are_not_lent()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        {
            let store = LearnStore::open(dir.path())?;
            let outbox = store.tree("outbox")?;
            outbox.insert(b"k", b"v")?;
            store.flush()?;
            for own in OWN_TREES {
                assert!(
                    matches!(store.tree(own), Err(StoreError::Reserved(_))),
                    "{own}"
                );
            }
        }
        let store = LearnStore::open(dir.path())?;
        assert_eq!(store.tree("outbox")?.get(b"k")?.as_deref(), Some(&b"v"[..]));
        assert!(store.arms()?.is_empty(), "a shared tree is not an arm");
        Ok(())
    }

    #[test]
    fn an_applied_event_id_changes_nothing_the_second_time()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = LearnStore::open(dir.path())?;
        assert_eq!(
            store.commit("d", "m", &arm(2.0, 1.0, 5.0), "same", Some(1))?,
            Commit::Applied
        );
        assert_eq!(
            store.commit("d", "m", &arm(9.0, 9.0, 9.0), "same", Some(2))?,
            Commit::Duplicate
        );
        assert_eq!(
            store.arms()?[&("d".to_owned(), "m".to_owned())],
            arm(2.0, 1.0, 5.0)
        );
        assert_eq!(
            store.last_sequence()?,
            Some(2),
            "the sequence still moves on"
        );
        store.skip(3)?;
        assert_eq!(store.last_sequence()?, Some(3));
        Ok(())
    }
}
