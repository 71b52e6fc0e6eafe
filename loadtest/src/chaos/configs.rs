//! The gateway configs the scenarios run with, written as YAML (docs/config.md has every key):
//! two models on FAKE upstreams behind the `auto` alias, a Thompson-sampled default decision over
//! both (so feedback and failures teach something observable in `GET /admin/learning`), and
//! whatever the scenario adds (classifier transport, stores, cache, auth, timeouts).

use std::fmt::Write as _;
use std::path::Path;

/// The model names every scenario's config serves.
pub const MODEL_A: &str = "model-a";
pub const MODEL_B: &str = "model-b";
/// The default decision's name.
pub const DECISION: &str = "general";

/// Where the gateway embeds prompts.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// In process, with the real MiniLM.
    Embedded { model_dir: String },
    /// A pool of classifier workers over NATS.
    Nats {
        pool: String,
        deadline: String,
        on_unavailable: String,
    },
}

/// One upstream (one FAKE server).
#[derive(Debug, Clone)]
pub struct UpstreamCfg {
    pub name: String,
    /// `http://127.0.0.1:PORT` (the config adds `/v1`).
    pub base: String,
    pub first_byte: String,
    pub total: String,
    pub retries: u32,
    pub breaker_failures: u32,
}

impl UpstreamCfg {
    pub fn new(name: &str, base: &str) -> Self {
        Self {
            name: name.to_owned(),
            base: base.to_owned(),
            first_byte: "10s".to_owned(),
            total: "30s".to_owned(),
            retries: 2,
            breaker_failures: 5,
        }
    }
}

/// A candidate of the default decision, with its prior.
#[derive(Debug, Clone)]
pub struct CandidateCfg {
    pub model: String,
    pub upstream: String,
    pub prior: (f64, f64),
}

/// A whole gateway config.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub classifier: Classifier,
    /// Needed with a NATS classifier or JetStream learning.
    pub nats_url: Option<String>,
    pub max_body_bytes: u64,
    pub max_prompt_chars: Option<u64>,
    pub upstreams: Vec<UpstreamCfg>,
    pub candidates: Vec<CandidateCfg>,
    /// Extra items of `decisions:` (YAML flow maps), e.g. a block rule.
    pub decisions: Vec<String>,
    /// The `signals:` section's body (YAML flow map), if any.
    pub signals: Option<String>,
    /// The `learning:` section (YAML flow map).
    pub learning: Option<String>,
    /// The `cache:` section (YAML flow map).
    pub cache: Option<String>,
    /// The default decision's `cache:` policy (`exact`, `semantic`, `off`), if not the default.
    pub default_cache: Option<String>,
    /// The `auth:` section (YAML flow map).
    pub auth: Option<String>,
}

impl GatewayConfig {
    /// Two fakes, `model-a` on `a` and `model-b` on `b`, Thompson-sampled with flat priors.
    pub fn two_models(classifier: Classifier, a: UpstreamCfg, b: UpstreamCfg) -> Self {
        let candidates = vec![
            CandidateCfg {
                model: MODEL_A.to_owned(),
                upstream: a.name.clone(),
                prior: (1.0, 1.0),
            },
            CandidateCfg {
                model: MODEL_B.to_owned(),
                upstream: b.name.clone(),
                prior: (1.0, 1.0),
            },
        ];
        Self {
            classifier,
            nats_url: None,
            max_body_bytes: 1_048_576,
            max_prompt_chars: None,
            upstreams: vec![a, b],
            candidates,
            decisions: Vec::new(),
            signals: None,
            learning: None,
            cache: None,
            default_cache: None,
            auth: None,
        }
    }

    pub fn yaml(&self) -> String {
        let mut y = String::new();
        let _ = self.write(&mut y);
        y
    }

    fn write(&self, y: &mut String) -> std::fmt::Result {
        writeln!(
            y,
            "# written by the chaos suite (loadtest/src/chaos/configs.rs)"
        )?;
        write!(
            y,
            "server: {{ listen: 127.0.0.1:0, max_body_bytes: {}",
            self.max_body_bytes
        )?;
        if let Some(n) = self.max_prompt_chars {
            write!(y, ", max_prompt_chars: {n}")?;
        }
        writeln!(y, " }}")?;
        match &self.classifier {
            Classifier::Embedded { model_dir } => {
                writeln!(
                    y,
                    "encoder: {{ model_dir: {}, max_tokens: 128 }}",
                    quote(model_dir)
                )?;
            }
            Classifier::Nats {
                pool,
                deadline,
                on_unavailable,
            } => {
                writeln!(
                    y,
                    "classifier: {{ transport: nats, pool: {pool}, deadline: {deadline}, on_unavailable: {on_unavailable} }}"
                )?;
            }
        }
        if let Some(url) = &self.nats_url {
            writeln!(y, "nats: {{ url: {} }}", quote(url))?;
        }
        writeln!(y, "upstreams:")?;
        for u in &self.upstreams {
            writeln!(
                y,
                "  - {{ name: {}, base_url: {}, timeouts: {{ connect: 1s, first_byte: {}, total: {} }}, retries: {{ attempts: {}, backoff: 20ms, max_backoff: 100ms }}, breaker: {{ failures: {}, open_for: 2s }} }}",
                u.name,
                quote(&format!("{}/v1", u.base)),
                u.first_byte,
                u.total,
                u.retries,
                u.breaker_failures
            )?;
        }
        writeln!(y, "models:")?;
        for c in &self.candidates {
            writeln!(y, "  - {{ name: {}, upstream: {} }}", c.model, c.upstream)?;
        }
        writeln!(y, "router: {{ aliases: [auto] }}")?;
        if let Some(s) = &self.signals {
            writeln!(y, "signals: {s}")?;
        }
        if !self.decisions.is_empty() {
            writeln!(y, "decisions:")?;
            for d in &self.decisions {
                writeln!(y, "  - {d}")?;
            }
        }
        let models: Vec<String> = self
            .candidates
            .iter()
            .map(|c| {
                format!(
                    "{{ model: {}, prior: {{ alpha: {}, beta: {} }} }}",
                    c.model, c.prior.0, c.prior.1
                )
            })
            .collect();
        let cache = self
            .default_cache
            .as_ref()
            .map(|c| format!(", cache: {c}"))
            .unwrap_or_default();
        writeln!(
            y,
            "default: {{ name: {DECISION}, models: [{}], selection: thompson{cache} }}",
            models.join(", ")
        )?;
        if let Some(l) = &self.learning {
            writeln!(y, "learning: {l}")?;
        }
        if let Some(c) = &self.cache {
            writeln!(y, "cache: {c}")?;
        }
        if let Some(a) = &self.auth {
            writeln!(y, "auth: {a}")?;
        }
        Ok(())
    }

    /// Writes the config to `path`.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.yaml())
    }
}

/// A YAML double-quoted string.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_names_both_models_in_the_default_decision() {
        let cfg = GatewayConfig::two_models(
            Classifier::Embedded {
                model_dir: "/m".into(),
            },
            UpstreamCfg::new("a", "http://127.0.0.1:1"),
            UpstreamCfg::new("b", "http://127.0.0.1:2"),
        );
        let y = cfg.yaml();
        assert!(y.contains("base_url: \"http://127.0.0.1:1/v1\""));
        assert!(y.contains("models: [{ model: model-a, prior: { alpha: 1, beta: 1 } }"));
    }
}
