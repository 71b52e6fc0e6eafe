//! The gateway's Prometheus metrics: their names (one constant each, with
//! what it counts and its labels), the exporter's start, the per-request
//! recording, and the gauges sampled from state at each scrape.
//!
//! Names follow `routemesh_<thing>_<unit>` (`_total` counters, `_seconds`
//! histograms); labels have bounded cardinality only: decision and model
//! names come from the config (plus `passthrough` and `none`), stage and
//! outcome from the fixed sets below, shard from `cache.shards`. Never a
//! prompt, a tenant or a request id.
//!
//! The exposition itself (recorder, buckets, listener) is shared with the
//! classifier worker: [`routemesh_classifier_worker::telemetry`], which
//! also names the batcher's `routemesh_worker_*` series (in embedded mode
//! the gateway runs that batcher, so its scrape shows them too).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::Unit;
use routemesh_classifier_worker::telemetry as exposition;

pub use exposition::ExporterError;

use crate::state::Gateway;

/// Chat-completion requests by `decision`, `model` and `outcome` (counter).
/// `decision` is the decision taken (`passthrough` for a request naming a
/// model, `none` when the request failed before one was taken); `model` the
/// model chosen (`none` when there was none: blocked, or failed first);
/// `outcome` one of [`Outcome`]'s labels. Dry runs (`/v1/route`) are not
/// counted.
pub const REQUESTS_TOTAL: &str = "routemesh_requests_total";
/// Seconds per stage of a chat-completion request, by `stage` (histogram):
/// `classify`, `decide` (routed requests), `cache` (each cache lookup),
/// `coalesce` (waiting for an identical request's upstream call), `upstream` (until the upstream's response headers), `total`
/// (until the gateway's response headers: a streamed body goes on after
/// it) and `overhead` (`total` − `upstream` − `coalesce`: what the gateway
/// itself added;
/// forwarded requests only).
pub const STAGE_SECONDS: &str = "routemesh_stage_seconds";
/// Cache lookups by `outcome`: `hit_exact`, `hit_semantic`, `miss`,
/// `timeout`, `unavailable` (counter; emitted by [`crate::cache`]).
pub const CACHE_LOOKUPS_TOTAL: &str = "routemesh_cache_lookups_total";
/// Misses that waited for an identical request already going upstream
/// (counter; emitted by [`crate::cache`]).
pub const CACHE_COALESCED_TOTAL: &str = "routemesh_cache_coalesced_total";
/// Live entries per cache `shard` (gauge, sampled at each scrape).
pub const CACHE_ENTRIES: &str = "routemesh_cache_entries";
/// Approximate bytes (answers and vectors) per cache `shard` (gauge,
/// sampled at each scrape).
pub const CACHE_BYTES: &str = "routemesh_cache_bytes";
/// 1 when the cache `shard` answered the scrape's stats call, 0 when it
/// was down, restarting or too slow (gauge; its entries and bytes then keep
/// their last values).
pub const CACHE_SHARD_UP: &str = "routemesh_cache_shard_up";
/// Requests routed with less than their full signals, by `stage`
/// (`classify`) and `reason` (`timeout`, `no_responders`, …) (counter;
/// emitted by [`crate::pipeline`]).
pub const DEGRADATIONS_TOTAL: &str = "routemesh_degradations_total";
/// Posterior mean α / (α + β) of each configured (`decision`, `model`) arm
/// of the learner (gauge, sampled at each scrape).
pub const POSTERIOR_MEAN: &str = "routemesh_posterior_mean";
/// Outcome events reported, by `source` (`feedback`, `upstream_error`,
/// `slo`, `usage`) (counter; emitted by [`crate::learning`]).
pub const OUTCOMES_TOTAL: &str = "routemesh_outcomes_total";
/// Outcome events applied from the JetStream stream (counter; emitted by
/// [`crate::learning`]).
pub const OUTCOMES_APPLIED_TOTAL: &str = "routemesh_outcomes_applied_total";
/// Outcome events that could not be recorded (counter; emitted by
/// [`crate::learning`]).
pub const OUTCOME_ERRORS_TOTAL: &str = "routemesh_outcome_errors_total";
/// Routed requests remembered for feedback (gauge; set by
/// [`crate::learning`]).
pub const FEEDBACK_REMEMBERED: &str = "routemesh_feedback_remembered";

