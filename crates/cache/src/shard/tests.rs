//! Unit tests of the pure shard: tiers, scope isolation, TTL, LRU, tombstones
//! and rebuilds, the HNSW path.

use bytes::Bytes;

use super::*;
use crate::index::tests::{Rng, low_rank, normalise};
use crate::types::AnswerKind;

const T0: u64 = 1_700_000_000_000;

fn cfg(capacity: usize, flat_below: usize) -> ShardConfig {
    ShardConfig {
        shard: 0,
        capacity,
        max_entry_bytes: 1024,
        ttl: Duration::from_secs(60),
        rebuild_fraction: 0.25,
        index: IndexParams {
            flat_below,
            ..IndexParams::default()
        },
    }
}

fn scope(tenant: &str) -> Scope {
    Scope {
        tenant: tenant.into(),
        decision: "d".into(),
        model: "m".into(),
        context: 9,
    }
}

fn ins(scope: &Scope, key: u128, vector: Option<Vec<f32>>, body: &str) -> Insert {
    Insert {
        scope: scope.clone(),
        key,
        vector,
        answer: Answer {
            kind: AnswerKind::Json,
            content_type: "application/json".into(),
            body: Bytes::from(body.to_owned()),
        },
        ttl: None,
    }
}

fn look(scope: &Scope, key: u128, vector: Option<Vec<f32>>, threshold: f32) -> Lookup {
    Lookup {
        scope: scope.clone(),
        key,
        vector,
        threshold,
    }
}

/// Looks `l` up at `now` and compares with `want`: (tier, similarity, body)
/// or `None` for a miss.
fn check(shard: &mut Shard, l: &Lookup, now: u64, want: Option<(Tier, f32, &str)>) {
    let (hit, _) = shard.lookup(l, now);
    let got = hit.map(|h| (h.tier, h.similarity, h.answer.body.clone()));
    match (got, want) {
        (None, None) => {}
        (Some((tier, sim, body)), Some((wt, ws, wb))) => {
            assert_eq!(tier, wt);
            assert!((sim - ws).abs() < 1e-4, "similarity {sim}, want {ws}");
            assert_eq!(body, wb.as_bytes());
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

fn v2(x: f32, y: f32) -> Vec<f32> {
    normalise(vec![x, y])
}

#[test]
fn exact_hit_then_semantic_with_its_similarity() {
    let mut s = Shard::new(cfg(10, 16));
    let a = scope("a");
    s.insert(1, ins(&a, 100, Some(v2(1.0, 0.0)), "one"), T0);
    check(
        &mut s,
        &look(&a, 100, None, 0.9),
        T0,
        Some((Tier::Exact, 1.0, "one")),
    );
    let q = v2(1.0, 0.2);
    let sim = q[0];
    check(
        &mut s,
        &look(&a, 7, Some(q.clone()), 0.9),
        T0,
        Some((Tier::Semantic, sim, "one")),
    );
    check(&mut s, &look(&a, 7, Some(q), 0.99), T0, None);
    check(&mut s, &look(&a, 7, None, 0.0), T0, None);
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.inserts, st.entries), (2, 2, 1, 1));
}

#[test]
fn nothing_answers_across_scopes() {
    let mut s = Shard::new(cfg(10, 16));
    let a = scope("a");
    s.insert(1, ins(&a, 100, Some(v2(1.0, 0.0)), "one"), T0);
    let others = [
        scope("b"),
        Scope {
            decision: "x".into(),
            ..a.clone()
        },
        Scope {
            model: "x".into(),
            ..a.clone()
        },
        Scope {
            context: 10,
            ..a.clone()
        },
    ];
    for o in &others {
        check(&mut s, &look(o, 100, Some(v2(1.0, 0.0)), 0.0), T0, None);
    }
    check(
        &mut s,
        &look(&a, 100, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "one")),
    );
}

