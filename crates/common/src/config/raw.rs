//! The raw configuration: serde structs that mirror the YAML file.
//!
//! Nothing here is checked beyond types; [`super::validate`] turns these into
//! the typed [`super::Config`]. Lists are kept as YAML values at this level so
//! that each item is deserialized on its own and a type error in one item does
//! not hide the errors in the others.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_yaml_ng::Value;

/// `server:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) max_prompt_chars: Option<u64>,
    /// A number or `auto`.
    pub(crate) max_connections: Option<Value>,
    pub(crate) timeouts: Option<RawServerTimeouts>,
}

/// `server.timeouts:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTimeouts {
    pub(crate) header_read: Option<String>,
    pub(crate) body_read: Option<String>,
    pub(crate) idle: Option<String>,
}

/// `auth:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub(crate) keys_env: Option<String>,
    pub(crate) keys_file: Option<String>,
    pub(crate) admin_token_env: Option<String>,
}

/// `encoder:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncoder {
    pub(crate) model_dir: Option<String>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) max_total_tokens: Option<u32>,
    pub(crate) max_batch: Option<u32>,
    /// `auto`, `f32`, `bf16` or `int8`.
    pub(crate) precision: Option<String>,
}

/// `classifier:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClassifier {
    pub(crate) transport: Option<String>,
    pub(crate) pool: Option<String>,
    pub(crate) deadline: Option<String>,
    pub(crate) on_unavailable: Option<String>,
    /// `auto`, `off`, a duration, or `{ after, budget }`.
    pub(crate) hedge: Option<Value>,
}

/// `nats:`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNats {
    pub(crate) url: Option<String>,
    pub(crate) credentials_file: Option<String>,
    pub(crate) tls: Option<RawTls>,
}

/// `nats.tls:`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) ca_file: Option<String>,
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
    #[serde(default)]
    pub(crate) required: bool,
}

/// One item of `upstreams:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) name: String,
    pub(crate) base_url: Option<String>,
    pub(crate) endpoints: Option<Vec<RawEndpoint>>,
    pub(crate) api_key_env: Option<String>,
    /// The same as `timeouts.first_byte` (kept from before `timeouts:`).
    pub(crate) timeout: Option<String>,
    pub(crate) timeouts: Option<RawTimeouts>,
    pub(crate) retries: Option<RawRetries>,
    pub(crate) breaker: Option<RawBreaker>,
    pub(crate) family: Option<String>,
    pub(crate) api: Option<String>,
}

/// `upstreams[].endpoints[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub(crate) url: String,
    pub(crate) weight: Option<u32>,
}

/// `upstreams[].timeouts:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub(crate) connect: Option<String>,
    pub(crate) first_byte: Option<String>,
    pub(crate) total: Option<String>,
}

/// `upstreams[].retries:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetries {
    pub(crate) attempts: Option<u32>,
    pub(crate) backoff: Option<String>,
    pub(crate) max_backoff: Option<String>,
}

/// `upstreams[].breaker:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub(crate) failures: Option<u32>,
    pub(crate) open_for: Option<String>,
    pub(crate) probes: Option<u32>,
}

/// One item of `models:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub(crate) name: String,
    pub(crate) upstream: String,
    pub(crate) upstream_model: Option<String>,
    pub(crate) cost: Option<RawModelCost>,
}

/// `models[].cost:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModelCost {
    pub(crate) input_per_mtok: f64,
    pub(crate) output_per_mtok: f64,
    pub(crate) output_tokens: Option<u32>,
}

/// `learning:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLearning {
    pub(crate) cost_weight: Option<f64>,
    pub(crate) discount: Option<f64>,
    pub(crate) store: Option<String>,
    pub(crate) share: Option<String>,
    pub(crate) stream: Option<String>,
    pub(crate) remember: Option<RawRemember>,
}

/// `learning.remember:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemember {
    pub(crate) requests: Option<u64>,
    #[serde(rename = "for")]
    pub(crate) for_: Option<String>,
}

/// `cache:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub(crate) enabled: Option<bool>,
    pub(crate) shards: Option<u64>,
    pub(crate) capacity: Option<u64>,
    pub(crate) max_entry_bytes: Option<RawBytes>,
    pub(crate) ttl: Option<String>,
    pub(crate) threshold: Option<f32>,
    pub(crate) deadline: Option<String>,
    pub(crate) store: Option<String>,
    pub(crate) rebuild_fraction: Option<f64>,
    pub(crate) index: Option<RawCacheIndex>,
    pub(crate) passthrough: Option<String>,
}

/// `metrics:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Option<String>,
}

/// `ext_proc:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtProc {
    pub(crate) listen: Option<String>,
}

