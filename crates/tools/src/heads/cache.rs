//! The on-disk embedding cache, and embedding a corpus through it.
//!
//! One append-only file per encoder (model sha256, `max_tokens` and the
//! precision the forward pass ran in: `<sha256[..16]>-t<max_tokens>-<precision>.bin`)
//! under the cache folder: a 16-byte header (`RMEMB001` + dim as u32 LE + 4
//! zero bytes), then records of a 32-byte key — sha256 of (model sha256,
//! max_tokens, precision, text) — and `dim` little-endian f32s. The
//! precision is in both the file name and the key, so embeddings of one
//! precision are never read as another's. (Files of the candle f32 path,
//! before precisions existed, were `<sha>-t<max_tokens>.bin`: they are no
//! longer read.) Records are appended
//! after every batch, so an interrupted run keeps its progress; a torn last
//! record is cut off when the file is next opened. Two trainers must not
//! share a cache file at the same time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::TrainError;
use routemesh_classifier_worker::Encoder;

const MAGIC: &[u8; 8] = b"RMEMB001";
const HEADER: usize = 16;
type Key = [u8; 32];

/// What makes two embeddings of one text the same: the encoder's weights,
/// its window and the precision its forward pass ran in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheIdentity {
    /// sha256 of `model.safetensors` (hex).
    pub model_sha256: String,
    pub max_tokens: usize,
    /// The precision in use (`Encoder::precision_in_use`: `f32`, `bf16`,
    /// `int8`; `auto` resolved), not as asked.
    pub precision: String,
}

impl CacheIdentity {
    /// The cache file's name in the cache folder.
    pub(crate) fn file_name(&self) -> String {
        let short = self.model_sha256.get(..16).unwrap_or(&self.model_sha256);
        // Only [a-z0-9-] in a file name (a GPU's `f32 (candle, cuda)` too).
        let precision: String = self
            .precision
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let precision = precision.trim_matches('-');
        format!("{short}-t{}-{precision}.bin", self.max_tokens)
    }

    /// The record key of `text`.
    pub(crate) fn key(&self, text: &str) -> Key {
        let mut h = Sha256::new();
        h.update(self.model_sha256.as_bytes());
        h.update(b"\0");
        h.update(self.max_tokens.to_string().as_bytes());
        h.update(b"\0");
        h.update(self.precision.as_bytes());
        h.update(b"\0");
        h.update(text.as_bytes());
        h.finalize().into()
    }
}

/// Embeddings of one encoder, keyed by text.
#[derive(Debug)]
pub(crate) struct EmbeddingCache {
    path: PathBuf,
    file: File,
    identity: CacheIdentity,
    dim: usize,
    map: HashMap<Key, Vec<f32>>,
}

impl EmbeddingCache {
    /// Opens (or creates) the cache file for this encoder in `dir`.
    pub(crate) fn open(
        dir: &Path,
        identity: &CacheIdentity,
        dim: usize,
    ) -> Result<Self, TrainError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| TrainError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let path = dir.join(identity.file_name());
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(TrainError::Io { path, source }),
        };
        let mut map = HashMap::new();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_err(&path))?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC || header_dim(&bytes) != Some(dim) {
            // Missing, foreign or for another width: start again.
            file.set_len(0).map_err(write_err(&path))?;
            let mut header = Vec::with_capacity(HEADER);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&(dim as u32).to_le_bytes());
            header.extend_from_slice(&[0; 4]);
            file.write_all(&header).map_err(write_err(&path))?;
        } else {
            let record = 32 + 4 * dim;
            let whole = (bytes.len() - HEADER) / record;
            for r in bytes[HEADER..HEADER + whole * record].chunks_exact(record) {
                let mut key = [0u8; 32];
                key.copy_from_slice(&r[..32]);
                let v = r[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(key, v);
            }
            let end = (HEADER + whole * record) as u64;
            if end != bytes.len() as u64 {
                file.set_len(end).map_err(write_err(&path))?;
            }
        }
        Ok(Self {
            path,
            file,
            identity: identity.clone(),
            dim,
            map,
        })
    }

    pub(crate) fn key(&self, text: &str) -> Key {
        self.identity.key(text)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&[f32]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Stores embeddings in memory and appends them to the file.
    fn insert(&mut self, entries: Vec<(Key, Vec<f32>)>) -> Result<(), TrainError> {
        let mut buf = Vec::with_capacity(entries.len() * (32 + 4 * self.dim));
        for (key, v) in &entries {
            buf.extend_from_slice(key);
            v.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        }
        self.file
            .write_all(&buf)
            .map_err(|source| TrainError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.map.extend(entries);
        Ok(())
    }
}

fn header_dim(bytes: &[u8]) -> Option<usize> {
    let d = bytes.get(8..12)?;
    Some(u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize)
}

/// What embedding a corpus cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EmbedStats {
    pub embedded: usize,
    pub cached: usize,
    pub elapsed: Duration,
}

