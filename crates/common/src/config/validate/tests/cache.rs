//! Unit tests of the `cache:` section and the decisions' cache policies.

use std::path::Path;
use std::time::Duration;

use super::{BASE, EXAMPLE, errors, has, ok};
use crate::config::{CacheConfig, CacheIndex, CacheMode, CachePolicy};

/// BASE with the decision `low` replaced by `decisions` (YAML list items).
fn with_decisions(decisions: &str) -> String {
    BASE.replace(
        "  - { name: low, priority: 1, when: { keyword: code }, model: small }\n",
        decisions,
    )
}

#[test]
fn full_cache_section_is_read() {
    let text = format!(
        "{BASE}cache:
  enabled: true
  shards: 8
  capacity: 500
  max_entry_bytes: 512KiB
  ttl: 90m
  threshold: 0.9
  deadline: 25ms
  store: state/cache
  rebuild_fraction: 0.5
  index: {{ m: 32, ef_construction: 200, ef_search: 50, flat_below: 1000, rerank: 64 }}
  passthrough: off
"
    );
    let c = ok(&text);
    let expected = CacheConfig {
        enabled: true,
        shards: 8,
        capacity: 500,
        max_entry_bytes: 512 * 1024,
        ttl: Duration::from_secs(90 * 60),
        threshold: 0.9,
        deadline: Duration::from_millis(25),
        store: Some(Path::new("/etc/rm/state/cache").to_path_buf()),
        rebuild_fraction: 0.5,
        index: CacheIndex {
            m: 32,
            ef_construction: 200,
            ef_search: 50,
            flat_below: 1000,
            rerank: 64,
        },
        passthrough: CacheMode::Off,
    };
    assert_eq!(c.cache, expected);
}

#[test]
fn sizes_are_bytes_or_binary_units_and_absolute_stores_stay() {
    let size = |v: &str| {
        ok(&format!(
            "{BASE}cache: {{ max_entry_bytes: {v}, store: /var/lib/routemesh/cache }}\n"
        ))
        .cache
    };
    assert_eq!(size("4096").max_entry_bytes, 4096);
    assert_eq!(size("2GiB").max_entry_bytes, 2 << 30);
    assert_eq!(size("\"64 KiB\"").max_entry_bytes, 64 << 10);
    assert_eq!(
        size("1MiB").store.as_deref(),
        Some(Path::new("/var/lib/routemesh/cache"))
    );
}

#[test]
fn cache_is_off_without_the_section_and_on_with_an_empty_one() {
    let absent = ok(BASE).cache;
    assert_eq!(absent, CacheConfig::default());
    assert!(!absent.enabled);
    let d = &absent;
    assert_eq!(
        (
            d.shards,
            d.capacity,
            d.max_entry_bytes,
            d.ttl,
            d.threshold,
            d.deadline
        ),
        (
            4,
            10_000,
            1 << 20,
            Duration::from_secs(3600),
            0.95,
            Duration::from_millis(10)
        )
    );
    assert_eq!((d.store.as_ref(), d.rebuild_fraction), (None, 0.25));
    assert_eq!(
        (d.index, d.passthrough),
        (
            CacheIndex {
                m: 16,
                ef_construction: 100,
                ef_search: 64,
                flat_below: 10_000_000,
                rerank: 128,
            },
            CacheMode::Exact
        )
    );

    let empty = ok(&format!("{BASE}cache: {{}}\n")).cache;
    assert_eq!(
        empty,
        CacheConfig {
            enabled: true,
            ..CacheConfig::default()
        }
    );
    let off = ok(&format!("{BASE}cache: {{ enabled: false, shards: 2 }}\n")).cache;
    assert_eq!((off.enabled, off.shards), (false, 2));
}

#[test]
fn decision_and_default_cache_policies_are_read() {
    let text = with_decisions(
        "  - { name: a, when: { keyword: code }, model: small, cache: exact }\n\
         \x20 - { name: b, when: { keyword: code }, model: small, cache: off }\n\
         \x20 - { name: c, when: { keyword: code }, model: small, cache: semantic }\n\
         \x20 - { name: d, when: { keyword: code }, model: small, cache: { mode: semantic, threshold: 0.97, ttl: 10m } }\n\
         \x20 - { name: e, when: { keyword: code }, model: small, cache: { mode: exact, ttl: 30s } }\n\
         \x20 - { name: f, when: { keyword: code }, model: small, cache: {} }\n\
         \x20 - { name: stop, when: { keyword: code }, block: no }\n",
    )
    .replace(
        "default: { model: small }",
        "default: { model: small, cache: { threshold: 0.99 } }",
    );
    let c = ok(&text);
    let policy = |mode, threshold, ttl| {
        Some(CachePolicy {
            mode,
            threshold,
            ttl,
        })
    };
    let min = |m: u64| Some(Duration::from_secs(60 * m));
    assert_eq!(c.cache_policy("a"), policy(CacheMode::Exact, None, None));
    assert_eq!(c.cache_policy("b"), policy(CacheMode::Off, None, None));
    assert_eq!(c.cache_policy("c"), policy(CacheMode::Semantic, None, None));
    assert_eq!(
        c.cache_policy("d"),
        policy(CacheMode::Semantic, Some(0.97), min(10))
    );
    assert_eq!(
        c.cache_policy("e"),
        policy(CacheMode::Exact, None, Some(Duration::from_secs(30)))
    );
    assert_eq!(c.cache_policy("f"), Some(CachePolicy::default()));
    assert_eq!(
        c.cache_policy("default"),
        policy(CacheMode::Semantic, Some(0.99), None)
    );
    // Unset: semantic, the section's threshold and ttl.
    assert_eq!(
        c.cache_policy("high"),
        policy(CacheMode::Semantic, None, None)
    );
    assert_eq!(c.cache_policy("stop"), None, "a block decision has none");
    assert_eq!(c.cache_policy("nowhere"), None);
}

