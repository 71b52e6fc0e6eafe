//! The semantic cache as the gateway uses it: which requests may use it,
//! their keys, and coalescing of identical misses.
//!
//! The cache itself (`routemesh_cache`) knows nothing of HTTP or OpenAI: it
//! stores opaque answers under a [`Scope`] and a key. This module makes both
//! from a request:
//!
//! - **scope** = tenant + decision + model + a fingerprint of everything in
//!   the request except the last user message's content (system prompt,
//!   earlier turns, sampling parameters, tools, `stream`, the requested
//!   alias), so an answer is never served across tenants or contexts;
//! - **key** = a hash of that last user message (whitespace-normalised text,
//!   or its exact JSON when it has non-text parts, which also turns the
//!   semantic tier off for it).
//!
//! The tenant is the request's [`Tenant`]: the one its API key belongs to,
//! or, on a gateway without `auth:`, one derived from its credential.

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
use serde_json::Value;
use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_128;

use crate::auth::Tenant;
use crate::http::openai::ChatRequest;

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

    /// How `req`, sent by `names.tenant`, uses the cache under `policy`;
    /// `None` when it does not.
    pub fn plan(
        &self,
        req: &ChatRequest,
        names: ScopeNames<'_>,
        headers: &HeaderMap,
        policy: CachePolicy,
        embedding: Option<&[f32]>,
    ) -> Option<CachePlan> {
        if policy.mode == CacheMode::Off {
            return None;
        }
        let keys = request_keys(req);
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
        metrics::counter!("routemesh_cache_lookups_total", "outcome" => outcome).increment(1);
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
        metrics::counter!("routemesh_cache_coalesced_total").increment(1);
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

    /// Stores the answer if it is complete: valid JSON, or an event stream
    /// that ended with `data: [DONE]`.
    pub fn finish(self, content_type: Option<&str>) {
        let content_type = content_type.unwrap_or("application/json").to_owned();
        let kind = if content_type.starts_with("text/event-stream") {
            AnswerKind::Sse
        } else {
            AnswerKind::Json
        };
        let complete = match kind {
            AnswerKind::Sse => self.buf.trim_ascii_end().ends_with(b"data: [DONE]"),
            AnswerKind::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&self.buf).is_ok(),
        };
        if !complete {
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
        },
        store: c.store.clone(),
    }
}

/// A request's context fingerprint and prompt key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RequestKeys {
    context: u128,
    key: u128,
    /// The last user message is plain text (the semantic tier applies).
    text_only: bool,
}

/// Splits the request into the message the router reads (the last user
/// message, or the last message with content) and everything else.
fn request_keys(req: &ChatRequest) -> RequestKeys {
    let mut body = req.body.clone();
    let mut prompt = Value::Null;
    if let Some(Value::Array(messages)) = body.get_mut("messages") {
        let at = messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .or_else(|| {
                messages
                    .iter()
                    .rposition(|m| m.get("content").is_some_and(|c| !c.is_null()))
            });
        if let Some(Value::Object(m)) = at.and_then(|i| messages.get_mut(i))
            && let Some(c) = m.get_mut("content")
        {
            prompt = c.take();
        }
    }
    // serde_json's map is ordered by key, so equal requests serialise alike.
    let context = xxh3_128(&serde_json::to_vec(&body).unwrap_or_default());
    let (key, text_only) = match &prompt {
        Value::String(s) => (xxh3_128(normalized(s).as_bytes()), true),
        other => {
            let parts_are_text = other.as_array().is_some_and(|parts| {
                parts
                    .iter()
                    .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            });
            if let (true, Some(parts)) = (parts_are_text, other.as_array()) {
                let text: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                (xxh3_128(normalized(&text.join(" ")).as_bytes()), true)
            } else {
                (
                    xxh3_128(&serde_json::to_vec(other).unwrap_or_default()),
                    false,
                )
            }
        }
    };
    RequestKeys {
        context,
        key,
        text_only,
    }
}

/// Trimmed, with every run of whitespace made one space.
fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::openai::parse_chat;
    use serde_json::json;

    fn keys(body: Value) -> RequestKeys {
        let req = parse_chat(body.to_string().as_bytes()).expect("valid request");
        request_keys(&req)
    }

    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": text })
    }

    #[test]
    fn the_last_user_message_is_the_key_and_the_rest_the_context() {
        let a = keys(json!({ "model": "auto", "messages": [user("What is  Rust?")] }));
        let b = keys(json!({ "model": "auto", "messages": [user(" What is Rust? ")] }));
        let c = keys(json!({ "model": "auto", "messages": [user("What is Go?")] }));
        assert_eq!(a, b, "whitespace does not change the key");
        assert_eq!(a.context, c.context);
        assert_ne!(a.key, c.key);
        assert!(a.text_only);
    }

    #[test]
    fn system_prompts_turns_and_parameters_change_the_context() {
        let base = keys(json!({ "model": "auto", "messages": [user("hi")] }));
        let variants = [
            json!({ "model": "auto", "messages": [{ "role": "system", "content": "Be terse." }, user("hi")] }),
            json!({ "model": "auto", "messages": [user("earlier"), { "role": "assistant", "content": "ok" }, user("hi")] }),
            json!({ "model": "auto", "messages": [user("hi")], "temperature": 0.2 }),
            json!({ "model": "auto", "messages": [user("hi")], "stream": true }),
            json!({ "model": "auto", "messages": [user("hi")], "tools": [{ "type": "function", "function": { "name": "f" } }] }),
            json!({ "model": "other", "messages": [user("hi")] }),
        ];
        for v in variants {
            let k = keys(v.clone());
            assert_eq!(k.key, base.key, "{v}");
            assert_ne!(k.context, base.context, "{v}");
        }
    }

    #[test]
    fn non_text_parts_key_on_the_whole_content_and_skip_the_semantic_tier() {
        let image = |url: &str| {
            json!({ "model": "auto", "messages": [{ "role": "user", "content": [
                { "type": "text", "text": "What is this?" },
                { "type": "image_url", "image_url": { "url": url } },
            ] }] })
        };
        let a = keys(image("https://a.example/1.png"));
        let b = keys(image("https://a.example/2.png"));
        assert_ne!(a.key, b.key);
        assert!(!a.text_only);
        let parts = keys(
            json!({ "model": "auto", "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "What is Rust?" } ] }] }),
        );
        let plain = keys(json!({ "model": "auto", "messages": [user("What is Rust?")] }));
        assert!(parts.text_only);
        assert_eq!(parts.key, plain.key);
    }

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