#[test]
fn ttl_expires_on_lookup_and_by_sweep() {
    let mut s = Shard::new(cfg(10, 16));
    let a = scope("a");
    s.insert(1, ins(&a, 1, Some(v2(1.0, 0.0)), "one"), T0);
    let mut short = ins(&a, 2, Some(v2(0.0, 1.0)), "two");
    short.ttl = Some(Duration::from_secs(1));
    s.insert(2, short, T0);
    check(
        &mut s,
        &look(&a, 2, None, 0.0),
        T0 + 999,
        Some((Tier::Exact, 1.0, "two")),
    );
    let (hit, removed) = s.lookup(&look(&a, 2, None, 0.0), T0 + 1_000);
    assert!(hit.is_none());
    assert_eq!(removed, vec![2]);
    // a semantic lookup never returns the expired one
    check(
        &mut s,
        &look(&a, 3, Some(v2(0.0, 1.0)), 0.5),
        T0 + 1_000,
        None,
    );
    assert_eq!(s.sweep(T0 + 59_999), Vec::<u64>::new());
    assert_eq!(s.sweep(T0 + 60_000), vec![1]);
    assert_eq!((s.len(), s.stats().expirations), (0, 2));
}

#[test]
fn lru_evicts_least_recently_used() {
    let mut s = Shard::new(cfg(3, 16));
    let a = scope("a");
    for k in 1..=3 {
        s.insert(k as u64, ins(&a, k, None, "x"), T0);
    }
    check(
        &mut s,
        &look(&a, 1, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "x")),
    ); // 2 is now oldest
    let (stored, removed) = s.insert(4, ins(&a, 4, None, "x"), T0);
    assert!(stored);
    assert_eq!(removed, vec![2]);
    let (_, removed) = s.insert(5, ins(&a, 5, None, "x"), T0);
    assert_eq!(removed, vec![3]);
    assert_eq!(s.stats().evictions, 2);
    check(
        &mut s,
        &look(&a, 1, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "x")),
    );
}

#[test]
fn replacing_a_key_tombstones_the_old_vector() {
    let mut s = Shard::new(cfg(10, 0));
    let a = scope("a");
    s.insert(1, ins(&a, 5, Some(v2(1.0, 0.0)), "old"), T0);
    let (_, removed) = s.insert(2, ins(&a, 5, Some(v2(0.0, 1.0)), "new"), T0);
    assert_eq!(removed, vec![1]);
    check(
        &mut s,
        &look(&a, 5, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "new")),
    );
    // the old vector is a tombstone: never answers
    check(&mut s, &look(&a, 6, Some(v2(1.0, 0.0)), 0.5), T0, None);
    let st = s.stats();
    assert_eq!((st.entries, st.index_size, st.tombstones), (1, 2, 1));
}

#[test]
fn odd_vectors_are_exact_only_and_large_answers_dropped() {
    let mut s = Shard::new(cfg(10, 16));
    let a = scope("a");
    s.insert(1, ins(&a, 1, Some(v2(1.0, 0.0)), "two-d"), T0);
    s.insert(2, ins(&a, 2, Some(vec![1.0, 0.0, 0.0]), "three-d"), T0);
    s.insert(3, ins(&a, 3, Some(vec![f32::NAN, 0.0]), "nan"), T0);
    s.insert(4, ins(&a, 4, Some(vec![]), "empty"), T0);
    check(
        &mut s,
        &look(&a, 2, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "three-d")),
    );
    check(
        &mut s,
        &look(&a, 3, None, 0.0),
        T0,
        Some((Tier::Exact, 1.0, "nan")),
    );
    assert!(s.get(2).is_some_and(|e| e.vector.is_none()));
    assert!(s.get(3).is_some_and(|e| e.vector.is_none()));
    // queries of another dimension or with NaN are exact-only too
    check(
        &mut s,
        &look(&a, 9, Some(vec![1.0, 0.0, 0.0]), 0.0),
        T0,
        None,
    );
    check(
        &mut s,
        &look(&a, 9, Some(vec![f32::NAN, 1.0]), -1.0),
        T0,
        None,
    );
    let (stored, _) = s.insert(5, ins(&a, 5, None, &"x".repeat(1025)), T0);
    assert!(!stored);
    assert_eq!(s.stats().dropped, 1);
}

