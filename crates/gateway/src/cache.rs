//! The semantic cache as the gateway uses it: which requests may use it,
//! their keys, and coalescing of identical misses.
//!
//! The cache itself (`routemesh_cache`) knows nothing of HTTP or any API: it
//! stores opaque answers under a [`Scope`] and a key. This module makes both
//! from a request's [`RequestKeys`], which the request's API codec computes
//! (it alone knows the format):
//!
//! - **scope** = tenant + decision + model + the request's context
//!   fingerprint (everything but the prompt), so an answer is never served
//!   across tenants or contexts;
//! - **key** = the prompt's hash.
//!
//! The tenant is the request's [`Tenant`]: the one its API key belongs to,
//! or, on a gateway without `auth:`, one derived from its credential.
//! Whether a collected answer is complete is the codec's call too
//! ([`Fill::finish`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, header};
use routemesh_cache::{
    Answer, AnswerKind, Cache, CacheSettings, Hit, IndexParams, Insert, Lookup, LookupResult, Scope,
};
use routemesh_common::Config;
use routemesh_common::config::{CacheConfig, CacheMode, CachePolicy};
use tokio::sync::watch;

use crate::auth::Tenant;
use crate::telemetry::{CACHE_COALESCED_TOTAL, CACHE_LOOKUPS_TOTAL};

/// The cache, its settings as the gateway applies them, and the misses in
/// flight.
#[derive(Debug)]
pub struct CacheLayer {
    pub cache: Cache,
    threshold: f32,
    deadline: Duration,
    ttl: Duration,
    passthrough: CacheMode,
    max_entry_bytes: usize,
    in_flight: Mutex<HashMap<(Scope, u128), watch::Receiver<()>>>,
}

/// What the client asked of the cache with `Cache-Control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-cache`: do not answer from the cache (the fresh answer is stored).
    pub no_cache: bool,
    /// `no-store`: do not store the answer.
    pub no_store: bool,
}

impl Directives {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(v) = value.to_str() else { continue };
            for token in v.split(',') {
                match token.trim().to_ascii_lowercase().as_str() {
                    "no-cache" => d.no_cache = true,
                    "no-store" => d.no_store = true,
                    _ => {}
                }
            }
        }
        d
    }
}

/// Who asks and what answers: the named part of a request's [`Scope`]
/// (the context fingerprint is computed from the request).
#[derive(Debug, Clone, Copy)]
pub struct ScopeNames<'a> {
    /// The request's tenant (from its API key, or derived: [`Tenant`]).
    pub tenant: &'a Tenant,
    pub decision: &'a str,
    pub model: &'a str,
}

/// How one request uses the cache.
#[derive(Debug, Clone)]
pub struct CachePlan {
    pub scope: Scope,
    pub key: u128,
    /// The prompt's embedding, when the semantic tier may be used.
    pub vector: Option<Vec<f32>>,
    pub threshold: f32,
    pub ttl: Duration,
    pub directives: Directives,
}

/// Whether the answer came from another request's upstream call.
#[derive(Debug)]
pub enum Joined {
    /// This request calls the upstream; others with the same key wait for
    /// it until the guard is dropped.
    Leader(InFlight),
    /// Another request was calling the upstream and has finished (or gave
    /// up): look again.
    Waited,
    /// Nothing to coalesce with (or the wait timed out).
    Alone,
}

/// Held by the request that calls the upstream for a key; dropping it
/// releases the requests waiting for the same key.
#[derive(Debug)]
pub struct InFlight {
    layer: Arc<CacheLayer>,
    slot: (Scope, u128),
    _done: watch::Sender<()>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self
            .layer
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.slot);
    }
}

/// Why the cache could not start.
pub type StartError = routemesh_cache::CacheError;

impl CacheLayer {
    /// Starts the cache the config describes; `None` when it is disabled.
    pub async fn start(config: &Config) -> Result<Option<Arc<Self>>, StartError> {
        let c = &config.cache;
        if !c.enabled {
            return Ok(None);
        }
        let cache = Cache::start(settings(c)).await?;
        Ok(Some(Arc::new(Self {
            cache,
            threshold: c.threshold,
            deadline: c.deadline,
            ttl: c.ttl,
            passthrough: c.passthrough,
            max_entry_bytes: c.max_entry_bytes,
            in_flight: Mutex::new(HashMap::new()),
        })))
    }