/// `tracing:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTracing {
    pub(crate) otlp: Option<RawOtlp>,
}

/// `tracing.otlp:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOtlp {
    pub(crate) endpoint: Option<String>,
    pub(crate) service_name: Option<String>,
    pub(crate) sample_ratio: Option<f64>,
}

/// `cache.index:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheIndex {
    pub(crate) m: Option<u64>,
    pub(crate) ef_construction: Option<u64>,
    pub(crate) ef_search: Option<u64>,
    pub(crate) flat_below: Option<u64>,
    pub(crate) rerank: Option<u64>,
}

/// A size: `1048576` (bytes) or `1MiB`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a size: bytes as an integer, or a string like 512KiB or 1MiB"
)]
pub(crate) enum RawBytes {
    Count(u64),
    Text(String),
}

/// `router:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub(crate) aliases: Option<Vec<String>>,
    pub(crate) embeddings: Option<String>,
    pub(crate) completions: Option<String>,
}

/// `signals:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignals {
    #[serde(default)]
    pub(crate) routes: Vec<Value>,
    #[serde(default)]
    pub(crate) keywords: Vec<Value>,
    #[serde(default)]
    pub(crate) classifiers: Vec<Value>,
}

/// One item of `signals.classifiers:` — a trained head or an HF folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClassifierDef {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) pool: Option<String>,
}

/// `label: { classifier: domain, is: math, min: 0.5 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLabel {
    pub(crate) classifier: String,
    pub(crate) is: String,
    pub(crate) min: Option<f32>,
}

/// One item of `signals.routes:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: String,
    pub(crate) threshold: Option<f32>,
    pub(crate) examples: Vec<String>,
}

/// One item of `signals.keywords:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeywordRule {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) regex: bool,
    pub(crate) patterns: Vec<String>,
}

/// What a routing decision (or the default) does: the part of `decisions[]`
/// and `default` that is not the rule. Both list these fields themselves
/// (serde's `flatten` would lose `deny_unknown_fields` and error paths).
#[derive(Debug, Default)]
pub(crate) struct RawRouteFields {
    /// One model (shorthand for `models: [x]`).
    pub(crate) model: Option<String>,
    /// Candidate models.
    pub(crate) models: Option<Vec<RawCandidate>>,
    pub(crate) selection: Option<String>,
    pub(crate) cost_weight: Option<f64>,
    /// Replace personal data before forwarding: `true` or a list of kinds.
    pub(crate) redact_pii: Option<RawPiiKinds>,
    pub(crate) system_prompt: Option<RawSystemPrompt>,
    pub(crate) headers: Option<RawHeaders>,
    pub(crate) slo: Option<String>,
    pub(crate) cache: Option<RawCachePolicy>,
}

macro_rules! route_fields {
    ($raw:expr) => {
        RawRouteFields {
            model: $raw.model,
            models: $raw.models,
            selection: $raw.selection,
            cost_weight: $raw.cost_weight,
            redact_pii: $raw.redact_pii,
            system_prompt: $raw.system_prompt,
            headers: $raw.headers,
            slo: $raw.slo,
            cache: $raw.cache,
        }
    };
}

impl RawDecision {
    /// The routing part, and the block message.
    pub(crate) fn split(self) -> (String, i32, RawExpr, Option<String>, RawRouteFields) {
        let route = route_fields!(self);
        (self.name, self.priority, self.when, self.block, route)
    }
}

impl RawDefault {
    pub(crate) fn split(self) -> (Option<String>, RawRouteFields) {
        let route = route_fields!(self);
        (self.name, route)
    }
}

/// One item of `decisions:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDecision {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) priority: i32,
    pub(crate) when: RawExpr,
    /// Refuse the request with this message instead of routing it.
    pub(crate) block: Option<String>,
    /// One model (shorthand for `models: [x]`).
    pub(crate) model: Option<String>,
    /// Candidate models.
    pub(crate) models: Option<Vec<RawCandidate>>,
    pub(crate) selection: Option<String>,
    pub(crate) cost_weight: Option<f64>,
    /// Replace personal data before forwarding: `true` or a list of kinds.
    pub(crate) redact_pii: Option<RawPiiKinds>,
    pub(crate) system_prompt: Option<RawSystemPrompt>,
    pub(crate) headers: Option<RawHeaders>,
    pub(crate) slo: Option<String>,
    pub(crate) cache: Option<RawCachePolicy>,
}