#[test]
fn invalidate_by_scope_parts_and_flush() {
    let mut s = Shard::new(cfg(10, 16));
    let a = scope("a");
    let b = scope("b");
    let b2 = Scope {
        model: "m2".into(),
        ..b.clone()
    };
    s.insert(1, ins(&a, 1, None, "x"), T0);
    s.insert(2, ins(&b, 1, None, "x"), T0);
    s.insert(3, ins(&b2, 1, None, "x"), T0);
    let f = ScopeFilter {
        tenant: Some("b".into()),
        model: Some("m2".into()),
        ..ScopeFilter::default()
    };
    assert_eq!(s.invalidate(&f), vec![3]);
    let mut all = s.flush();
    all.sort_unstable();
    assert_eq!(all, vec![1, 2]);
    assert_eq!(s.len(), 0);
    check(&mut s, &look(&a, 1, None, 0.0), T0, None);
}

#[test]
fn tombstones_trigger_a_rebuild_that_drops_them() {
    let mut s = Shard::new(cfg(100, 0));
    let a = scope("a");
    let mut rng = Rng(1);
    let vs: Vec<Vec<f32>> = (0..40).map(|_| rng.vector(8)).collect();
    for (i, v) in vs.iter().enumerate() {
        s.insert(i as u64, ins(&a, i as u128, Some(v.clone()), "x"), T0);
    }
    assert!(s.rebuild_job().is_none());
    let f = ScopeFilter::default();
    // remove 9 of 40 by replacing their keys with exact-only entries
    for i in 0..9u64 {
        s.insert(100 + i, ins(&a, i as u128, None, "y"), T0);
    }
    assert_eq!(s.stats().tombstones, 9);
    // tombstoned vectors never answer, even as nearest neighbours
    check(
        &mut s,
        &look(&a, 999, Some(vs[3].clone()), 0.9999),
        T0,
        None,
    );
    let job = s.rebuild_job().expect("9 > 0.25 × 31");
    assert_eq!(job.len(), 31);
    // meanwhile: one indexed vector added, one removed
    s.insert(200, ins(&a, 200, Some(vs[3].clone()), "back"), T0);
    s.insert(201, ins(&a, 20, None, "gone"), T0);
    s.finish_rebuild(job.run());
    let st = s.stats();
    assert_eq!((st.index_size, st.tombstones, st.rebuilds), (32, 1, 1));
    check(
        &mut s,
        &look(&a, 999, Some(vs[3].clone()), 0.9999),
        T0,
        Some((Tier::Semantic, 1.0, "back")),
    );
    check(
        &mut s,
        &look(&a, 999, Some(vs[25].clone()), 0.9999),
        T0,
        Some((Tier::Semantic, 1.0, "x")),
    );
    // a result from before a flush is dropped
    s.flush();
    assert_eq!(s.invalidate(&f), Vec::<u64>::new());
}

#[test]
fn memory_stays_bounded_under_churn() {
    let capacity = 50;
    let mut s = Shard::new(cfg(capacity, 0));
    let a = scope("a");
    let mut rng = Rng(2);
    let mut max_index = 0;
    for i in 0..(10 * capacity) as u64 {
        s.insert(i, ins(&a, i as u128, Some(rng.vector(8)), "x"), T0);
        s.rebuild_inline();
        max_index = max_index.max(s.stats().index_size);
        assert!(s.len() <= capacity);
    }
    let st = s.stats();
    assert!(
        max_index as f64 <= capacity as f64 * 1.25 + 2.0,
        "index grew to {max_index}"
    );
    assert!(st.rebuilds >= 10, "{st:?}");
    assert_eq!(st.evictions, 9 * capacity as u64);
}