    /// Answers larger than this are not stored.
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// The policy of a request routed by `decision` (`None`: passthrough).
    pub fn policy(&self, routed: Option<CachePolicy>) -> CachePolicy {
        routed.unwrap_or(CachePolicy {
            mode: self.passthrough,
            threshold: None,
            ttl: None,
        })
    }

    /// How a request with `keys` (computed only when needed), sent by
    /// `names.tenant`, uses the cache under `policy`; `None` when it does
    /// not.
    pub fn plan(
        &self,
        keys: impl FnOnce() -> RequestKeys,
        names: ScopeNames<'_>,
        headers: &HeaderMap,
        policy: CachePolicy,
        embedding: Option<&[f32]>,
    ) -> Option<CachePlan> {
        if policy.mode == CacheMode::Off {
            return None;
        }
        let keys = keys();
        let vector = (policy.mode == CacheMode::Semantic && keys.text_only)
            .then(|| embedding.map(<[f32]>::to_vec))
            .flatten();
        Some(CachePlan {
            scope: Scope {
                tenant: names.tenant.as_str().to_owned(),
                decision: names.decision.to_owned(),
                model: names.model.to_owned(),
                context: keys.context,
            },
            key: keys.key,
            vector,
            threshold: policy.threshold.unwrap_or(self.threshold),
            ttl: policy.ttl.unwrap_or(self.ttl),
            directives: Directives::from_headers(headers),
        })
    }

    /// Looks `plan` up within the configured deadline; `exact_only` skips
    /// the semantic tier (after waiting for an identical request).
    pub async fn lookup(&self, plan: &CachePlan, exact_only: bool) -> LookupResult {
        let lookup = Lookup {
            scope: plan.scope.clone(),
            key: plan.key,
            vector: if exact_only {
                None
            } else {
                plan.vector.clone()
            },
            threshold: plan.threshold,
        };
        let result = self.cache.lookup(lookup, self.deadline).await;
        let outcome = match &result {
            LookupResult::Hit(h) => match h.tier {
                routemesh_cache::Tier::Exact => "hit_exact",
                routemesh_cache::Tier::Semantic => "hit_semantic",
            },
            LookupResult::Miss => "miss",
            LookupResult::TimedOut => "timeout",
            LookupResult::Unavailable => "unavailable",
        };
        metrics::counter!(CACHE_LOOKUPS_TOTAL, "outcome" => outcome).increment(1);
        result
    }

    /// Becomes the request that calls the upstream for `plan`'s key, or
    /// waits (at most `wait`) for the one that already does.
    pub async fn join(self: &Arc<Self>, plan: &CachePlan, wait: Duration) -> Joined {
        let slot = (plan.scope.clone(), plan.key);
        let waiting = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&slot) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(());
                    map.insert(slot.clone(), rx);
                    return Joined::Leader(InFlight {
                        layer: self.clone(),
                        slot,
                        _done: tx,
                    });
                }
            }
        };
        let mut rx = waiting;
        metrics::counter!(CACHE_COALESCED_TOTAL).increment(1);
        // The sender never sends: `changed` returns when it is dropped.
        match tokio::time::timeout(wait, rx.changed()).await {
            Ok(_) => Joined::Waited,
            Err(_) => Joined::Alone,
        }
    }
}

/// What the cache said about a request.
#[derive(Debug)]
pub enum Consulted {
    /// Answer with this.
    Hit(Hit),
    /// Go upstream; store the answer as `fill` says (`None`: do not).
    /// `bypassed`: the client said `no-cache`, so nothing was looked up.
    Miss {
        fill: Option<Box<Fill>>,
        bypassed: bool,
    },
}

