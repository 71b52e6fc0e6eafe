//! What the pipeline found out about one request — decision, model,
//! redactions, degradation, what the cache did, stage latencies — as a
//! typed record that every front door renders: the `x-routemesh-*` and
//! `Server-Timing` headers ([`Record::headers`]) and the request's metrics
//! ([`Record::count`], the one place they are recorded).
//!
//! Only the pipeline writes a record (its setters are private to
//! [`crate::pipeline`]); front doors read it.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};

use super::headers::{
    HEADER_CACHE, HEADER_CACHE_SIMILARITY, HEADER_CACHE_TIER, HEADER_DECISION, HEADER_DEGRADED,
    HEADER_MODEL, HEADER_REDACTED, HEADER_REQUEST_ID, HEADER_SERVER_TIMING,
};
use super::outcome::Verdict;
use super::plan::RoutePlan;
use crate::telemetry::{self, Outcome, RequestMetrics};

/// One request's record.
#[derive(Debug)]
pub struct Record {
    id: String,
    /// The API it came in: `chat_completions`, `messages`, `responses`.
    api: &'static str,
    started: Instant,
    decision: Option<String>,
    model: Option<String>,
    /// Pieces of personal data replaced before forwarding.
    redacted: usize,
    /// Why routing ran without embedding signals, if it did.
    degraded: Option<&'static str>,
    /// What the cache did; `None` when there is no cache.
    cache: Option<CacheTrace>,
    /// `(stage, duration)` in the order they happened.
    stages: Vec<(&'static str, Duration)>,
    /// Whether [`Record::count`] counts the request (not for dry runs).
    counted: bool,
}

/// What the cache did for a request (the `x-routemesh-cache*` headers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheTrace {
    /// The decision's cache policy is `off`.
    Off,
    /// The client said `Cache-Control: no-cache`.
    Bypass,
    Miss,
    Hit {
        tier: &'static str,
        similarity: f32,
    },
}

impl CacheTrace {
    pub(crate) fn hit(h: &routemesh_cache::Hit) -> Self {
        Self::Hit {
            tier: match h.tier {
                routemesh_cache::Tier::Exact => "exact",
                routemesh_cache::Tier::Semantic => "semantic",
            },
            similarity: h.similarity,
        }
    }
}

impl Record {
    /// A request's record, started now.
    pub fn start(id: String) -> Self {
        Self {
            id,
            api: "chat_completions",
            started: Instant::now(),
            decision: None,
            model: None,
            redacted: 0,
            degraded: None,
            cache: None,
            stages: Vec::with_capacity(4),
            counted: true,
        }
    }

    /// A dry run's record: headers as usual, nothing counted in the
    /// request metrics (nothing is forwarded).
    pub fn dry_run(id: String) -> Self {
        Self {
            counted: false,
            ..Self::start(id)
        }
    }

    /// The record of a request that came in through `api` (a metrics
    /// label: `messages`, `responses`; chat completions by default).
    pub fn for_api(mut self, api: &'static str) -> Self {
        self.api = api;
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn decision(&self) -> Option<&str> {
        self.decision.as_deref()
    }

    /// The model chosen, or the one that answered after a fallback.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub(super) fn planned(&mut self, plan: &RoutePlan, model: Option<&str>) {
        if let Some(r) = &plan.routed {
            self.stages.push(("classify", r.classify));
            self.stages.push(("decide", r.decide));
        }
        self.decision = Some(plan.decision.clone());
        self.model = model.map(str::to_owned);
        self.degraded = plan
            .routed
            .as_ref()
            .and_then(|r| r.degraded.as_ref())
            .map(|f| f.reason());
    }

    pub(super) fn set_model(&mut self, model: &str) {
        self.model = Some(model.to_owned());
    }

    pub(super) fn set_redacted(&mut self, n: usize) {
        self.redacted = n;
    }

    pub(super) fn set_cache(&mut self, c: CacheTrace) {
        self.cache = Some(c);
    }

    pub(super) fn stage(&mut self, name: &'static str, d: Duration) {
        self.stages.push((name, d));
    }

    /// The upstream stage of a request that a proxy in front (Envoy, under
    /// ext_proc) forwarded itself: `took` from sending it on to the
    /// answer's headers.
    pub fn upstream_answered(&mut self, took: Duration) {
        self.stages.push(("upstream", took));
    }

    /// Where cache lookups record their stages.
    pub(super) fn stages_mut(&mut self) -> &mut Vec<(&'static str, Duration)> {
        &mut self.stages
    }

    /// The `x-routemesh-*` headers and `Server-Timing` for the response.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        set(HEADER_REQUEST_ID, &self.id);
        if let Some(d) = &self.decision {
            set(HEADER_DECISION, d);
        }
        if let Some(m) = &self.model {
            set(HEADER_MODEL, m);
        }
        if self.redacted > 0 {
            set(HEADER_REDACTED, &self.redacted.to_string());
        }
        if let Some(reason) = self.degraded {
            set(HEADER_DEGRADED, &format!("classify={reason}"));
        }
        match self.cache {
            None => {}
            Some(CacheTrace::Off) => set(HEADER_CACHE, "off"),
            Some(CacheTrace::Bypass) => set(HEADER_CACHE, "bypass"),
            Some(CacheTrace::Miss) => set(HEADER_CACHE, "miss"),
            Some(CacheTrace::Hit { tier, similarity }) => {
                set(HEADER_CACHE, "hit");
                set(HEADER_CACHE_TIER, tier);
                set(HEADER_CACHE_SIMILARITY, &format!("{similarity:.4}"));
            }
        }
        set(HEADER_SERVER_TIMING, &self.server_timing());
        headers
    }

    /// `classify;dur=1.234, decide;dur=0.004, upstream;dur=20.5, total;dur=22.1`
    /// (milliseconds), as the Server-Timing standard writes it.
    fn server_timing(&self) -> String {
        let mut out = String::new();
        let total = ("total", self.started.elapsed());
        for (name, d) in self.stages.iter().chain(std::iter::once(&total)) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{name};dur={:.3}", d.as_secs_f64() * 1e3);
        }
        out
    }

    /// Counts a request answered with `status` by a model (relayed) or
    /// from the cache, and records its stage latencies (as every `count_*`).
    pub fn count_answer(&self, status: StatusCode) {
        let outcome = if matches!(self.cache, Some(CacheTrace::Hit { .. })) {
            Outcome::CacheHit
        } else {
            match Verdict::of(status) {
                Verdict::ModelFailed => Outcome::UpstreamError,
                Verdict::RequestFault => Outcome::ClientError,
                Verdict::Answered | Verdict::Other => Outcome::Ok,
            }
        };
        self.count(outcome);
    }

    /// Counts a request the gateway refused itself with `status`. `kind` is
    /// the outcome when the error's kind says more than its status (a
    /// block, an upstream failure); otherwise a 5xx is the gateway being
    /// unavailable and anything else the client's fault.
    pub fn count_refusal(&self, status: StatusCode, kind: Option<Outcome>) {
        let outcome = kind.unwrap_or(if status.is_server_error() {
            Outcome::Unavailable
        } else {
            Outcome::ClientError
        });
        self.count(outcome);
    }

    fn count(&self, outcome: Outcome) {
        if !self.counted {
            return;
        }
        telemetry::record_request(&RequestMetrics {
            api: self.api,
            decision: self.decision.as_deref(),
            model: self.model.as_deref(),
            outcome,
            stages: &self.stages,
            total: self.started.elapsed(),
        });
    }
}