#[test]
fn small_scopes_stay_out_of_the_graph() {
    let mut s = Shard::new(cfg(100, 4));
    let a = scope("a");
    let mut rng = Rng(4);
    for i in 0..4u64 {
        s.insert(i, ins(&a, i as u128, Some(rng.vector(8)), "x"), T0);
    }
    assert_eq!(s.stats().index_size, 0);
    s.insert(4, ins(&a, 4, Some(rng.vector(8)), "x"), T0);
    assert_eq!(s.stats().index_size, 5);
}

#[test]
fn load_drops_expired_and_orders_by_insertion() {
    let mut s = Shard::new(cfg(2, 16));
    let a = scope("a");
    let entry = |key: u128, inserted_ms: u64, expires_ms: u64| Entry {
        scope: a.clone(),
        key,
        vector: None,
        answer: Arc::new(ins(&a, key, None, "x").answer),
        inserted_ms,
        expires_ms,
    };
    let stored = vec![
        (7, entry(1, T0 + 2, T0 + 100)),
        (8, entry(2, T0 + 1, T0 + 100)),
        (9, entry(3, T0, T0 + 10)),
        (10, entry(4, T0 + 3, T0 + 100)),
    ];
    let mut removed = s.load(stored, T0 + 50);
    removed.sort_unstable();
    // 9 expired; 8 is the oldest of the rest, evicted past capacity 2
    assert_eq!(removed, vec![8, 9]);
    check(
        &mut s,
        &look(&a, 1, None, 0.0),
        T0 + 60,
        Some((Tier::Exact, 1.0, "x")),
    );
}

/// The HNSW path: a scope past `flat_below` finds the exact nearest
/// neighbour (recall ≥ 0.95) and never answers from another scope, even one
/// holding closer vectors.
#[test]
fn hnsw_path_recall_and_isolation() {
    let mut s = Shard::new(ShardConfig {
        capacity: 5_000,
        ..cfg(5_000, 16)
    });
    let a = scope("a");
    let b = scope("b");
    let dim = 64;
    let mut rng = Rng(42);
    let bases: Vec<Vec<f32>> = (0..32).map(|_| rng.vector(dim)).collect();
    let stored: Vec<Vec<f32>> = (0..2_000)
        .map(|_| low_rank(&mut rng, &bases, 0.05))
        .collect();
    for (i, v) in stored.iter().enumerate() {
        s.insert(i as u64, ins(&a, i as u128, Some(v.clone()), "a"), T0);
    }
    let mut found = 0;
    for qi in 0..100 {
        let target = &stored[qi * 19];
        let q: Vec<f32> = normalise(target.iter().map(|x| x + 0.01 * rng.unit()).collect());
        // scope b holds the query itself: closer than anything in a
        s.insert(
            10_000 + qi as u64,
            ins(&b, 10_000 + qi as u128, Some(q.clone()), "b"),
            T0,
        );
        let want = best_flat(
            &q,
            stored.iter().enumerate().map(|(i, v)| (i as u64, &v[..])),
        );
        let (hit, _) = s.lookup(&look(&a, u128::MAX, Some(q.clone()), -1.0), T0);
        let hit = hit.expect("a scope with entries answers at threshold -1");
        assert_eq!(
            hit.answer.body,
            "a".as_bytes(),
            "answered from another scope"
        );
        if let Some((_, sim)) = want
            && (hit.similarity - sim).abs() < 1e-6
        {
            found += 1;
        }
    }
    assert!(found >= 95, "recall {found}/100");
    assert!(s.stats().index_size >= 2_000);
    assert_eq!(
        s.graph_fallbacks(),
        0,
        "the graph search itself must find scope a"
    );
}