/// How a chat-completion request ended: the `outcome` label of
/// [`REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded and answered with a 2xx/3xx (`ok`).
    Ok,
    /// Answered from the semantic cache (`cache_hit`).
    CacheHit,
    /// The decision blocks it (`blocked`).
    Blocked,
    /// The request's fault: refused by the gateway with a 4xx (malformed,
    /// too large, unknown model) or answered 4xx (not 429) by the upstream
    /// (`client_error`). Requests refused by auth never reach a handler:
    /// `routemesh_auth_rejections_total` counts them.
    ClientError,
    /// The upstream failed: unreachable, timed out, or answered 5xx or 429
    /// (`upstream_error`).
    UpstreamError,
    /// The gateway could not route it: not ready, classifier unavailable,
    /// or another 5xx of its own (`unavailable`).
    Unavailable,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::CacheHit => "cache_hit",
            Self::Blocked => "blocked",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One finished chat-completion request, as [`record_request`] counts it.
#[derive(Debug)]
pub struct RequestMetrics<'a> {
    pub decision: Option<&'a str>,
    pub model: Option<&'a str>,
    pub outcome: Outcome,
    /// `(stage, duration)` as they happened; `upstream` may repeat (each
    /// attempt).
    pub stages: &'a [(&'static str, Duration)],
    pub total: Duration,
}

/// Counts a request and records its stage latencies, `total`, and (when it
/// went upstream) the gateway's `overhead`.
pub fn record_request(r: &RequestMetrics<'_>) {
    metrics::counter!(
        REQUESTS_TOTAL,
        "decision" => r.decision.unwrap_or("none").to_owned(),
        "model" => r.model.unwrap_or("none").to_owned(),
        "outcome" => r.outcome.label(),
    )
    .increment(1);
    let mut upstream = None::<Duration>;
    // Waiting for another request's upstream call is not the gateway's own.
    let mut coalesced = Duration::ZERO;
    for &(stage, d) in r.stages {
        metrics::histogram!(STAGE_SECONDS, "stage" => stage).record(d.as_secs_f64());
        match stage {
            "upstream" => upstream = Some(upstream.unwrap_or_default() + d),
            "coalesce" => coalesced += d,
            _ => {}
        }
    }
    metrics::histogram!(STAGE_SECONDS, "stage" => "total").record(r.total.as_secs_f64());
    if let Some(u) = upstream {
        let overhead = r.total.saturating_sub(u + coalesced);
        metrics::histogram!(STAGE_SECONDS, "stage" => "overhead").record(overhead.as_secs_f64());
    }
}

/// Installs the recorder, binds `addr` and serves `GET /metrics` there for
/// the rest of the process; returns the bound address. Each scrape first
/// samples the cache's shard sizes and the learner's posterior means.
pub async fn install(
    addr: SocketAddr,
    gateway: &Arc<Gateway>,
) -> Result<SocketAddr, ExporterError> {
    let exporter = exposition::install(addr).await?;
    describe();
    let local = exporter.local_addr();
    let gateway = Arc::downgrade(gateway);
    exporter.serve(move || sample(gateway.clone()));
    Ok(local)
}

/// Sets the gauges that mirror state: cache shards and posterior means.
async fn sample(gateway: Weak<Gateway>) {
    let Some(gateway) = gateway.upgrade() else {
        return;
    };
    for arm in gateway.learning.learner.snapshot() {
        if arm.configured {
            metrics::gauge!(POSTERIOR_MEAN, "decision" => arm.decision, "model" => arm.model)
                .set(arm.mean);
        }
    }
    if let Some(layer) = &gateway.cache {
        for s in layer.cache.stats().await {
            let shard = s.shard.to_string();
            metrics::gauge!(CACHE_SHARD_UP, "shard" => shard.clone()).set(if s.available {
                1.0
            } else {
                0.0
            });
            if s.available {
                metrics::gauge!(CACHE_ENTRIES, "shard" => shard.clone()).set(s.entries as f64);
                metrics::gauge!(CACHE_BYTES, "shard" => shard).set(s.bytes as f64);
            }
        }
    }
}