#[test]
fn cache_mistakes_are_all_reported_with_their_paths() {
    let text = with_decisions(
        "  - { name: stop, when: { keyword: code }, block: no, cache: off }\n\
         \x20 - { name: a, when: { keyword: code }, model: small, cache: { mode: exact, threshold: 0.9 } }\n\
         \x20 - { name: b, when: { keyword: code }, model: small, cache: sometimes }\n\
         \x20 - { name: c, when: { keyword: code }, model: small, cache: { tll: 5m } }\n\
         \x20 - { name: d, when: { keyword: code }, model: small, cache: { mode: off, ttl: 5m } }\n\
         \x20 - { name: e, when: { keyword: code }, model: small, cache: { threshold: 0, ttl: 0s } }\n",
    )
    .replace(
        "default: { model: small }",
        "default: { model: small, cache: { mode: fuzzy } }",
    ) + "cache:
  shards: 0
  capacity: 0
  threshold: 1.5
  max_entry_bytes: 12XB
  ttl: forever
  deadline: 0ms
  store: \"  \"
  rebuild_fraction: 1
  index: { m: 1, ef_search: 0 }
  passthrough: semantic
  colour: blue
";
    let errs = errors(&text);
    for path in [
        "decisions[0].cache",
        "decisions[1].cache.threshold",
        "decisions[2].cache",
        "decisions[3].cache.tll",
        "decisions[4].cache.ttl",
        "decisions[5].cache.threshold",
        "decisions[5].cache.ttl",
        "default.cache.mode",
    ] {
        assert!(has(&errs, path), "no error at {path}: {errs:#?}");
    }
    // `colour` is a type error in phase one: the section's other values
    // are not checked, so they get a config of their own.
    assert!(has(&errs, "cache.colour"), "{errs:#?}");
    let errs = errors(&text.replace("  colour: blue\n", ""));
    for path in [
        "cache.shards",
        "cache.capacity",
        "cache.threshold",
        "cache.max_entry_bytes",
        "cache.ttl",
        "cache.deadline",
        "cache.store",
        "cache.rebuild_fraction",
        "cache.index.m",
        "cache.index.ef_search",
        "cache.passthrough",
    ] {
        assert!(has(&errs, path), "no error at {path}: {errs:#?}");
    }
    assert!(
        errs.iter()
            .any(|e| e.starts_with("cache.max_entry_bytes: `12XB`") && e.contains("MiB")),
        "{errs:#?}"
    );
}

#[test]
fn each_cache_mistake_alone_is_an_error() {
    for (section, path) in [
        ("{ shards: 0 }", "cache.shards"),
        ("{ shards: 257 }", "cache.shards"),
        ("{ threshold: 1.5 }", "cache.threshold"),
        ("{ max_entry_bytes: 12XB }", "cache.max_entry_bytes"),
        ("{ max_entry_bytes: 0 }", "cache.max_entry_bytes"),
        ("{ max_entry_bytes: -1 }", "cache.max_entry_bytes"),
        ("{ index: { m: 1 } }", "cache.index.m"),
        ("{ index: { m: 16, depth: 3 } }", "cache.index.depth"),
        ("{ rebuild_fraction: 0 }", "cache.rebuild_fraction"),
        ("{ enabled: maybe }", "cache.enabled"),
    ] {
        let errs = errors(&format!("{BASE}cache: {section}\n"));
        assert_eq!(errs.len(), 1, "{section}: {errs:#?}");
        assert!(has(&errs, path), "{section}: no error at {path}: {errs:#?}");
    }
}

#[test]
fn the_commented_cache_example_is_valid() {
    let block: String = EXAMPLE
        .lines()
        .skip_while(|l| !l.starts_with("# cache:"))
        .take_while(|l| l.starts_with("# "))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    assert!(
        block.starts_with("cache:"),
        "no `# cache:` block in config/example.yaml"
    );
    let c = ok(&format!("{BASE}{block}"));
    assert!(c.cache.enabled);
    assert_eq!(
        c.cache.store.as_deref(),
        Some(Path::new("/var/lib/routemesh/cache"))
    );
}
