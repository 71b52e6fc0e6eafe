//! Integration tests of routemesh-cache through its public handle: lookups,
//! persistence across restarts, supervision.

mod lookup;
mod persistence;
mod supervision;

use std::time::Duration;

use bytes::Bytes;
use routemesh_cache::{
    Answer, AnswerKind, Cache, CacheSettings, Hit, Insert, Lookup, LookupResult, Scope, Tier,
};

/// Long: a test's lookup may queue behind thousands of inserts on a loaded
/// 2-core CI machine, and these tests are not about the deadline (the one
/// that is stalls a shard on purpose).
const DEADLINE: Duration = Duration::from_secs(30);

fn scope(tenant: &str) -> Scope {
    Scope {
        tenant: tenant.into(),
        decision: "coding".into(),
        model: "big".into(),
        context: 42,
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn insert(scope: &Scope, key: u128, vector: Option<&[f32]>, body: &str) -> Insert {
    Insert {
        scope: scope.clone(),
        key,
        vector: vector.map(unit),
        answer: Answer {
            kind: AnswerKind::Json,
            content_type: "application/json".into(),
            body: Bytes::from(body.to_owned()),
        },
        ttl: None,
    }
}

fn lookup(scope: &Scope, key: u128, vector: Option<&[f32]>, threshold: f32) -> Lookup {
    Lookup {
        scope: scope.clone(),
        key,
        vector: vector.map(unit),
        threshold,
    }
}

fn settings(shards: usize) -> CacheSettings {
    CacheSettings {
        shards,
        ..CacheSettings::default()
    }
}

/// The hit of `l`, or a panic naming what came back instead.
async fn hit(cache: &Cache, l: Lookup) -> Hit {
    match cache.lookup(l, DEADLINE).await {
        LookupResult::Hit(h) => h,
        other => panic!("expected a hit, got {other:?}"),
    }
}

/// Looks `l` up and compares with the wanted tier and body, or a miss.
async fn check(cache: &Cache, l: Lookup, want: Option<(Tier, &str)>) {
    let got = cache.lookup(l, DEADLINE).await;
    match (got, want) {
        (LookupResult::Miss, None) => {}
        (LookupResult::Hit(h), Some((tier, body))) => {
            assert_eq!(h.tier, tier);
            assert_eq!(h.answer.body, body.as_bytes());
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}
