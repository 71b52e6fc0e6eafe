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
}

/// `encoder:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEncoder {
    pub(crate) model_dir: Option<String>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) max_batch: Option<u32>,
}

/// `classifier:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClassifier {
    pub(crate) transport: Option<String>,
    pub(crate) pool: Option<String>,
    pub(crate) deadline: Option<String>,
    pub(crate) on_unavailable: Option<String>,
}

/// `nats:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNats {
    pub(crate) url: Option<String>,
    pub(crate) credentials_file: Option<String>,
    pub(crate) tls: Option<RawTls>,
}

/// `nats.tls:`
#[derive(Debug, Default, Deserialize)]
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
    pub(crate) base_url: String,
    pub(crate) api_key_env: Option<String>,
    pub(crate) timeout: Option<String>,
}

/// One item of `models:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub(crate) name: String,
    pub(crate) upstream: String,
    pub(crate) upstream_model: Option<String>,
}

/// `router:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    pub(crate) aliases: Option<Vec<String>>,
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

/// One item of `decisions:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDecision {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) priority: i32,
    pub(crate) when: RawExpr,
    pub(crate) model: Option<String>,
    /// Refuse the request with this message instead of routing it.
    pub(crate) block: Option<String>,
    /// Replace personal data before forwarding: `true` or a list of kinds.
    pub(crate) redact_pii: Option<RawPiiKinds>,
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
    pub(crate) model: String,
    pub(crate) redact_pii: Option<RawPiiKinds>,
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