impl CacheLayer {
    /// Looks the request up (unless the client said `no-cache`); on a miss,
    /// waits (at most `upstream_timeout`) for an identical request already
    /// calling the upstream, or becomes that request. Each lookup is pushed
    /// to `stages` as `cache`, the wait as `coalesce` (upstream time, not
    /// cache time).
    pub async fn consult(
        self: &Arc<Self>,
        cp: CachePlan,
        upstream_timeout: Duration,
        stages: &mut Vec<(&'static str, Duration)>,
    ) -> Consulted {
        let d = cp.directives;
        let mut hit = None;
        let mut leader = None;
        if !d.no_cache {
            let started = Instant::now();
            hit = hit_of(self.lookup(&cp, false).await);
            stages.push(("cache", started.elapsed()));
            if hit.is_none() && !d.no_store {
                let started = Instant::now();
                let joined = self.join(&cp, upstream_timeout).await;
                if !matches!(joined, Joined::Leader(_)) {
                    stages.push(("coalesce", started.elapsed()));
                }
                match joined {
                    Joined::Leader(guard) => leader = Some(guard),
                    Joined::Waited => {
                        let started = Instant::now();
                        hit = hit_of(self.lookup(&cp, true).await);
                        stages.push(("cache", started.elapsed()));
                    }
                    Joined::Alone => {}
                }
            }
        }
        if let Some(h) = hit {
            return Consulted::Hit(h);
        }
        let fill = (!d.no_store).then(|| {
            Box::new(Fill {
                layer: self.clone(),
                plan: cp,
                buf: Vec::new(),
                _leader: leader,
            })
        });
        Consulted::Miss {
            fill,
            bypassed: d.no_cache,
        }
    }
}

fn hit_of(result: LookupResult) -> Option<Hit> {
    match result {
        LookupResult::Hit(h) => Some(h),
        LookupResult::Miss | LookupResult::TimedOut | LookupResult::Unavailable => None,
    }
}

/// An answer being collected for the cache as it is relayed.
#[derive(Debug)]
pub struct Fill {
    layer: Arc<CacheLayer>,
    plan: CachePlan,
    buf: Vec<u8>,
    /// Set when identical requests wait for this one: they look again when
    /// it is dropped, which is after the insert.
    _leader: Option<InFlight>,
}

impl Fill {
    /// Keeps `chunk`; false once the answer is too big to store.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if self.buf.len() + chunk.len() > self.layer.max_entry_bytes() {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    /// Stores the answer if `complete` says it is (given its kind — an
    /// event stream or a JSON body, from `content_type` — and its bytes).
    pub fn finish(
        self,
        content_type: Option<&str>,
        complete: impl FnOnce(AnswerKind, &[u8]) -> bool,
    ) {
        let content_type = content_type.unwrap_or("application/json").to_owned();
        let kind = if content_type.starts_with("text/event-stream") {
            AnswerKind::Sse
        } else {
            AnswerKind::Json
        };
        if !complete(kind, &self.buf) {
            tracing::debug!("incomplete answer: not cached");
            return;
        }
        self.layer.cache.insert(Insert {
            scope: self.plan.scope,
            key: self.plan.key,
            vector: self.plan.vector,
            answer: Answer {
                kind,
                content_type,
                body: Bytes::from(self.buf),
            },
            ttl: Some(self.plan.ttl),
        });
    }
}

/// The cache crate's settings from the config.
fn settings(c: &CacheConfig) -> CacheSettings {
    CacheSettings {
        shards: c.shards,
        capacity: c.capacity,
        max_entry_bytes: c.max_entry_bytes,
        ttl: c.ttl,
        rebuild_fraction: c.rebuild_fraction,
        index: IndexParams {
            m: c.index.m,
            ef_construction: c.index.ef_construction,
            ef_search: c.index.ef_search,
            flat_below: c.index.flat_below,
            rerank: c.index.rerank,
        },
        store: c.store.clone(),
    }
}

/// A request's context fingerprint and prompt key, as its API codec
/// computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestKeys {
    /// Everything in the request but the prompt.
    pub context: u128,
    /// The prompt.
    pub key: u128,
    /// The prompt is plain text (the semantic tier applies).
    pub text_only: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(Directives::from_headers(&h), Directives::default());
        h.insert(
            header::CACHE_CONTROL,
            "max-age=0, No-Store".parse().expect("header"),
        );
        let d = Directives::from_headers(&h);
        assert!(d.no_store && !d.no_cache);
        h.append(header::CACHE_CONTROL, "no-cache".parse().expect("header"));
        let d = Directives::from_headers(&h);
        assert!(d.no_store && d.no_cache);
    }
}