/// `gpt-4o` or `{ model: gpt-4o, reasoning: high, prior: { alpha: 2, beta: 1 } }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawCandidate {
    Name(String),
    Full(RawCandidateFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCandidateFull {
    pub(crate) model: String,
    pub(crate) reasoning: Option<RawReasoning>,
    pub(crate) prior: Option<RawPrior>,
}

/// `true`/`false` or `off`/`on`/`low`/`medium`/`high`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawReasoning {
    Flag(bool),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrior {
    pub(crate) alpha: f64,
    pub(crate) beta: f64,
}

/// `{ insert: "..." }` or `{ replace: "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSystemPrompt {
    pub(crate) insert: Option<String>,
    pub(crate) replace: Option<String>,
}

/// `{ add: { x-team: math }, remove: [x-debug] }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaders {
    #[serde(default)]
    pub(crate) add: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}

/// `semantic`, or `{ mode: semantic, threshold: 0.97, ttl: 10m }`.
#[derive(Debug)]
pub(crate) enum RawCachePolicy {
    Mode(String),
    Full(RawCachePolicyFull),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCachePolicyFull {
    pub(crate) mode: Option<String>,
    pub(crate) threshold: Option<f32>,
    pub(crate) ttl: Option<String>,
}

// By hand rather than `untagged`: an untagged enum reports any mistake inside
// the map as "did not match any variant", hiding the key (`ttl`, a typo).
impl<'de> Deserialize<'de> for RawCachePolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CachePolicyVisitor)
    }
}

struct CachePolicyVisitor;

impl<'de> Visitor<'de> for CachePolicyVisitor {
    type Value = RawCachePolicy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "off, exact or semantic, or a map like { mode: semantic, threshold: 0.97, ttl: 10m }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCachePolicy, E> {
        Ok(RawCachePolicy::Mode(v.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCachePolicy, A::Error> {
        RawCachePolicyFull::deserialize(de::value::MapAccessDeserializer::new(map))
            .map(RawCachePolicy::Full)
    }
}

/// `any` / `true`, or a list of PII kinds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPiiKinds {
    Flag(bool),
    Word(String),
    List(Vec<String>),
}

/// `default:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefault {
    pub(crate) name: Option<String>,
    /// One model (shorthand for `models: [x]`).
    pub(crate) model: Option<String>,
    /// Candidate models.
    pub(crate) models: Option<Vec<RawCandidate>>,
    pub(crate) selection: Option<String>,
    pub(crate) cost_weight: Option<f64>,
    /// Replace personal data before forwarding: `true` or a list of kinds.
    pub(crate) redact_pii: Option<RawPiiKinds>,
    pub(crate) system_prompt: Option<RawSystemPrompt>,
    pub(crate) headers: Option<RawHeaders>,
    pub(crate) slo: Option<String>,
    pub(crate) cache: Option<RawCachePolicy>,
}

/// A rule expression as written: a map with exactly one key.
#[derive(Debug)]
pub(crate) enum RawExpr {
    All(Vec<RawExpr>),
    Any(Vec<RawExpr>),
    Not(Box<RawExpr>),
    Route(RawRoutePredicate),
    Keyword(String),
    Tokens(RawTokens),
    Pii(RawPiiKinds),
    Language(Vec<String>),
    Label(RawLabel),
}

const OPERATORS: &[&str] = &[
    "all", "any", "not", "route", "keyword", "tokens", "pii", "language", "label",
];

// By hand rather than derived: serde_yaml_ng reads a derived enum from a
// `Value` only in `!tag` form, and we want the one-key map form with an error
// that says what a condition looks like.
impl<'de> Deserialize<'de> for RawExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExprVisitor)
    }
}

struct ExprVisitor;

impl<'de> Visitor<'de> for ExprVisitor {
    type Value = RawExpr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a condition: a map with one key, one of {}",
            OPERATORS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawExpr, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        let expr = match key.as_str() {
            "all" => RawExpr::All(map.next_value()?),
            "any" => RawExpr::Any(map.next_value()?),
            "not" => RawExpr::Not(map.next_value()?),
            "route" => RawExpr::Route(map.next_value()?),
            "keyword" => RawExpr::Keyword(map.next_value()?),
            "tokens" => RawExpr::Tokens(map.next_value()?),
            "pii" => RawExpr::Pii(map.next_value()?),
            "language" => RawExpr::Language(map.next_value()?),
            "label" => RawExpr::Label(map.next_value()?),
            other => return Err(de::Error::unknown_variant(other, OPERATORS)),
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a condition has exactly one key, found `{key}` and `{extra}`; combine them with `all:` or `any:`"
            )));
        }
        Ok(expr)
    }
}

/// `route: math` or `route: { name: math, min: 0.6 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRoutePredicate {
    Name(String),
    Full(RawRouteFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteFull {
    pub(crate) name: String,
    pub(crate) min: Option<f32>,
}

/// `tokens: { min: 10, max: 500 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokens {
    pub(crate) min: Option<u32>,
    pub(crate) max: Option<u32>,
}