/// `# HELP` lines for the gateway's series.
fn describe() {
    use metrics::{describe_counter as c, describe_gauge as g, describe_histogram as h};
    c!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Chat-completion requests by decision, model and outcome."
    );
    h!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Seconds per request stage (classify, decide, cache, coalesce, upstream, total, overhead)."
    );
    c!(
        CACHE_LOOKUPS_TOTAL,
        Unit::Count,
        "Semantic cache lookups by outcome."
    );
    c!(
        CACHE_COALESCED_TOTAL,
        Unit::Count,
        "Cache misses that waited for an identical request in flight."
    );
    g!(CACHE_ENTRIES, Unit::Count, "Live cache entries per shard.");
    g!(
        CACHE_BYTES,
        Unit::Bytes,
        "Approximate cache bytes (answers and vectors) per shard."
    );
    g!(
        CACHE_SHARD_UP,
        Unit::Count,
        "1 when the cache shard answered the last scrape."
    );
    c!(
        DEGRADATIONS_TOTAL,
        Unit::Count,
        "Requests routed without some signals, by stage and reason."
    );
    g!(
        POSTERIOR_MEAN,
        Unit::Count,
        "Posterior mean of each configured (decision, model) arm."
    );
    c!(
        OUTCOMES_TOTAL,
        Unit::Count,
        "Outcome events reported, by source."
    );
    c!(
        OUTCOMES_APPLIED_TOTAL,
        Unit::Count,
        "Outcome events applied from the stream."
    );
    c!(
        OUTCOME_ERRORS_TOTAL,
        Unit::Count,
        "Outcome events that could not be recorded."
    );
    g!(
        FEEDBACK_REMEMBERED,
        Unit::Count,
        "Routed requests remembered for feedback."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// What `record_request` renders for one request.
    fn check(stages: &[(&'static str, Duration)], total: Duration, expected: &[&str]) {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            record_request(&RequestMetrics {
                decision: Some("math"),
                model: None,
                outcome: Outcome::UpstreamError,
                stages,
                total,
            });
        });
        let text = handle.render();
        for line in expected {
            assert!(text.lines().any(|l| l == *line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn a_forwarded_request_records_its_stages_total_and_overhead() {
        let ms = Duration::from_millis;
        check(
            &[
                ("classify", ms(3)),
                ("upstream", ms(10)),
                ("upstream", ms(20)),
            ],
            ms(40),
            &[
                r#"routemesh_requests_total{decision="math",model="none",outcome="upstream_error"} 1"#,
                r#"routemesh_stage_seconds_count{stage="upstream"} 2"#,
                r#"routemesh_stage_seconds_sum{stage="overhead"} 0.01"#,
                r#"routemesh_stage_seconds_sum{stage="total"} 0.04"#,
            ],
        );
    }

    #[test]
    fn waiting_for_an_identical_request_is_not_overhead() {
        let ms = Duration::from_millis;
        check(
            &[("cache", ms(1)), ("coalesce", ms(25)), ("upstream", ms(10))],
            ms(40),
            &[
                r#"routemesh_stage_seconds_sum{stage="coalesce"} 0.025"#,
                r#"routemesh_stage_seconds_sum{stage="overhead"} 0.005"#,
            ],
        );
    }

    #[test]
    fn a_request_that_never_went_upstream_has_no_overhead() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            record_request(&RequestMetrics {
                decision: None,
                model: None,
                outcome: Outcome::ClientError,
                stages: &[],
                total: Duration::from_millis(1),
            });
        });
        let text = handle.render();
        assert!(text.contains(r#"stage="total""#), "{text}");
        assert!(!text.contains("overhead"), "{text}");
        assert!(text.contains(r#"decision="none",model="none",outcome="client_error""#));
    }
}
