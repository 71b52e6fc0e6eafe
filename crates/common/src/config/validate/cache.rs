//! Validating the `cache:` section and the decisions' `cache:` policies
//! (part of phase two).

use std::path::Path;

use super::Validator;
use crate::config::raw::{RawBytes, RawCache, RawCacheIndex, RawCachePolicy};
use crate::config::{CacheConfig, CacheIndex, CacheMode, CachePolicy};

/// Size suffixes, powers of 1024, written exactly so.
const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

impl Validator {
    /// `cache:`; absent means disabled, present means enabled unless it
    /// says `enabled: false`.
    pub(super) fn cache(&mut self, raw: Option<RawCache>, base_dir: &Path) -> CacheConfig {
        let d = CacheConfig::default();
        let Some(raw) = raw else {
            return d;
        };
        let shards = self.count(raw.shards, d.shards, 1..=256, "cache.shards");
        let capacity = self.count(raw.capacity, d.capacity, 1..=u64::MAX, "cache.capacity");
        let max_entry_bytes = match raw.max_entry_bytes {
            None => d.max_entry_bytes,
            Some(size) => self.entry_bytes(size).unwrap_or(d.max_entry_bytes),
        };
        let ttl = self
            .duration(raw.ttl.as_deref(), "cache.ttl")
            .unwrap_or(d.ttl);
        let threshold = raw.threshold.unwrap_or(d.threshold);
        self.threshold(threshold, "cache.threshold");
        let deadline = self
            .duration(raw.deadline.as_deref(), "cache.deadline")
            .unwrap_or(d.deadline);
        let store = match raw.store {
            Some(s) if s.trim().is_empty() => {
                self.error(
                    "cache.store",
                    "give a folder, or leave the key out to keep entries in memory".into(),
                );
                None
            }
            s => s.map(|s| base_dir.join(s)),
        };
        let rebuild_fraction = raw.rebuild_fraction.unwrap_or(d.rebuild_fraction);
        if !(rebuild_fraction > 0.0 && rebuild_fraction < 1.0) {
            self.error(
                "cache.rebuild_fraction",
                format!("{rebuild_fraction} is not in (0, 1)"),
            );
        }
        let index = self.cache_index(raw.index.unwrap_or_default());
        let passthrough = match raw.passthrough.as_deref() {
            None => d.passthrough,
            Some("off") => CacheMode::Off,
            Some("exact") => CacheMode::Exact,
            Some(other) => {
                self.error(
                    "cache.passthrough",
                    format!("`{other}`: use off or exact (a request naming a model is not embedded, so it has no semantic tier)"),
                );
                d.passthrough
            }
        };
        CacheConfig {
            enabled: raw.enabled.unwrap_or(true),
            shards,
            capacity,
            max_entry_bytes,
            ttl,
            threshold,
            deadline,
            store,
            rebuild_fraction,
            index,
            passthrough,
        }
    }

    fn cache_index(&mut self, raw: RawCacheIndex) -> CacheIndex {
        let d = CacheIndex::default();
        let any = 1..=u64::MAX;
        CacheIndex {
            m: self.count(raw.m, d.m, 2..=256, "cache.index.m"),
            ef_construction: self.count(
                raw.ef_construction,
                d.ef_construction,
                any.clone(),
                "cache.index.ef_construction",
            ),
            ef_search: self.count(
                raw.ef_search,
                d.ef_search,
                any.clone(),
                "cache.index.ef_search",
            ),
            flat_below: self.count(
                raw.flat_below,
                d.flat_below,
                any.clone(),
                "cache.index.flat_below",
            ),
            rerank: self.count(raw.rerank, d.rerank, any, "cache.index.rerank"),
        }
    }

