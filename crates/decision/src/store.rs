//! Posterior persistence in sled: one key per (decision, model), the
//! posterior as JSON. Every update is written through and flushed, so a
//! restart (or a crash after the call returned) restores exactly what was
//! learned.

use std::collections::BTreeMap;
use std::path::Path;

use crate::sampler::Posterior;

/// Reading or writing the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("posterior store: {0}")]
    Sled(#[from] sled::Error),
    #[error("posterior store: corrupt entry `{key}`: {message}")]
    Corrupt { key: String, message: String },
}

/// Posteriors keyed by (decision, model).
#[derive(Debug, Clone)]
pub struct PosteriorStore {
    tree: sled::Tree,
}

/// `decision` and `model` joined by a byte that names cannot contain.
fn key(decision: &str, model: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(decision.len() + model.len() + 1);
    k.extend_from_slice(decision.as_bytes());
    k.push(0);
    k.extend_from_slice(model.as_bytes());
    k
}

impl PosteriorStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::open(dir)?;
        Ok(Self {
            tree: db.open_tree("posteriors")?,
        })
    }

    /// The stored posterior, if any.
    pub fn get(&self, decision: &str, model: &str) -> Result<Option<Posterior>, StoreError> {
        match self.tree.get(key(decision, model))? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: format!("{decision}/{model}"),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// Writes a posterior and waits until it is on disk.
    pub fn put(&self, decision: &str, model: &str, posterior: Posterior) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&posterior).map_err(|e| StoreError::Corrupt {
            key: format!("{decision}/{model}"),
            message: e.to_string(),
        })?;
        self.tree.insert(key(decision, model), value)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Every stored posterior, by (decision, model).
    pub fn all(&self) -> Result<BTreeMap<(String, String), Posterior>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            let text = String::from_utf8_lossy(&k);
            let (decision, model) = text.split_once('\0').unwrap_or((&text, ""));
            let p: Posterior = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: text.replace('\0', "/"),
                message: e.to_string(),
            })?;
            out.insert((decision.to_owned(), model.to_owned()), p);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_store_has_exactly_what_was_written() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut p = Posterior::UNIFORM;
        {
            let store = PosteriorStore::open(dir.path())?;
            for r in [1.0, 0.25, 0.0, 0.9] {
                p.update(r, 0.99, Posterior::UNIFORM);
                store.put("math", "qwen-math", p)?;
            }
            store.put(
                "math",
                "llama",
                Posterior {
                    alpha: 3.0,
                    beta: 9.5,
                },
            )?;
            store.put("code", "qwen-math", Posterior::UNIFORM)?;
        }
        let store = PosteriorStore::open(dir.path())?;
        let got = store.get("math", "qwen-math")?.ok_or("missing")?;
        assert_eq!(
            (got.alpha.to_bits(), got.beta.to_bits()),
            (p.alpha.to_bits(), p.beta.to_bits()),
            "bit-exact"
        );
        assert_eq!(store.get("math", "nobody")?, None);
        let all = store.all()?;
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[&("math".to_owned(), "llama".to_owned())],
            Posterior {
                alpha: 3.0,
                beta: 9.5
            }
        );
        Ok(())
    }
}
