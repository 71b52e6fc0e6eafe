//! A crashed shard is restarted by its supervisor and reloads from sled.

use routemesh_cache::ScopeFilter;
use routemesh_cache::faults::CacheFaults;

use super::*;

/// Polls `l` until it hits (the shard is restarting meanwhile).
async fn hit_eventually(cache: &Cache, l: &Lookup) -> Hit {
    for _ in 0..100 {
        if let LookupResult::Hit(h) = cache.lookup(l.clone(), DEADLINE).await {
            return h;
        }
        // Real: the supervisor respawns the shard on the cache's own
        // runtime, which this test's paused clock would not reach; polled.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no hit after the restart");
}

#[tokio::test]
async fn a_crashed_shard_comes_back_with_its_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::start(CacheSettings {
        store: Some(dir.path().join("cache")),
        ..settings(2)
    })
    .await
    .expect("start");
    let a = scope("acme");
    let shard = (a.id() % 2) as usize;
    cache.insert(insert(&a, 1, Some(&[0.0, 1.0]), "one"));
    check(&cache, lookup(&a, 1, None, 0.0), Some((Tier::Exact, "one"))).await;

    cache.crash_shard(shard);
    let l = lookup(&a, 7, Some(&[0.05, 1.0]), 0.9);
    let h = hit_eventually(&cache, &l).await;
    assert_eq!((h.tier, &h.answer.body[..]), (Tier::Semantic, &b"one"[..]));
    let st = cache.stats().await;
    assert_eq!(st[shard].restarts, 1);
    assert_eq!(st[1 - shard].restarts, 0);
    assert!(st[shard].available);
    assert_eq!(cache.invalidate(&ScopeFilter::default()).await, 1);
    cache.shutdown().await;
}

#[tokio::test]
async fn a_memory_only_shard_restarts_empty() {
    let cache = Cache::start(settings(1)).await.expect("start");
    let a = scope("acme");
    cache.insert(insert(&a, 1, None, "one"));
    check(&cache, lookup(&a, 1, None, 0.0), Some((Tier::Exact, "one"))).await;
    cache.crash_shard(0);
    let mut restarted = false;
    for _ in 0..100 {
        let st = cache.stats().await;
        if st[0].available && st[0].restarts == 1 {
            restarted = true;
            break;
        }
        // Real: as in `hit_eventually`, the restart happens on the cache's
        // own runtime; polled.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted, "the supervisor restarts the shard");
    check(&cache, lookup(&a, 1, None, 0.0), None).await;
    cache.shutdown().await;
}
