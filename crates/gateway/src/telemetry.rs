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
//! classifier worker: [`routemesh_runtime::exposition`]. The batcher's
//! `routemesh_worker_*` series are named in
//! [`routemesh_classifier_worker::metrics`] (in embedded mode the gateway
//! runs that batcher, so its scrape shows them too).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::Unit;
use routemesh_cache::Cache;
use routemesh_decision::Learner;
use routemesh_runtime::exposition;

pub use exposition::ExporterError;

/// Routed-API requests by `api` (`chat_completions`, `messages`,
/// `responses`), `decision`, `model` and `outcome` (counter).
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
/// Outcome events taken (feedback acknowledged, implicit outcomes) and
/// waiting in the learning outbox for delivery to the JetStream stream or
/// the learner; grows while NATS is down (gauge; set by
/// [`crate::learning`]).
pub const OUTBOX_EVENTS: &str = "routemesh_outcome_outbox_events";
/// API requests accepted with a key, by `tenant` (counter; emitted by
/// [`crate::http::guard`]). A tenant is a name from the key table, so the
/// label is bounded by it; an open gateway's derived tenants are not
/// counted.
pub const TENANT_REQUESTS_TOTAL: &str = "routemesh_tenant_requests_total";
/// Requests refused for their credential, by `scope` (`api`, `admin`) and
/// `reason` (`missing`, `invalid`, `disabled`) (counter; emitted by
/// [`crate::http::guard`]).
pub const AUTH_REJECTIONS_TOTAL: &str = "routemesh_auth_rejections_total";
/// Attempts on an upstream, by `upstream` (a configured name) and
/// `outcome`: `ok`, `error` (a 5xx answer, or the last failed attempt),
/// `timeout` (the last attempt timed out), `retry` (failed, tried again),
/// `breaker_open` (every endpoint ejected) (counter; emitted by
/// [`crate::upstream`]).
pub const UPSTREAM_ATTEMPTS_TOTAL: &str = "routemesh_upstream_attempts_total";
/// 1 while an endpoint's circuit breaker has it ejected, else 0, by
/// `upstream` and `endpoint` (its index in the upstream's list) (gauge;
/// set by [`crate::upstream`]).
pub const UPSTREAM_ENDPOINT_OPEN: &str = "routemesh_upstream_endpoint_open";
/// Requests that moved on to their decision's next candidate model because
/// every attempt on the previous one failed, by `decision` (counter;
/// emitted by [`crate::pipeline`]).
pub const UPSTREAM_FALLBACKS_TOTAL: &str = "routemesh_upstream_fallbacks_total";
/// Classify requests sent again to another worker of a NATS pool, by
/// `pool` and `outcome`: `sent` (each extra request), `won` (a classify
/// call answered by one of them), `throttled` (a call whose hedge the
/// budget refused) (counter; emitted by [`crate::classify`]).
pub const CLASSIFY_HEDGES_TOTAL: &str = "routemesh_classify_hedges_total";
/// Client connections open on the HTTP listener (gauge; emitted by
/// [`crate::listener`]).
pub const HTTP_CONNECTIONS: &str = "routemesh_http_connections";
/// Client connections the HTTP listener closed on its own, by `reason`:
/// `idle` (no request within `server.timeouts.idle`), `header_read` (a head
/// not complete within `server.timeouts.header_read`), `evicted` (closed,
/// idle or still sending, to admit a new connection at
/// `server.max_connections`), `shed` (refused with a 503: every connection
/// busy) (counter; emitted by [`crate::listener`]).
pub const HTTP_CONNECTIONS_CLOSED_TOTAL: &str = "routemesh_http_connections_closed_total";
/// Malformed requests hyper refused before any handler (400, 414, 431),
/// by `status` (counter; emitted by [`crate::listener`]).
pub const HTTP_MALFORMED_TOTAL: &str = "routemesh_http_malformed_total";

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
    /// The API the request came in.
    pub api: &'static str,
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
        "api" => r.api,
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
///
/// It takes the learner and the cache rather than the gateway's state so
/// that every module can name its metrics here without a module cycle.
pub async fn install(
    addr: SocketAddr,
    learner: &Arc<Learner>,
    cache: Option<Cache>,
) -> Result<SocketAddr, ExporterError> {
    let exporter = exposition::install(addr, routemesh_classifier_worker::metrics::BUCKETS).await?;
    describe();
    let local = exporter.local_addr();
    let learner = Arc::downgrade(learner);
    exporter.serve(move || sample(learner.clone(), cache.clone()));
    Ok(local)
}

