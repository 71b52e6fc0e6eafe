//! sled persistence: restarts, expiry at load, invalidation and flush.

use routemesh_cache::ScopeFilter;

use super::*;

fn stored(dir: &tempfile::TempDir) -> CacheSettings {
    CacheSettings {
        store: Some(dir.path().join("cache")),
        ..settings(3)
    }
}

#[tokio::test]
async fn entries_survive_a_restart_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::start(stored(&dir)).await.expect("start");
    let a = scope("acme");
    cache.insert(insert(&a, 1, Some(&[1.0, 0.0, 0.0]), "one"));
    let mut brief = insert(&a, 2, Some(&[0.0, 1.0, 0.0]), "brief");
    brief.ttl = Some(Duration::from_millis(150));
    cache.insert(brief);
    check(
        &cache,
        lookup(&a, 2, None, 0.0),
        Some((Tier::Exact, "brief")),
    )
    .await;
    cache.shutdown().await;
    // Real: the shard actors stamp entries with the wall clock
    // (`SystemTime`, on the cache's own runtime), so the 150 ms TTL must
    // pass for real. Expiry itself is pinned on an injected clock in
    // `shard/tests.rs`; this checks a restart's load drops what expired.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cache = Cache::start(stored(&dir)).await.expect("restart");
    check(&cache, lookup(&a, 1, None, 0.0), Some((Tier::Exact, "one"))).await;
    check(
        &cache,
        lookup(&a, 9, Some(&[1.0, 0.05, 0.0]), 0.9),
        Some((Tier::Semantic, "one")),
    )
    .await;
    check(&cache, lookup(&a, 2, None, 0.0), None).await;
    let st = cache.stats().await;
    assert_eq!(st.iter().map(|s| s.entries).sum::<usize>(), 1);
    assert_eq!(
        st.iter().map(|s| s.expirations).sum::<u64>(),
        1,
        "dropped at load"
    );
    cache.shutdown().await;
}

#[tokio::test]
async fn invalidate_and_flush_reach_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::start(stored(&dir)).await.expect("start");
    let (a, b) = (scope("acme"), scope("globex"));
    let a_small = Scope {
        model: "small".into(),
        ..a.clone()
    };
    for (i, s) in [&a, &b, &a_small].into_iter().enumerate() {
        cache.insert(insert(s, i as u128, None, "x"));
        cache.insert(insert(s, 100 + i as u128, None, "y"));
    }
    let f = ScopeFilter {
        tenant: Some("acme".into()),
        model: Some("big".into()),
        ..ScopeFilter::default()
    };
    assert_eq!(cache.invalidate(&f).await, 2);
    cache.shutdown().await;

    let cache = Cache::start(stored(&dir)).await.expect("restart");
    check(&cache, lookup(&a, 0, None, 0.0), None).await;
    check(&cache, lookup(&b, 1, None, 0.0), Some((Tier::Exact, "x"))).await;
    check(
        &cache,
        lookup(&a_small, 2, None, 0.0),
        Some((Tier::Exact, "x")),
    )
    .await;
    assert_eq!(cache.flush().await, 4);
    cache.shutdown().await;

    let cache = Cache::start(stored(&dir)).await.expect("restart");
    assert_eq!(
        cache.stats().await.iter().map(|s| s.entries).sum::<usize>(),
        0
    );
    cache.shutdown().await;
}

#[tokio::test]
async fn an_unopenable_store_names_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = Cache::start(CacheSettings {
        store: Some(file.join("cache")),
        ..settings(1)
    })
    .await
    .expect_err("a file in the way");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// Regression: a cache restarted in the same process right after its
/// shutdown could find sled's lock on its own directory still held (sled
/// lets go only when its background threads are done); the open now waits
/// for the lock a moment. A store another cache still holds is refused.
#[tokio::test]
async fn a_restart_waits_for_the_lock_but_a_held_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for _ in 0..5 {
        let cache = Cache::start(stored(&dir)).await.expect("start");
        cache.insert(insert(&scope("acme"), 1, None, "x"));
        cache.shutdown().await;
    }
    let held = Cache::start(stored(&dir)).await.expect("start");
    let err = Cache::start(stored(&dir))
        .await
        .expect_err("the store is held by another cache");
    assert!(err.to_string().contains("could not acquire lock"), "{err}");
    held.shutdown().await;
}