    /// `value` (or `default`), which must lie in `range`.
    fn count(
        &mut self,
        value: Option<u64>,
        default: usize,
        range: std::ops::RangeInclusive<u64>,
        path: &str,
    ) -> usize {
        let Some(n) = value else {
            return default;
        };
        let (lo, hi) = (*range.start(), *range.end());
        if hi == u64::MAX && n < lo {
            self.error(path, format!("{n} is too small; use at least {lo}"));
        } else if !range.contains(&n) {
            self.error(path, format!("{n} is out of range {lo}..={hi}"));
        }
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn entry_bytes(&mut self, raw: RawBytes) -> Option<usize> {
        let path = "cache.max_entry_bytes";
        let n = match raw {
            RawBytes::Count(n) => n,
            RawBytes::Text(text) => match parse_size(&text) {
                Ok(n) => n,
                Err(message) => {
                    self.error(path, message);
                    return None;
                }
            },
        };
        if n == 0 {
            self.error(path, "must be at least 1 byte".into());
            return None;
        }
        Some(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A similarity threshold must lie in (0, 1].
    fn threshold(&mut self, t: f32, path: &str) {
        if !(t > 0.0 && t <= 1.0) {
            self.error(
                path,
                format!("{t} is not in (0, 1]; a cosine similarity such as 0.95"),
            );
        }
    }

    /// A decision's `cache:`: a mode, or a map of mode, threshold and ttl.
    pub(super) fn cache_policy(&mut self, raw: RawCachePolicy, path: &str) -> Option<CachePolicy> {
        let before = self.errors.len();
        let (mode, mode_path, threshold, ttl) = match raw {
            RawCachePolicy::Mode(m) => (Some(m), path.to_owned(), None, None),
            RawCachePolicy::Full(f) => (f.mode, format!("{path}.mode"), f.threshold, f.ttl),
        };
        let mode = match mode.as_deref() {
            None | Some("semantic") => CacheMode::Semantic,
            Some("exact") => CacheMode::Exact,
            Some("off") => CacheMode::Off,
            Some(other) => {
                self.error(&mode_path, format!("`{other}`: use off, exact or semantic"));
                CacheMode::Semantic
            }
        };
        if let Some(t) = threshold {
            if mode == CacheMode::Semantic {
                self.threshold(t, &format!("{path}.threshold"));
            } else {
                self.error(
                    &format!("{path}.threshold"),
                    format!(
                        "only used with `mode: semantic`; `{}` compares no similarity",
                        mode.name()
                    ),
                );
            }
        }
        let ttl_path = format!("{path}.ttl");
        if ttl.is_some() && mode == CacheMode::Off {
            self.error(
                &ttl_path,
                "the cache is off for this decision; remove it".into(),
            );
        }
        let ttl = self.duration(ttl.as_deref(), &ttl_path);
        (self.errors.len() == before).then_some(CachePolicy {
            mode,
            threshold,
            ttl,
        })
    }
}

/// `512KiB`, `1 MiB`, `300B`: a whole number and a unit among [`UNITS`].
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = (&t[..split], t[split..].trim_start());
    let units = || UNITS.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ");
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size: write a whole number and a unit ({}), e.g. 1MiB",
            units()
        ));
    }
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "`{text}`: write a whole number of a smaller unit (1536KiB, not 1.5MiB)"
        ));
    }
    let factor = match UNITS.iter().find(|(u, _)| *u == unit) {
        Some((_, f)) => *f,
        None if unit.is_empty() => 1,
        None => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}`; use {} (powers of 1024, case as written), e.g. 1MiB",
                units()
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    fn check(text: &str, expected: Result<u64, &str>) {
        let got = parse_size(text);
        match expected {
            Ok(n) => assert_eq!(got, Ok(n), "{text}"),
            Err(part) => match got {
                Err(message) => assert!(message.contains(part), "{text}: {message}"),
                Ok(n) => panic!("{text}: accepted as {n}"),
            },
        }
    }

    #[test]
    fn sizes_take_binary_units_as_written() {
        check("1MiB", Ok(1 << 20));
        check("1 MiB", Ok(1 << 20));
        check("512KiB", Ok(512 << 10));
        check("2GiB", Ok(2 << 30));
        check("300B", Ok(300));
        check("4096", Ok(4096));
        check("12XB", Err("unknown unit `XB`"));
        check("1MB", Err("unknown unit `MB`"));
        check("1mib", Err("unknown unit `mib`"));
        check("1.5MiB", Err("whole number"));
        check("MiB", Err("not a size"));
        check("-1B", Err("not a size"));
        check("99999999999GiB", Err("too large"));
    }
}
