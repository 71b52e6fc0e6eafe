//! Lookups through the handle: tiers, thresholds, scopes, deadlines, limits.

use routemesh_cache::faults::CacheFaults;

use super::*;

#[tokio::test]
async fn exact_then_semantic_within_the_scope_only() {
    let cache = Cache::start(settings(4)).await.expect("start");
    let a = scope("acme");
    cache.insert(insert(&a, 1, Some(&[1.0, 0.0, 0.0]), "one"));
    check(
        &cache,
        lookup(&a, 1, None, 0.99),
        Some((Tier::Exact, "one")),
    )
    .await;
    let h = hit(&cache, lookup(&a, 2, Some(&[1.0, 0.1, 0.0]), 0.9)).await;
    assert_eq!(h.tier, Tier::Semantic);
    assert!((h.similarity - unit(&[1.0, 0.1, 0.0])[0]).abs() < 1e-5);
    check(&cache, lookup(&a, 2, Some(&[1.0, 0.5, 0.0]), 0.95), None).await;
    for other in [
        scope("globex"),
        Scope {
            decision: "chat".into(),
            ..a.clone()
        },
        Scope {
            model: "small".into(),
            ..a.clone()
        },
        Scope {
            context: 43,
            ..a.clone()
        },
    ] {
        check(&cache, lookup(&other, 1, Some(&[1.0, 0.0, 0.0]), 0.0), None).await;
    }
    let st = cache.stats().await;
    assert_eq!(st.len(), 4);
    assert_eq!(st.iter().map(|s| s.entries).sum::<usize>(), 1);
    assert_eq!(st.iter().map(|s| s.hits).sum::<u64>(), 2);
    cache.shutdown().await;
}

#[tokio::test]
async fn a_passed_deadline_is_timed_out_and_a_stopped_cache_unavailable() {
    let cache = Cache::start(settings(1)).await.expect("start");
    let a = scope("acme");
    cache.insert(insert(&a, 1, None, "one"));
    let stall = Duration::from_secs(5);
    cache.stall_shard(0, stall);
    let started = std::time::Instant::now();
    let got = cache
        .lookup(lookup(&a, 1, None, 0.0), Duration::from_millis(30))
        .await;
    assert!(matches!(got, LookupResult::TimedOut), "{got:?}");
    // Not a speed measurement: the answer came before the stall ended.
    assert!(
        started.elapsed() < stall - Duration::from_secs(1),
        "a slow cache must not delay"
    );
    check(&cache, lookup(&a, 1, None, 0.0), Some((Tier::Exact, "one"))).await;
    cache.shutdown().await;
    let got = cache.lookup(lookup(&a, 1, None, 0.0), DEADLINE).await;
    assert!(matches!(got, LookupResult::Unavailable), "{got:?}");
    assert!(cache.stats().await.iter().all(|s| !s.available));
}

#[tokio::test]
async fn too_large_answers_are_dropped_and_counted() {
    let cache = Cache::start(CacheSettings {
        max_entry_bytes: 8,
        ..settings(1)
    })
    .await
    .expect("start");
    let a = scope("acme");
    cache.insert(insert(&a, 1, None, "way more than eight bytes"));
    check(&cache, lookup(&a, 1, None, 0.0), None).await;
    assert_eq!(cache.stats().await[0].dropped, 1);
    cache.shutdown().await;
}

#[tokio::test]
async fn bad_settings_are_refused() {
    for s in [
        settings(0),
        CacheSettings {
            capacity: 0,
            ..settings(1)
        },
        CacheSettings {
            rebuild_fraction: f64::NAN,
            ..settings(1)
        },
    ] {
        assert!(Cache::start(s).await.is_err());
    }
}

/// Churn past the inline limit: rebuilds run off the handler, lookups keep
/// answering, and the graph shrinks back once they land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_rebuilds_off_the_handler_and_stays_bounded() {
    let capacity = 1_500;
    let cache = Cache::start(CacheSettings {
        capacity,
        index: routemesh_cache::IndexParams {
            flat_below: 0,
            ef_construction: 32,
            ..Default::default()
        },
        ..settings(1)
    })
    .await
    .expect("start");
    let a = scope("acme");
    // distinct but clustered vectors (the data of index::tests::rebuild_finds_near_duplicates)
    let vector = |i: usize| -> Vec<f32> {
        (0..8)
            .map(|d| {
                let x = ((i * 8 + d) as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    };
    for i in 0..4 * capacity {
        cache.insert(insert(&a, i as u128, Some(&vector(i)), "x"));
        if i % 500 == 499 {
            // Paced: the insert backlog is bounded (see the next test).
            cache.stats().await;
        }
    }
    let last = 4 * capacity - 1;
    check(
        &cache,
        lookup(&a, last as u128, None, 0.0),
        Some((Tier::Exact, "x")),
    )
    .await;
    let mut settled = None;
    for _ in 0..200 {
        let st = cache.stats().await.remove(0);
        if st.rebuilds >= 1 && st.index_size as f64 <= st.entries as f64 * 1.25 + 1.0 {
            settled = Some(st);
            break;
        }
        // Real: the rebuild runs on the cache's own runtime (its blocking
        // pool), which this test's paused clock would not reach; polled,
        // at most 200 × 50 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = settled.expect("a rebuild lands and the graph is bounded again");
    assert_eq!(st.entries, capacity);
    let h = hit(&cache, lookup(&a, u128::MAX, Some(&vector(last)), 0.999)).await;
    assert_eq!(h.tier, Tier::Semantic);
    cache.shutdown().await;
}

#[tokio::test]
async fn a_shard_that_cannot_keep_up_sheds_inserts_instead_of_queueing_them() {
    let cache = Cache::start(settings(1)).await.expect("start");
    let a = scope("acme");
    cache.stall_shard(0, Duration::from_millis(500));
    for i in 0..3_000u128 {
        cache.insert(insert(&a, i, None, "x"));
    }
    let st = cache.stats().await.remove(0);
    assert!(st.dropped > 0, "some inserts were refused: {st:?}");
    assert_eq!(
        st.entries as u64 + st.dropped,
        3_000,
        "every insert was stored or counted as dropped: {st:?}"
    );
    assert!(st.entries <= 1_024 + 1, "the backlog was bounded: {st:?}");
    // Once the shard has caught up, inserts are taken again.
    cache.insert(insert(&a, 9_999, None, "late"));
    check(
        &cache,
        lookup(&a, 9_999, None, 0.0),
        Some((Tier::Exact, "late")),
    )
    .await;
    cache.shutdown().await;
}