/// Embeddings of `texts` (in order), encoding only those not in the cache,
/// shortest first in batches of `batch` to cut padding, with a progress bar.
pub(crate) fn embed_all(
    encoder: &Encoder,
    cache: &mut EmbeddingCache,
    texts: &[&str],
    batch: usize,
) -> Result<(Vec<Vec<f32>>, EmbedStats), TrainError> {
    let started = Instant::now();
    let keys: Vec<Key> = texts.iter().map(|t| cache.key(t)).collect();
    let mut missing: Vec<(usize, Key)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        if cache.get(key).is_none() && seen.insert(*key) {
            missing.push((i, *key));
        }
    }
    let cached = texts.len() - missing.len();
    // Shortest first; ties by text so the batches do not depend on row order.
    missing.sort_by(|a, b| {
        let (ta, tb) = (texts[a.0], texts[b.0]);
        ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
    });
    if !missing.is_empty() {
        eprintln!(
            "embedding {} texts ({} cached) into {}",
            missing.len(),
            cached,
            cache.path.display()
        );
    }
    let bar = super::progress::bar(missing.len() as u64, "embedding");
    for chunk in missing.chunks(batch.max(1)) {
        let batch_texts: Vec<&str> = chunk.iter().map(|(i, _)| texts[*i]).collect();
        let encoded = encoder.encode(&batch_texts).map_err(TrainError::Encoding)?;
        let entries = chunk
            .iter()
            .map(|(_, k)| *k)
            .zip(encoded.embeddings)
            .collect();
        cache.insert(entries)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut out = Vec::with_capacity(texts.len());
    for key in &keys {
        let v = cache.get(key).ok_or_else(|| TrainError::Cache {
            path: cache.path.clone(),
            message: "an embedding is missing after encoding".into(),
        })?;
        out.push(v.to_vec());
    }
    Ok((
        out,
        EmbedStats {
            embedded: missing.len(),
            cached,
            elapsed: started.elapsed(),
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn identity(max_tokens: usize, precision: &str) -> CacheIdentity {
        CacheIdentity {
            model_sha256: "abc".into(),
            max_tokens,
            precision: precision.into(),
        }
    }

    #[test]
    fn entries_survive_reopening_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let f32_id = identity(256, "f32");
        let mut cache = EmbeddingCache::open(dir.path(), &f32_id, 2).unwrap();
        let (k1, k2) = (cache.key("one"), cache.key("two"));
        assert_ne!(k1, cache.key("ONE"));
        cache
            .insert(vec![(k1, vec![1.0, 2.0]), (k2, vec![3.0, 4.0])])
            .unwrap();
        let path = cache.path.clone();
        drop(cache);
        // A torn half-record at the end.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[7; 10]).unwrap();
        drop(f);
        let mut cache = EmbeddingCache::open(dir.path(), &f32_id, 2).unwrap();
        assert_eq!(cache.get(&k1), Some(&[1.0, 2.0][..]));
        assert_eq!(cache.get(&k2), Some(&[3.0, 4.0][..]));
        let k3 = cache.key("three");
        cache.insert(vec![(k3, vec![5.0, 6.0])]).unwrap();
        drop(cache);
        let cache = EmbeddingCache::open(dir.path(), &f32_id, 2).unwrap();
        assert_eq!(cache.get(&k3), Some(&[5.0, 6.0][..]));
        assert_eq!(cache.map.len(), 3);
        // Another max_tokens is another key space and another file.
        let other = EmbeddingCache::open(dir.path(), &identity(128, "f32"), 2).unwrap();
        assert_ne!(other.key("one"), k1);
        assert!(other.get(&k1).is_none());
    }

    #[test]
    fn each_precision_has_its_own_keys_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut f32_cache = EmbeddingCache::open(dir.path(), &identity(256, "f32"), 2).unwrap();
        let k = f32_cache.key("one");
        f32_cache.insert(vec![(k, vec![1.0, 2.0])]).unwrap();
        drop(f32_cache);
        let mut paths = std::collections::BTreeSet::new();
        for precision in ["f32", "bf16", "int8"] {
            let cache = EmbeddingCache::open(dir.path(), &identity(256, precision), 2).unwrap();
            paths.insert(cache.path.clone());
            if precision == "f32" {
                assert_eq!(cache.key("one"), k);
                assert_eq!(cache.get(&k), Some(&[1.0, 2.0][..]));
            } else {
                // Neither the key nor the file of f32's embedding.
                assert_ne!(cache.key("one"), k, "{precision}");
                assert!(cache.map.is_empty(), "{precision}");
            }
        }
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(
            identity(256, "int8").file_name(),
            "abc-t256-int8.bin",
            "the precision is in the file name"
        );
        assert_eq!(
            identity(256, "f32 (candle, cuda)").file_name(),
            "abc-t256-f32--candle--cuda.bin"
        );
    }
}
