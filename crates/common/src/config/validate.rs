//! Phase two of config loading: raw structs in, a typed [`Config`] out, with
//! every error collected and tagged with its key path.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use regex::RegexBuilder;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::raw::RawAuth;
use super::raw::RawExtProc;
use super::raw::RawMetrics;
use super::raw::RawTracing;
use super::raw::{
    RawCache, RawClassifier, RawClassifierDef, RawDecision, RawDefault, RawEncoder, RawKeywordRule,
    RawLearning, RawModel, RawNats, RawRoute, RawRouter, RawServer, RawSignals, RawUpstream,
};
use super::{
    ClassifierConfig, ClassifierDef, Config, ConfigError, ConfigErrors, Hedge, KeywordRule,
    LabelRef, LearningConfig, LearningShare, ModelConfig, ModelCost, ModelId, NatsConfig,
    OnUnavailable, RouteConfig, RouterConfig, ServerConfig, ServerTimeouts, SignalsConfig,
    Transport, UpstreamConfig, UpstreamId,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
const DEFAULT_ROUTE_THRESHOLD: f32 = 0.5;
const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
/// Completion tokens a model is expected to write before outcomes say otherwise.
const DEFAULT_OUTPUT_TOKENS: u32 = 256;
const DEFAULT_OUTCOME_STREAM: &str = "ROUTEMESH_OUTCOMES";
const SECTIONS: &[&str] = &[
    "server",
    "classifier",
    "nats",
    "encoder",
    "upstreams",
    "models",
    "router",
    "signals",
    "decisions",
    "default",
    "learning",
    "cache",
    "metrics",
    "auth",
    "tracing",
    "ext_proc",
];
/// Names the gateway itself puts in `x-routemesh-decision`.
const RESERVED_DECISIONS: &[&str] = &["passthrough"];

/// Parses and validates a configuration file's text.
///
/// `base_dir` is the folder relative paths in the file are resolved against
/// (the file's own folder).
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut v = Validator::default();
    let root: Value = match serde_yaml_ng::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Mapping::new()),
        Ok(value) => value,
        Err(e) => return Err(v.fail("(file)", format!("not valid YAML: {e}"))),
    };
    let Value::Mapping(mut root) = root else {
        return Err(v.fail(
            "(file)",
            "the top level must be a mapping of sections".into(),
        ));
    };
    for key in root.keys() {
        match key.as_str() {
            Some(k) if SECTIONS.contains(&k) => {}
            _ => v.error(
                &key_name(key),
                format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            ),
        }
    }
    let mut take = |name: &str| root.remove(name);

    let server = v
        .section::<RawServer>(take("server"), "server")
        .unwrap_or_default();
    let classifier = v
        .section::<RawClassifier>(take("classifier"), "classifier")
        .unwrap_or_default();
    let nats = v.section::<RawNats>(take("nats"), "nats");
    let encoder = v.section::<RawEncoder>(take("encoder"), "encoder");
    let upstreams = v.list::<RawUpstream>(take("upstreams"), "upstreams");
    let models = v.list::<RawModel>(take("models"), "models");
    let router = v
        .section::<RawRouter>(take("router"), "router")
        .unwrap_or_default();
    let signals = v
        .section::<RawSignals>(take("signals"), "signals")
        .unwrap_or_default();
    let routes = v.items::<RawRoute>(signals.routes, "signals.routes");
    let keywords = v.items::<RawKeywordRule>(signals.keywords, "signals.keywords");
    let classifier_defs = v.items::<RawClassifierDef>(signals.classifiers, "signals.classifiers");
    let decisions = v.list::<RawDecision>(take("decisions"), "decisions");
    let default = v.section::<RawDefault>(take("default"), "default");
    let learning = v
        .section::<RawLearning>(take("learning"), "learning")
        .unwrap_or_default();
    let cache = v.section::<RawCache>(take("cache"), "cache");
    let metrics = v.section::<RawMetrics>(take("metrics"), "metrics");
    let auth = v.section::<RawAuth>(take("auth"), "auth");
    let tracing = v.section::<RawTracing>(take("tracing"), "tracing");
    let ext_proc = v.section::<RawExtProc>(take("ext_proc"), "ext_proc");

    let server = v.server(server);
    let learning = v.learning(learning, nats.as_ref(), base_dir);
    let cache = v.cache(cache, base_dir);
    let metrics = v.metrics(metrics, server.as_ref());
    let auth = v.auth(auth, base_dir);
    let tracing = v.tracing(tracing);
    let ext_proc = v.ext_proc(ext_proc, server.as_ref(), metrics.as_ref());
    let classifier = v.classifier(classifier, nats, base_dir, learning_uses_nats(&learning));
    let encoder = match classifier.as_ref().map(|c| &c.transport) {
        Some(Transport::Embedded) => v.encoder(encoder, base_dir).map(Some),
        Some(Transport::Nats { .. }) if encoder.is_some() => {
            v.error(
                "encoder",
                "only used with `classifier.transport: embedded`; the workers load the model"
                    .into(),
            );
            None
        }
        _ => Some(None),
    };
    let upstreams = v.upstreams(upstreams);
    let (models, model_index) = v.models(models, &upstreams);
    let router = v.router(router, &model_index, &models, &upstreams);
    let mut signals = v.signals(routes, keywords);
    signals.classifiers = v.classifier_defs(classifier_defs, base_dir);
    if let Some(Transport::Embedded) = classifier.as_ref().map(|c| &c.transport) {
        for (i, d) in signals.classifiers.iter().enumerate() {
            if d.pool.is_some() {
                v.error(
                    &format!("signals.classifiers[{i}].pool"),
                    "only with `classifier.transport: nats` (embedded runs every classifier in-process)".into(),
                );
            }
        }
    }
    let scope = Scope {
        models: &model_index,
        signals: &signals,
    };
    let decisions = v.decisions(decisions, &scope);
    let default = v.default_decision(default, &scope);
    if let Some(d) = &default
        && decisions.iter().any(|x| x.name == d.name)
    {
        v.error(
            "default.name",
            format!("`{}` is also the name of a decision", d.name),
        );
    }

    signals.label_refs = std::mem::take(&mut v.label_refs);
    match (v.errors.is_empty(), server, classifier, encoder, default) {
        (true, Some(server), Some(classifier), Some(encoder), Some(default)) => Ok(Config {
            server,
            classifier,
            encoder,
            upstreams,
            models,
            router,
            signals,
            decisions,
            default,
            learning,
            cache,
            metrics,
            auth,
            tracing,
            ext_proc,
            model_index,
        }),
        _ => {
            // The `nats:` section is checked for each of its users.
            let mut seen = HashSet::new();
            v.errors.retain(|e| seen.insert(e.clone()));
            Err(ConfigErrors(v.errors))
        }
    }
}

