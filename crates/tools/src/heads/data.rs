//! Training data: labelled JSONL rows, file hashes and the seeded split.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::TrainError;

/// The rows of one JSONL file.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    pub path: PathBuf,
    pub sha256: String,
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    /// Each row's `group_field` when one was asked for, else empty.
    pub groups: Vec<String>,
}

/// Reads `text_field` and `label_field` from every non-empty line. A label
/// may be a string, a boolean or an integer (written as text).
pub(crate) fn read_jsonl(
    path: &Path,
    text_field: &str,
    label_field: &str,
) -> Result<Dataset, TrainError> {
    read_jsonl_grouped(path, text_field, label_field, None)
}

/// [`read_jsonl`], and each row's `group_field` (a string, boolean or
/// integer; `(none)` where the row has none) into [`Dataset::groups`].
pub(crate) fn read_jsonl_grouped(
    path: &Path,
    text_field: &str,
    label_field: &str,
    group_field: Option<&str>,
) -> Result<Dataset, TrainError> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|e| TrainError::Data {
        path: path.to_owned(),
        line: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    let mut groups = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrainError::Data {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let row: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let text = match row.get(text_field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(bad(format!("`{text_field}` is not a non-empty string"))),
            None => return Err(bad(format!("no `{text_field}` field"))),
        };
        let label = match row.get(label_field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            Some(_) => {
                return Err(bad(format!(
                    "`{label_field}` is not a label (string, bool or integer)"
                )));
            }
            None => return Err(bad(format!("no `{label_field}` field"))),
        };
        if let Some(field) = group_field {
            groups.push(match row.get(field) {
                None | Some(serde_json::Value::Null) => "(none)".to_owned(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => return Err(bad(format!("`{field}` is not a string or number"))),
            });
        }
        texts.push(text);
        labels.push(label);
    }
    if texts.is_empty() {
        return Err(TrainError::Data {
            path: path.to_owned(),
            line: 0,
            message: "no rows".into(),
        });
    }
    Ok(Dataset {
        path: path.to_owned(),
        sha256,
        texts,
        labels,
        groups,
    })
}

/// sha256 of a file, read in chunks.
pub(crate) fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How [`is_validation`] assigns rows, for the training record.
pub(crate) const SPLIT_METHOD: &str =
    "validation iff u64(sha256(\"<seed>:<text>\")[..8], big-endian) < val_fraction * 2^64";

/// Whether a row goes to the validation split. Depends only on the seed and
/// the text, so duplicates land on the same side and the split does not
/// move when rows are added or reordered.
pub(crate) fn is_validation(seed: u64, text: &str, val_fraction: f64) -> bool {
    let digest = Sha256::digest(format!("{seed}:{text}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let h = u64::from_be_bytes(first);
    (h as f64) < val_fraction * 2f64.powi(64)
}

/// [`is_validation`] of every text: the trainer's split, which `eval-head
/// --split` reuses so it measures the same rows.
pub(crate) fn validation_mask(seed: u64, texts: &[String], val_fraction: f64) -> Vec<bool> {
    texts
        .iter()
        .map(|t| is_validation(seed, t, val_fraction))
        .collect()
}

/// A small deterministic generator (SplitMix64) for weight initialisation
/// and shuffling: candle's CPU generator cannot be seeded.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-bound, bound)`.
    pub(crate) fn uniform(&mut self, bound: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * bound
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_with_their_line_numbers_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            "{\"t\":\"hi\",\"y\":\"a\"}\n\n{\"t\":\"yo\",\"y\":true}\n",
        )
        .unwrap();
        let d = read_jsonl(&path, "t", "y").unwrap();
        assert_eq!(d.texts, ["hi", "yo"]);
        assert_eq!(d.labels, ["a", "true"]);
        assert_eq!(d.sha256, sha256_file(&path).unwrap());

        let g = read_jsonl_grouped(&path, "t", "y", Some("y")).unwrap();
        assert_eq!(g.groups, ["a", "true"]);
        let g = read_jsonl_grouped(&path, "t", "y", Some("source")).unwrap();
        assert_eq!(g.groups, ["(none)", "(none)"]);
        assert!(d.groups.is_empty());

        std::fs::write(&path, "{\"t\":\"hi\",\"y\":\"a\"}\n{\"t\":\"yo\"}\n").unwrap();
        let err = read_jsonl(&path, "t", "y").unwrap_err().to_string();
        assert!(err.ends_with("d.jsonl:2: no `y` field"), "{err}");
    }

    #[test]
    fn the_split_is_seeded_and_near_the_fraction() {
        let texts: Vec<String> = (0..10_000).map(|i| format!("row {i}")).collect();
        let val: Vec<bool> = texts.iter().map(|t| is_validation(42, t, 0.1)).collect();
        let again: Vec<bool> = texts.iter().map(|t| is_validation(42, t, 0.1)).collect();
        let other: Vec<bool> = texts.iter().map(|t| is_validation(7, t, 0.1)).collect();
        assert_eq!(val, again);
        assert_ne!(val, other);
        assert_eq!(validation_mask(42, &texts, 0.1), val);
        let n = val.iter().filter(|v| **v).count();
        assert!((900..1100).contains(&n), "{n}");
    }

    #[test]
    fn the_generator_is_seeded_and_bounded() {
        let mut a = SplitMix64::new(1);
        let mut b = SplitMix64::new(1);
        let xs: Vec<f32> = (0..1000).map(|_| a.uniform(0.5)).collect();
        assert!(xs.iter().all(|x| (-0.5..0.5).contains(x)));
        assert_eq!(xs, (0..1000).map(|_| b.uniform(0.5)).collect::<Vec<_>>());
        let mut v: Vec<u32> = (0..100).collect();
        a.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