/// Sets the gauges that mirror state: cache shards and posterior means.
async fn sample(learner: Weak<Learner>, cache: Option<Cache>) {
    let Some(learner) = learner.upgrade() else {
        return;
    };
    for arm in learner.snapshot() {
        if arm.configured {
            metrics::gauge!(POSTERIOR_MEAN, "decision" => arm.decision, "model" => arm.model)
                .set(arm.mean);
        }
    }
    if let Some(cache) = &cache {
        for s in cache.stats().await {
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
    g!(
        OUTBOX_EVENTS,
        Unit::Count,
        "Outcome events waiting in the outbox for delivery."
    );
    c!(
        TENANT_REQUESTS_TOTAL,
        Unit::Count,
        "API requests accepted with a key, by tenant."
    );
    c!(
        AUTH_REJECTIONS_TOTAL,
        Unit::Count,
        "Requests refused for their credential, by scope and reason."
    );
    c!(
        UPSTREAM_ATTEMPTS_TOTAL,
        Unit::Count,
        "Attempts on an upstream, by upstream and outcome."
    );
    g!(
        UPSTREAM_ENDPOINT_OPEN,
        Unit::Count,
        "1 while the endpoint is ejected by its circuit breaker."
    );
    c!(
        UPSTREAM_FALLBACKS_TOTAL,
        Unit::Count,
        "Requests that fell back to their decision's next candidate model."
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
                api: "chat_completions",
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
                r#"routemesh_requests_total{api="chat_completions",decision="math",model="none",outcome="upstream_error"} 1"#,
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
                api: "chat_completions",
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

    /// Lines (1-based) of `src` where a `counter!`, `gauge!` or `histogram!`
    /// call (`describe_*` too) names its metric with a string literal rather
    /// than a constant. Comment lines are skipped.
    fn literal_metric_names(src: &str) -> Vec<usize> {
        let mut found = Vec::new();
        let mut line = 1;
        let mut at = 0;
        for (i, _) in src.match_indices("!(") {
            line += src[at..i].matches('\n').count();
            at = i;
            let start = src[..i].rfind('\n').map_or(0, |n| n + 1);
            let before = &src[start..i];
            let is_metric = ["counter", "gauge", "histogram"]
                .iter()
                .any(|m| before.ends_with(m));
            if !is_metric || before.trim_start().starts_with("//") {
                continue;
            }
            if src[i + 2..].trim_start().starts_with('"') {
                found.push(line);
            }
        }
        found
    }

    #[test]
    fn the_literal_check_finds_a_literal_name_and_passes_a_constant() {
        let src = "metrics::counter!(REQUESTS_TOTAL).increment(1);\n\
                   // metrics::gauge!(\"in_a_comment\")\n\
                   metrics::histogram!(\n    \"routemesh_x_seconds\",\n)\n\
                   gauge!(\"routemesh_y\").set(1.0);\n";
        assert_eq!(literal_metric_names(src), [3, 6]);
    }

    /// Every metric is named through a `pub const` with a doc comment (what
    /// it counts, its labels): in the gateway here, the worker's beside its
    /// batcher. A literal name at a call site is a metric nobody documented.
    #[test]
    fn every_metric_call_site_in_the_workspace_names_a_constant() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = Vec::new();
        for group in ["crates", "deploy"] {
            for entry in std::fs::read_dir(root.join(group)).expect("a workspace folder") {
                dirs.push(entry.expect("a folder entry").path().join("src"));
            }
        }
        dirs.push(root.join("loadtest/src"));
        let mut files = 0;
        let mut offenders = Vec::new();
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a folder entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files += 1;
                    let text = std::fs::read_to_string(&path).expect("a source file");
                    for line in literal_metric_names(&text) {
                        offenders.push(format!("{}:{line}", path.display()));
                    }
                }
            }
        }
        assert!(
            files > 50,
            "the sources were not found under {}",
            root.display()
        );
        assert!(
            offenders.is_empty(),
            "metric names must be constants (with a doc comment), not literals:\n{}",
            offenders.join("\n")
        );
    }
}