fn learning_uses_nats(l: &LearningConfig) -> bool {
    matches!(l.share, LearningShare::JetStream { .. })
}

/// A literal keyword as a regex matching it as a whole word: `\b` is added
/// on each side that starts or ends with a word character, so `rust` does not
/// match `trust` while `c++` still matches `c++`.
fn whole_word(literal: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let start = if word(literal.chars().next()) {
        "\\b"
    } else {
        ""
    };
    let end = if word(literal.chars().last()) {
        "\\b"
    } else {
        ""
    };
    format!("{start}{}{end}", regex::escape(literal))
}

fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// Names resolvable from a rule.
struct Scope<'a> {
    models: &'a HashMap<String, ModelId>,
    signals: &'a SignalsConfig,
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
    /// `label:` conditions seen, for the gateway to check against the files.
    label_refs: Vec<LabelRef>,
}

impl Validator {
    fn error(&mut self, path: &str, message: String) {
        self.errors.push(ConfigError {
            path: path.to_owned(),
            message,
        });
    }

    fn fail(mut self, path: &str, message: String) -> ConfigErrors {
        self.error(path, message);
        ConfigErrors(self.errors)
    }

    /// Deserializes one value, recording a type error with its full path.
    fn de<T: DeserializeOwned>(&mut self, value: Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." {
                    path.to_owned()
                } else if inner.starts_with('[') {
                    format!("{path}{inner}")
                } else {
                    format!("{path}.{inner}")
                };
                self.error(&full, e.into_inner().to_string());
                None
            }
        }
    }

    fn section<T: DeserializeOwned>(&mut self, value: Option<Value>, path: &str) -> Option<T> {
        match value {
            None | Some(Value::Null) => None,
            Some(value) => self.de(value, path),
        }
    }

    fn list<T: DeserializeOwned>(&mut self, value: Option<Value>, path: &str) -> Vec<(String, T)> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => self.items(items, path),
            Some(_) => {
                self.error(path, "expected a list".into());
                Vec::new()
            }
        }
    }

    /// Deserializes each item on its own, so one bad item hides nothing.
    fn items<T: DeserializeOwned>(&mut self, items: Vec<Value>, path: &str) -> Vec<(String, T)> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(t) = self.de(item, &p) {
                out.push((p, t));
            }
        }
        out
    }

    /// Records an error for a name already seen in `seen`.
    fn unique(&mut self, seen: &mut HashSet<String>, name: &str, path: &str) {
        if name.trim().is_empty() {
            self.error(&format!("{path}.name"), "must not be empty".into());
        } else if !seen.insert(name.to_owned()) {
            self.error(&format!("{path}.name"), format!("duplicate name `{name}`"));
        }
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerConfig> {
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    "server.listen",
                    format!("`{listen}` is not an IP:port address (e.g. 127.0.0.1:8080)"),
                );
                None
            }
        };
        let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body < 1024 {
            self.error(
                "server.max_body_bytes",
                format!("{max_body} is too small; use at least 1024"),
            );
        }
        let max_prompt_chars = self.max_prompt_chars(raw.max_prompt_chars);
        let max_connections = self.max_connections(raw.max_connections);
        let t = raw.timeouts.unwrap_or_default();
        let d = ServerTimeouts::default();
        let timeouts = ServerTimeouts {
            header_read: self
                .duration(t.header_read.as_deref(), "server.timeouts.header_read")
                .unwrap_or(d.header_read),
            body_read: self
                .duration(t.body_read.as_deref(), "server.timeouts.body_read")
                .unwrap_or(d.body_read),
            idle: self
                .duration(t.idle.as_deref(), "server.timeouts.idle")
                .unwrap_or(d.idle),
        };
        Some(ServerConfig {
            listen: listen?,
            max_body_bytes: usize::try_from(max_body).unwrap_or(usize::MAX),
            max_prompt_chars,
            max_connections,
            timeouts,
        })
    }

    /// `server.max_connections`: a number in 1..=1000000 or `auto`.
    fn max_connections(&mut self, raw: Option<Value>) -> Option<usize> {
        const KEY: &str = "server.max_connections";
        match raw {
            None => None,
            Some(Value::String(s)) if s == "auto" => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n @ 1..=1_000_000) => usize::try_from(n).ok(),
                _ => {
                    self.error(KEY, format!("{n} is out of range 1..=1000000"));
                    None
                }
            },
            Some(other) => {
                self.error(
                    KEY,
                    format!(
                        "`{}`: use a number of connections or `auto`",
                        serde_yaml_ng::to_string(&other).unwrap_or_default().trim()
                    ),
                );
                None
            }
        }
    }

    fn classifier(
        &mut self,
        raw: RawClassifier,
        nats: Option<RawNats>,
        base_dir: &Path,
        nats_used_elsewhere: bool,
    ) -> Option<ClassifierConfig> {
        let deadline = self.duration(raw.deadline.as_deref(), "classifier.deadline");
        let on_unavailable = match raw.on_unavailable.as_deref() {
            None | Some("degrade") => Some(OnUnavailable::Degrade),
            Some("reject") => Some(OnUnavailable::Reject),
            Some(other) => {
                // Recorded; parsing fails. Keep going so `encoder` is checked too.
                self.error(
                    "classifier.on_unavailable",
                    format!("`{other}`: use degrade or reject"),
                );
                Some(OnUnavailable::Degrade)
            }
        };
        let transport = match raw.transport.as_deref() {
            None | Some("embedded") => {
                if raw.pool.is_some() {
                    self.error("classifier.pool", "only used with `transport: nats`".into());
                }
                if raw.hedge.is_some() {
                    self.error(
                        "classifier.hedge",
                        "only used with `transport: nats`".into(),
                    );
                }
                if nats.is_some() && !nats_used_elsewhere {
                    self.error(
                        "nats",
                        "only used with `classifier.transport: nats` or `learning.share: jetstream`"
                            .into(),
                    );
                }
                Some(Transport::Embedded)
            }
            Some("nats") => {
                let pool = raw.pool.unwrap_or_else(|| "minilm".to_owned());
                if !crate::wire::valid_pool_name(&pool) {
                    self.error(
                        "classifier.pool",
                        format!("`{pool}`: use letters, digits, `-` and `_`"),
                    );
                }
                let nats = self.nats(nats.unwrap_or_default(), base_dir);
                Some(Transport::Nats { pool, nats })
            }
            Some(other) => {
                self.error(
                    "classifier.transport",
                    format!("`{other}`: use embedded or nats"),
                );
                None
            }
        };
        let deadline = deadline.unwrap_or(DEFAULT_DEADLINE);
        let hedge = self.hedge(raw.hedge, deadline);
        Some(ClassifierConfig {
            transport: transport?,
            deadline,
            on_unavailable: on_unavailable?,
            hedge,
        })
    }

    /// `classifier.hedge`: `auto`, `off` or a duration (shorthand for
    /// `after`), or `{ after, budget }`.
    fn hedge(&mut self, raw: Option<Value>, deadline: Duration) -> Hedge {
        const KEY: &str = "classifier.hedge";
        let mut hedge = Hedge::default();
        let (after, budget, key) = match raw {
            None => return hedge,
            Some(Value::Mapping(map)) => {
                let (mut after, mut budget) = (None, None);
                for (k, v) in map {
                    match k.as_str() {
                        Some("after") => after = Some(v),
                        Some("budget") => budget = Some(v),
                        _ => self.error(
                            &format!("{KEY}.{}", key_name(&k)),
                            "unknown key: use after and budget".into(),
                        ),
                    }
                }
                (after, budget, "classifier.hedge.after")
            }
            Some(shorthand) => (Some(shorthand), None, KEY),
        };
        let yaml = |v: &Value| {
            serde_yaml_ng::to_string(v)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        if let Some(after) = after {
            hedge.after = match after.as_str() {
                Some("auto") => super::HedgeAfter::Auto,
                Some("off") => super::HedgeAfter::Off,
                Some(text) => match self.duration(Some(text), key) {
                    Some(d) if d >= deadline => {
                        self.error(
                            key,
                            format!(
                                "`{text}` is not shorter than classifier.deadline ({}): \
                                 use a shorter delay, auto or off",
                                humantime::format_duration(deadline)
                            ),
                        );
                        super::HedgeAfter::Auto
                    }
                    Some(d) => super::HedgeAfter::Fixed(d),
                    None => super::HedgeAfter::Auto,
                },
                None => {
                    self.error(
                        key,
                        format!("`{}`: use auto, off or a duration like 300ms", yaml(&after)),
                    );
                    super::HedgeAfter::Auto
                }
            };
        }
        if let Some(budget) = budget {
            let percent = budget
                .as_str()
                .and_then(|t| t.trim().strip_suffix('%'))
                .and_then(|n| n.trim().parse::<u8>().ok())
                .filter(|n| (1..=100).contains(n));
            match percent {
                Some(n) => hedge.budget_percent = n,
                None => self.error(
                    "classifier.hedge.budget",
                    format!(
                        "`{}`: use a percentage of requests from 1% to 100%, like 10% \
                         (`after: off` turns hedging off)",
                        yaml(&budget)
                    ),
                ),
            }
        }
        hedge
    }

    fn nats(&mut self, raw: RawNats, base_dir: &Path) -> NatsConfig {
        let url = raw
            .url
            .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        let schemes = ["nats://", "tls://", "ws://", "wss://"];
        for (i, u) in url.split(',').enumerate() {
            let u = u.trim();
            if !schemes.iter().any(|s| u.starts_with(s)) || u.len() <= 6 {
                let path = if url.contains(',') {
                    format!("nats.url[{i}]")
                } else {
                    "nats.url".to_owned()
                };
                self.error(
                    &path,
                    format!("`{u}` is not a nats://, tls://, ws:// or wss:// URL"),
                );
            }
        }
        let tls = raw.tls.unwrap_or_default();
        let client = match (tls.cert_file, tls.key_file) {
            (Some(c), Some(k)) => Some((base_dir.join(c), base_dir.join(k))),
            (None, None) => None,
            _ => {
                self.error("nats.tls", "cert_file and key_file go together".into());
                None
            }
        };
        NatsConfig {
            url,
            credentials_file: raw.credentials_file.map(|f| base_dir.join(f)),
            tls_ca_file: tls.ca_file.map(|f| base_dir.join(f)),
            tls_client_cert: client,
            require_tls: tls.required,
        }
    }

    fn learning(
        &mut self,
        raw: RawLearning,
        nats: Option<&RawNats>,
        base_dir: &Path,
    ) -> LearningConfig {
        let d = LearningConfig::default();
        let cost_weight = raw.cost_weight.unwrap_or(d.cost_weight);
        self.cost_weight(cost_weight, "learning.cost_weight");
        let discount = raw.discount.unwrap_or(d.discount);
        if !(discount > 0.0 && discount <= 1.0) {
            self.error(
                "learning.discount",
                format!("{discount} is not in (0, 1]; 1 keeps all evidence, 0.999 forgets slowly"),
            );
        }
        let store = match raw.store {
            Some(s) if s.trim().is_empty() => {
                self.error(
                    "learning.store",
                    "give a folder, or leave the key out to keep posteriors in memory".into(),
                );
                None
            }
            s => s.map(|s| base_dir.join(s)),
        };
        let stream_set = raw.stream.is_some();
        let stream = raw
            .stream
            .unwrap_or_else(|| DEFAULT_OUTCOME_STREAM.to_owned());
        let share = match raw.share.as_deref() {
            None | Some("local") => {
                if stream_set {
                    self.error(
                        "learning.stream",
                        "only used with `share: jetstream`".into(),
                    );
                }
                LearningShare::Local
            }
            Some("jetstream") => {
                let valid = !stream.is_empty()
                    && stream
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    self.error(
                        "learning.stream",
                        format!(
                            "`{stream}`: a JetStream stream name uses letters, digits, `-` and `_`"
                        ),
                    );
                }
                let nats = match nats {
                    Some(raw) => self.nats(raw.clone(), base_dir),
                    None => NatsConfig::plain("nats://127.0.0.1:4222"),
                };
                LearningShare::JetStream { stream, nats }
            }
            Some(other) => {
                self.error(
                    "learning.share",
                    format!("`{other}`: use local (this gateway only) or jetstream (every gateway, through NATS)"),
                );
                LearningShare::Local
            }
        };
        let remember = raw.remember.unwrap_or_default();
        let remember_requests = remember.requests.unwrap_or(d.remember_requests as u64);
        if !(1..=10_000_000).contains(&remember_requests) {
            self.error(
                "learning.remember.requests",
                format!("{remember_requests} is out of range 1..=10000000"),
            );
        }
        let remember_for = self
            .duration(remember.for_.as_deref(), "learning.remember.for")
            .unwrap_or(d.remember_for);
        LearningConfig {
            cost_weight,
            discount,
            store,
            share,
            remember_requests: usize::try_from(remember_requests).unwrap_or(usize::MAX),
            remember_for,
        }
    }

    fn duration(&mut self, text: Option<&str>, path: &str) -> Option<Duration> {
        let text = text?;
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(path, "must be longer than zero".into());
                None
            }
            Err(e) => {
                self.error(
                    path,
                    format!("`{text}` is not a duration like 250ms or 30s: {e}"),
                );
                None
            }
        }
    }

    fn models(
        &mut self,
        raw: Vec<(String, RawModel)>,
        upstreams: &[UpstreamConfig],
    ) -> (Vec<ModelConfig>, HashMap<String, ModelId>) {
        let mut seen = HashSet::new();
        let mut models = Vec::new();
        let mut index = HashMap::new();
        for (path, m) in raw {
            self.unique(&mut seen, &m.name, &path);
            let Some(up) = upstreams.iter().position(|u| u.name == m.upstream) else {
                let known: Vec<_> = upstreams.iter().map(|u| u.name.as_str()).collect();
                self.error(
                    &format!("{path}.upstream"),
                    format!(
                        "no upstream named `{}` (known: {})",
                        m.upstream,
                        known.join(", ")
                    ),
                );
                continue;
            };
            let cost = m.cost.and_then(|c| {
                let ok = |x: f64| x.is_finite() && x >= 0.0;
                if !ok(c.input_per_mtok) || !ok(c.output_per_mtok) {
                    self.error(
                        &format!("{path}.cost"),
                        "prices must be numbers ≥ 0 (USD per million tokens)".into(),
                    );
                    return None;
                }
                Some(ModelCost {
                    input_per_mtok: c.input_per_mtok,
                    output_per_mtok: c.output_per_mtok,
                    output_tokens: c.output_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS),
                })
            });
            index.insert(m.name.clone(), ModelId(models.len()));
            models.push(ModelConfig {
                upstream_model: m.upstream_model.unwrap_or_else(|| m.name.clone()),
                name: m.name,
                upstream: UpstreamId(up),
                cost,
            });
        }
        (models, index)
    }

    fn router(
        &mut self,
        raw: RawRouter,
        models: &HashMap<String, ModelId>,
        configs: &[ModelConfig],
        upstreams: &[UpstreamConfig],
    ) -> RouterConfig {
        let aliases = raw.aliases.unwrap_or_else(|| vec!["auto".to_owned()]);
        if aliases.is_empty() {
            self.error(
                "router.aliases",
                "needs at least one alias (e.g. auto)".into(),
            );
        }
        for (i, a) in aliases.iter().enumerate() {
            if models.contains_key(a) {
                self.error(
                    &format!("router.aliases[{i}]"),
                    format!("`{a}` is also a model name; an alias must not shadow a model"),
                );
            }
        }
        let mut passthrough = |key: &str, name: Option<String>| {
            let name = name?;
            let path = format!("router.{key}");
            let Some(&id) = models.get(&name) else {
                self.error(&path, format!("`{name}` is not a configured model"));
                return None;
            };
            let up = &upstreams[configs[id.0].upstream.0];
            if up.api == super::UpstreamApi::Anthropic {
                self.error(
                    &path,
                    format!(
                        "`{name}` is served by `{}`, an Anthropic upstream, which has no /{key} endpoint",
                        up.name
                    ),
                );
                return None;
            }
            Some(id)
        };
        let embeddings = passthrough("embeddings", raw.embeddings);
        let completions = passthrough("completions", raw.completions);
        RouterConfig {
            aliases,
            embeddings,
            completions,
        }
    }

    fn signals(
        &mut self,
        routes: Vec<(String, RawRoute)>,
        keywords: Vec<(String, RawKeywordRule)>,
    ) -> SignalsConfig {
        let mut seen = HashSet::new();
        let mut out = SignalsConfig::default();
        for (path, r) in routes {
            self.unique(&mut seen, &r.name, &path);
            let threshold = r.threshold.unwrap_or(DEFAULT_ROUTE_THRESHOLD);
            if !(-1.0..=1.0).contains(&threshold) {
                self.error(
                    &format!("{path}.threshold"),
                    format!("{threshold} is not in [-1, 1]"),
                );
            }
            if r.examples.iter().all(|e| e.trim().is_empty()) {
                self.error(
                    &format!("{path}.examples"),
                    "needs at least one example".into(),
                );
            }
            out.routes.push(RouteConfig {
                name: r.name,
                threshold,
                examples: r.examples,
            });
        }
        let mut seen = HashSet::new();
        for (path, k) in keywords {
            self.unique(&mut seen, &k.name, &path);
            if let Some(matcher) = self.keyword_matcher(&k, &path) {
                out.keywords.push(KeywordRule {
                    name: k.name,
                    matcher,
                });
            }
        }
        out
    }

    fn classifier_defs(
        &mut self,
        raw: Vec<(String, RawClassifierDef)>,
        base_dir: &Path,
    ) -> Vec<ClassifierDef> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (path, c) in raw {
            self.unique(&mut seen, &c.name, &path);
            if !crate::wire::valid_pool_name(&c.name) {
                self.error(
                    &format!("{path}.name"),
                    format!("`{}`: use letters, digits, `-` and `_`", c.name),
                );
            }
            if c.path.trim().is_empty() {
                self.error(
                    &format!("{path}.path"),
                    "the classifier's folder is required".into(),
                );
            }
            if let Some(pool) = &c.pool
                && !crate::wire::valid_pool_name(pool)
            {
                self.error(
                    &format!("{path}.pool"),
                    format!("`{pool}`: use letters, digits, `-` and `_`"),
                );
            }
            out.push(ClassifierDef {
                name: c.name,
                path: base_dir.join(c.path),
                pool: c.pool,
            });
        }
        out
    }

    fn keyword_matcher(&mut self, k: &RawKeywordRule, path: &str) -> Option<regex::Regex> {
        if k.patterns.is_empty() {
            self.error(
                &format!("{path}.patterns"),
                "needs at least one pattern".into(),
            );
            return None;
        }
        let mut parts = Vec::with_capacity(k.patterns.len());
        let mut ok = true;
        for (i, p) in k.patterns.iter().enumerate() {
            let p_path = format!("{path}.patterns[{i}]");
            if p.is_empty() {
                self.error(&p_path, "an empty pattern matches every prompt".into());
                ok = false;
            } else if !k.regex {
                parts.push(whole_word(p));
            } else if let Err(e) = RegexBuilder::new(p).build() {
                self.error(&p_path, format!("invalid regex: {e}"));
                ok = false;
            } else {
                parts.push(p.clone());
            }
        }
        let joined = parts
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        match RegexBuilder::new(&joined).case_insensitive(true).build() {
            Ok(re) if ok => Some(re),
            Ok(_) => None,
            Err(e) => {
                self.error(
                    &format!("{path}.patterns"),
                    format!("patterns too large: {e}"),
                );
                None
            }
        }
    }
}

mod auth;
mod cache;
mod decisions;
mod encoder;
mod ext_proc;
mod metrics;
mod tracing;
mod upstreams;

#[cfg(test)]
mod tests;
