//! The pool's breakers on tokio's clock, on paused time: an endpoint that
//! failed is skipped until `open_for` has passed, then probed back.

use std::path::Path;
use std::time::Duration;

use super::*;

/// One upstream with a dead endpoint (all the weight) and a live one;
/// one failure ejects an endpoint for a second.
fn pool() -> UpstreamPool {
    let text = r#"
encoder: { model_dir: m }
upstreams:
  - name: a
    endpoints: [ { url: "http://127.0.0.1:1/v1", weight: 1000 }, { url: "http://127.0.0.1:2/v1", weight: 1 } ]
    breaker: { failures: 1, open_for: 1s, probes: 1 }
models: [ { name: model-a, upstream: a } ]
default: { model: model-a }
"#;
    let config: Config = match routemesh_common::config::parse(text, Path::new(".")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    UpstreamPool::new(&config).expect("the pool")
}

/// The endpoint `admit` lets through (and whether as a probe), settled as
/// `ok` says. `tried: [false, true]` prefers endpoint 0 whenever its
/// breaker lets a request through.
fn admit(u: &Upstream, tried: [bool; 2], ok: bool) -> Option<(usize, bool)> {
    let admitted = u.admit(&tried)?;
    let got = (admitted.endpoint, admitted.admission == Admission::Probe);
    if ok {
        admitted.success();
    } else {
        admitted.failure();
    }
    Some(got)
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_is_skipped_until_open_for_has_passed_then_probed() {
    let pool = pool();
    let u = &pool.upstreams[0];
    const PREFER_0: [bool; 2] = [false, true];
    // Endpoint 0 fails once: ejected.
    assert_eq!(admit(u, PREFER_0, false), Some((0, false)));

    // Just short of `open_for`: every request goes to endpoint 1.
    tokio::time::advance(Duration::from_millis(999)).await;
    for _ in 0..50 {
        assert_eq!(admit(u, [false, false], true), Some((1, false)));
    }
    // At `open_for`: endpoint 0 is available again, as one probe at a time.
    tokio::time::advance(Duration::from_millis(1)).await;
    let probe = u.admit(&PREFER_0).expect("a probe is let through");
    assert_eq!((probe.endpoint, probe.admission), (0, Admission::Probe));
    assert_eq!(
        u.admit(&PREFER_0).map(|a| a.endpoint),
        Some(1),
        "only one probe at a time; the rest go to endpoint 1"
    );
    // The probe fails: ejected for another `open_for` from now.
    probe.failure();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(admit(u, PREFER_0, true), Some((1, false)));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(admit(u, PREFER_0, true), Some((0, true)), "probed again");
    // The probe succeeded: endpoint 0 is back, and takes nearly everything.
    let back = (0..50)
        .filter(|_| admit(u, [false, false], true) == Some((0, false)))
        .count();
    assert!(back > 40, "endpoint 0 is back in the pool: {back} of 50");
}

#[tokio::test(start_paused = true)]
async fn with_every_endpoint_ejected_forward_gives_up_without_waiting() {
    let pool = pool();
    let u = &pool.upstreams[0];
    for tried in [[false, true], [true, false]] {
        u.admit(&tried).expect("closed").failure();
    }
    assert!(u.admit(&[false, false]).is_none());
    let out = Outgoing {
        body: Bytes::from_static(b"{}"),
        headers: HeaderMap::new(),
        path: crate::upstream::ApiPath::ChatCompletions,
    };
    let started = Instant::now();
    let failed = pool.forward(UpstreamId(0), &out, started).await;
    assert!(
        matches!(&failed, Err(Failure::NotAsked(UpstreamError::Unreachable { detail, .. })) if detail.contains("ejected")),
        "{failed:?}"
    );
    assert_eq!(Instant::now(), started, "no attempt, no backoff");
}
