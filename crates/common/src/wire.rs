//! The NATS contract: subject names and the versioned wire messages that
//! gateways and classifier workers exchange.
//!
//! Messages are JSON (serde). `f32` values round-trip exactly (serde_json
//! writes the shortest representation that parses back to the same bits), so
//! an embedding that crossed the bus equals the one computed in-process.
//! Every message carries `v`; a worker answers a version it does not speak
//! with a `400` service error that names both versions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signals::Output;

/// The wire version this build speaks.
pub const WIRE_VERSION: u16 = 1;

/// Prefix of the classify subjects: `routemesh.classify.<pool>`.
pub const CLASSIFY_SUBJECT_PREFIX: &str = "routemesh.classify";

/// Name under which workers register as a NATS micro service
/// (`$SRV.PING.routemesh-classifier`, `$SRV.STATS.routemesh-classifier`).
pub const SERVICE_NAME: &str = "routemesh-classifier";

/// The subject a pool answers on (in a queue group named after the pool).
pub fn classify_subject(pool: &str) -> String {
    format!("{CLASSIFY_SUBJECT_PREFIX}.{pool}")
}

/// Whether `pool` is usable as one NATS subject token and queue group.
pub fn valid_pool_name(pool: &str) -> bool {
    !pool.is_empty()
        && pool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Gateway → worker: embed these texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyRequest {
    /// Wire version ([`WIRE_VERSION`]).
    pub v: u16,
    /// The gateway's request id, for logs on both sides.
    pub request_id: String,
    pub texts: Vec<String>,
    /// Classifiers (heads, HF models) to run on the texts, by name; the
    /// embedding is always returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// How long the caller waits, in milliseconds from sending; work that
    /// cannot start in time is dropped by the worker.
    pub deadline_ms: u64,
}

impl ClassifyRequest {
    pub fn new(request_id: impl Into<String>, texts: Vec<String>, deadline_ms: u64) -> Self {
        Self {
            v: WIRE_VERSION,
            request_id: request_id.into(),
            texts,
            outputs: Vec::new(),
            deadline_ms,
        }
    }
}

/// Worker → gateway: one item per requested text, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyReply {
    pub v: u16,
    /// Which worker answered (its NATS service instance id).
    pub worker: String,
    /// Which model produced the embeddings (name and weights hash prefix).
    pub model: String,
    /// Texts in the largest forward pass this request shared.
    pub batch_size: usize,
    pub items: Vec<EmbeddingItem>,
    pub timings: WireTimings,
}

/// The embedding of one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingItem {
    /// Unit-length vector.
    pub embedding: Vec<f32>,
    /// Tokens before truncation, special tokens included.
    pub tokens: u32,
    /// Longer than the worker reads of a text (its `--max-total-tokens`):
    /// only the first tokens were embedded.
    pub truncated: bool,
    /// Windows of at most the worker's `--max-tokens` the text was read in
    /// (1 for a short text, and from workers older than windows).
    #[serde(default = "one_window")]
    pub windows: u32,
    /// What each requested classifier said, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Output>,
}

fn one_window() -> u32 {
    1
}

/// Where a worker spent a request's time, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTimings {
    pub queue_us: u64,
    pub tokenize_us: u64,
    pub forward_us: u64,
}

/// Just the version of a message, read before the rest so that a message of
/// another version gets a clear answer instead of a parse error.
#[derive(Debug, Deserialize)]
pub struct Versioned {
    pub v: u16,
}

/// NATS service error codes a worker answers with (HTTP-like, as the NATS
/// micro protocol's `Nats-Service-Error-Code` header carries them).
pub mod error_code {
    /// Malformed request or a wire version this worker does not speak.
    pub const BAD_REQUEST: usize = 400;
    /// The encoder failed.
    pub const INTERNAL: usize = 500;
    /// Queue full or draining: retry, another worker may take it.
    pub const UNAVAILABLE: usize = 503;
    /// The request's deadline passed before it could run.
    pub const DEADLINE: usize = 504;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_bit_for_bit() {
        let embedding: Vec<f32> = (0..384)
            .map(|i| ((i as f32) * 0.7311).sin() / 19.3)
            .collect();
        let reply = ClassifyReply {
            v: WIRE_VERSION,
            worker: "w1".into(),
            model: "m".into(),
            batch_size: 3,
            items: vec![EmbeddingItem {
                embedding: embedding.clone(),
                tokens: 7,
                truncated: false,
                windows: 3,
                outputs: BTreeMap::from([(
                    "domain".to_owned(),
                    Output::Scores {
                        probs: vec![0.25, 0.75],
                    },
                )]),
            }],
            timings: WireTimings::default(),
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        let back: ClassifyReply = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let same = back.items[0]
            .embedding
            .iter()
            .zip(&embedding)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "an f32 changed crossing the wire");
        assert_eq!(back, reply);
    }

    #[test]
    fn an_item_from_a_worker_without_windows_was_read_in_one() {
        let item = br#"{"embedding": [1.0], "tokens": 5, "truncated": false}"#;
        let item: EmbeddingItem = serde_json::from_slice(item).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(item.windows, 1);
    }

    #[test]
    fn the_version_is_readable_from_any_message() {
        let future = br#"{"v": 9, "texts": {"new": "shape"}}"#;
        let v: Versioned = serde_json::from_slice(future).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.v, 9);
        assert!(serde_json::from_slice::<ClassifyRequest>(future).is_err());
    }

    #[test]
    fn pool_names_are_single_subject_tokens() {
        assert!(valid_pool_name("minilm-cpu_2"));
        for bad in ["", "a.b", "a b", "a*", ">"] {
            assert!(!valid_pool_name(bad), "{bad:?}");
        }
        assert_eq!(classify_subject("gpu"), "routemesh.classify.gpu");
    }
}

/// Prefix of the subject outcome events are published on
/// (`routemesh.outcome.v1`); the stream captures `routemesh.outcome.>`.
pub const OUTCOME_SUBJECT_PREFIX: &str = "routemesh.outcome";

/// The subject of an outcome event.
pub fn outcome_subject() -> String {
    format!("{OUTCOME_SUBJECT_PREFIX}.v{WIRE_VERSION}")
}

/// Gateway → every gateway (through a JetStream stream): what a routed
/// request taught. Applied once per gateway, by `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEvent {
    /// Wire version ([`WIRE_VERSION`]).
    pub v: u16,
    /// Unique per event; the idempotency key (also the JetStream message id).
    pub id: String,
    pub decision: String,
    pub model: String,
    /// In [0, 1]; `None` when the event only reports usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<f64>,
    /// Completion tokens of the answer, when known: teaches the expected cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    /// Where it came from: `feedback`, `upstream_error`, `slo`, `usage`.
    pub source: String,
}

impl OutcomeEvent {
    pub fn new(
        decision: impl Into<String>,
        model: impl Into<String>,
        reward: Option<f64>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            v: WIRE_VERSION,
            id: uuid::Uuid::new_v4().simple().to_string(),
            decision: decision.into(),
            model: model.into(),
            reward,
            completion_tokens: None,
            source: source.into(),
        }
    }
}
