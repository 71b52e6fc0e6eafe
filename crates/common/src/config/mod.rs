//! Configuration: the YAML file, parsed in two phases.
//!
//! Phase one deserializes the text into the raw structs of [`raw`], one
//! section and one list item at a time; phase two ([`validate`]) checks
//! meaning (names that must exist, ranges, regexes) and builds [`Config`].
//! Every problem found in either phase is reported, each with its key path,
//! in one [`ConfigErrors`].

mod encoder;
mod raw;
mod upstream;
mod validate;
mod warnings;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use crate::rules::Expr;
// Defined beside the other signal ids, which the rule tree names too, so
// that `rules` never depends on `config`; re-exported where it always was.
pub use crate::signals::ClassifierId;
use crate::signals::PiiKind;

pub use encoder::{
    DEFAULT_MAX_TOTAL_TOKENS, EncoderConfig, EncoderPrecision, MAX_TOTAL_TOKENS, UnknownPrecision,
};
pub use upstream::{
    BreakerConfig, RetryPolicy, UpstreamApi, UpstreamConfig, UpstreamEndpoint, UpstreamFamily,
    UpstreamTimeouts,
};
pub use validate::parse;

/// The validated configuration of a gateway.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Where prompts are embedded.
    pub classifier: ClassifierConfig,
    /// The in-process encoder; present exactly when the transport is embedded.
    pub encoder: Option<EncoderConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub models: Vec<ModelConfig>,
    pub router: RouterConfig,
    pub signals: SignalsConfig,
    /// Sorted by priority, highest first; ties keep file order.
    pub decisions: Vec<DecisionConfig>,
    /// Taken when no decision matches.
    pub default: DefaultDecision,
    pub learning: LearningConfig,
    pub cache: CacheConfig,
    /// The Prometheus listener; `None` (no `metrics:` section): no exporter.
    pub metrics: Option<MetricsConfig>,
    /// API keys and the admin token; `None` (no `auth:` section): the API
    /// and the admin endpoints are open.
    pub auth: Option<AuthConfig>,
    /// Trace export; the default (no `tracing:` section) exports nothing.
    pub tracing: TracingConfig,
    /// The Envoy external-processor (gRPC) listener; `None` (no `ext_proc:`
    /// section): the gateway serves its HTTP API only.
    pub ext_proc: Option<ExtProcConfig>,
    model_index: HashMap<String, ModelId>,
}

impl Config {
    /// The configured model with this client-facing name.
    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.model_index.get(name).copied()
    }

    pub fn model(&self, id: ModelId) -> &ModelConfig {
        &self.models[id.0]
    }

    pub fn upstream(&self, id: UpstreamId) -> &UpstreamConfig {
        &self.upstreams[id.0]
    }

    /// The route action of the decision named `name` (the default included);
    /// `None` for a blocking or unknown decision.
    pub fn route_action(&self, name: &str) -> Option<&RouteAction> {
        if self.default.name == name {
            return Some(&self.default.action);
        }
        self.decisions
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| match &d.action {
                DecisionAction::Route(a) => Some(a),
                DecisionAction::Block { .. } => None,
            })
    }

    /// Every routing decision's name and action, the default's last.
    pub fn route_actions(&self) -> impl Iterator<Item = (&str, &RouteAction)> {
        self.decisions
            .iter()
            .filter_map(|d| match &d.action {
                DecisionAction::Route(a) => Some((d.name.as_str(), a)),
                DecisionAction::Block { .. } => None,
            })
            .chain(std::iter::once((
                self.default.name.as_str(),
                &self.default.action,
            )))
    }

    /// The cache policy of the routing decision named `name` (the default
    /// included); `None` for a blocking or unknown decision. Passthrough
    /// requests follow [`CacheConfig::passthrough`] instead.
    pub fn cache_policy(&self, name: &str) -> Option<CachePolicy> {
        self.route_action(name).map(|a| a.cache)
    }

    /// Whether `name` is a router alias (`auto`).
    pub fn is_alias(&self, name: &str) -> bool {
        self.router.aliases.iter().any(|a| a == name)
    }
}

/// `server:` — the HTTP listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// A longer prompt (last user message, in characters) is refused with
    /// 400 `context_length_exceeded`; `None`: only the body limit applies.
    pub max_prompt_chars: Option<usize>,
    /// Most client connections held open at once; `None`: `auto`, derived
    /// at start from the process's open-file limit.
    pub max_connections: Option<usize>,
    pub timeouts: ServerTimeouts,
}

/// `server.timeouts:` — how long a client may take. A connection that
/// misses one is closed (a body that misses `body_read` gets a 408 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// From a request's first byte until its whole head (request line and
    /// headers) has arrived.
    pub header_read: Duration,
    /// From the end of the head until the whole body has arrived.
    pub body_read: Duration,
    /// How long a connection may wait for its next request with nothing in
    /// flight (a new connection, for its first byte).
    pub idle: Duration,
}

impl Default for ServerTimeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// `auth:` — where the API keys and the admin token come from. Only names
/// and paths: the secrets are read by the gateway at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Environment variable holding `tenant:key,tenant:key`.
    pub keys_env: Option<String>,
    /// File of `tenant key` lines (`#` comments); at least one of the two
    /// sources is set.
    pub keys_file: Option<PathBuf>,
    /// Environment variable holding the admin token; `None`: the admin
    /// endpoints are refused.
    pub admin_token_env: Option<String>,
}

/// `classifier:` — where prompts are embedded and what happens when that fails.
#[derive(Debug, Clone)]
pub struct ClassifierConfig {
    pub transport: Transport,
    /// Longest wait for the embedding of one prompt.
    pub deadline: Duration,
    pub on_unavailable: OnUnavailable,
    /// When a NATS classify request is sent again to another worker.
    pub hedge: Hedge,
}

/// `classifier.hedge`: sending a classify request again, to another worker
/// of the pool, when the first has not answered (a worker killed while
/// holding it never will).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    /// When an unanswered request is sent again.
    pub after: HedgeAfter,
    /// Most hedges as a percentage of requests, in the long run (1..=100);
    /// that share of 1,000 requests (at least ten) can be saved up for a
    /// burst, such as a killed worker's held requests.
    pub budget_percent: u8,
}

impl Default for Hedge {
    fn default() -> Self {
        Self {
            after: HedgeAfter::Auto,
            budget_percent: 10,
        }
    }
}

/// `classifier.hedge.after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HedgeAfter {
    /// After twice the pool's recent p95 latency (at least 50 ms, at most
    /// half the deadline).
    #[default]
    Auto,
    /// After this long (shorter than the deadline).
    Fixed(Duration),
    /// Never: nothing is sent again, not even after a 503.
    Off,
}

/// Where prompts are embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// In this process (the `encoder:` section).
    Embedded,
    /// By a worker pool over NATS.
    Nats { pool: String, nats: NatsConfig },
}

/// What a routed request does when its prompt cannot be embedded in time
/// (no worker answers, an error, a full queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Route without embedding signals (keywords still count); the response
    /// says so in `x-routemesh-degraded`.
    Degrade,
    /// Refuse the request with 503.
    Reject,
}

/// Index into [`Config::upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub usize);

/// Index into [`Config::models`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(pub usize);

/// A model clients can name, served by one upstream.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub upstream: UpstreamId,
    /// The name sent upstream in `model` (defaults to `name`).
    pub upstream_model: String,
    /// Prices, for cost-aware selection; `None` counts as free.
    pub cost: Option<ModelCost>,
}

/// What a model costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
    /// Completion tokens expected before any outcome has been seen.
    pub output_tokens: u32,
}

impl ModelCost {
    /// Expected USD per 1000 requests of `prompt_tokens` in and
    /// `output_tokens` out: the unit the cost weight λ multiplies.
    pub fn per_1k(&self, prompt_tokens: f64, output_tokens: f64) -> f64 {
        (prompt_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e3
    }
}

/// `learning:` — how outcomes teach Thompson-sampled decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct LearningConfig {
    /// λ: how much sampled quality one USD per 1k requests is worth.
    pub cost_weight: f64,
    /// Factor in (0, 1] applied to an arm's evidence at each update, so
    /// old outcomes fade (1 keeps everything).
    pub discount: f64,
    /// sled folder for posteriors; `None` keeps them in memory only.
    pub store: Option<PathBuf>,
    /// Whether outcomes are shared with other gateways.
    pub share: LearningShare,
    /// Most routed requests remembered for feedback.
    pub remember_requests: usize,
    /// How long a routed request can receive feedback.
    pub remember_for: Duration,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            cost_weight: 0.0,
            discount: 1.0,
            store: None,
            share: LearningShare::Local,
            remember_requests: 100_000,
            remember_for: Duration::from_secs(3600),
        }
    }
}

/// Where outcomes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearningShare {
    /// Applied in this process only.
    Local,
    /// Published to a JetStream stream; every gateway applies every event.
    JetStream { stream: String, nats: NatsConfig },
}

/// `metrics:` — Prometheus exposition on a listener of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served (port 0: any free port).
    pub listen: SocketAddr,
}

/// `ext_proc:` — the gateway as an Envoy external processor
/// (`envoy.service.ext_proc.v3.ExternalProcessor`, gRPC), beside its HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtProcConfig {
    /// Where the gRPC service listens (port 0: any free port).
    pub listen: SocketAddr,
}

/// `tracing:` — where the gateway's spans go besides its log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingConfig {
    /// OpenTelemetry export; `None`: spans only shape the log lines.
    pub otlp: Option<OtlpConfig>,
}

/// `tracing.otlp:` — OpenTelemetry export of the request spans over
/// OTLP/HTTP (protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The collector's traces URL, sent to as is
    /// (`http://127.0.0.1:4318/v1/traces`).
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Share of requests whose trace is exported, in (0, 1].
    pub sample_ratio: f64,
}

/// `cache:` — the semantic cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// `false` when the section is absent; `true` when it is present and
    /// does not say otherwise.
    pub enabled: bool,
    /// Independent shards, each with its own index; 1..=256.
    pub shards: usize,
    /// Most live entries per shard; the least recently used go first.
    pub capacity: usize,
    /// Larger responses are not stored.
    pub max_entry_bytes: usize,
    /// How long an entry may be served after it was stored.
    pub ttl: Duration,
    /// Least cosine similarity of a semantic hit, in (0, 1]; a decision
    /// may set its own.
    pub threshold: f32,
    /// Longest wait for a lookup; a slower answer counts as a miss.
    pub deadline: Duration,
    /// sled folder for the entries; `None` keeps them in memory only.
    pub store: Option<PathBuf>,
    /// In (0, 1): the share of a shard's index that may be stale (evicted or
    /// expired entries still in the graph) before the index is rebuilt.
    pub rebuild_fraction: f64,
    pub index: CacheIndex,
    /// Policy for requests that name a model (no embedding exists for
    /// them): [`CacheMode::Off`] or [`CacheMode::Exact`], never semantic.
    pub passthrough: CacheMode,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            shards: 4,
            capacity: 10_000,
            max_entry_bytes: 1 << 20,
            ttl: Duration::from_secs(3600),
            threshold: 0.95,
            deadline: Duration::from_millis(10),
            store: None,
            rebuild_fraction: 0.25,
            index: CacheIndex::default(),
            passthrough: CacheMode::Exact,
        }
    }
}

/// `cache.index:` — the HNSW index of each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheIndex {
    /// Links per node (HNSW `M`); 2..=256.
    pub m: usize,
    /// Candidates kept while inserting (`efConstruction`).
    pub ef_construction: usize,
    /// Candidates kept while searching (`ef`); higher finds more, slower.
    pub ef_search: usize,
    /// A scope with at most this many live entries is searched by its flat
    /// index alone (sign-bit codes, the nearest rescored exactly); a bigger
    /// one also enters the shard's HNSW graph.
    pub flat_below: usize,
    /// Candidates of a flat search whose exact similarity is computed.
    pub rerank: usize,
}

impl Default for CacheIndex {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
            flat_below: 10_000_000,
            rerank: 128,
        }
    }
}

/// Which cache tiers a request may be answered from (and stored in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Neither read nor written.
    Off,
    /// Same tenant, decision, model and context, and an identical last user
    /// message.
    Exact,
    /// The exact tier, then a last user message whose embedding is at least
    /// the threshold similar, within the same scope.
    Semantic,
}

impl CacheMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Exact => "exact",
            Self::Semantic => "semantic",
        }
    }
}

/// The cache policy of a routing decision (`cache:` on a decision or the
/// default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CachePolicy {
    pub mode: CacheMode,
    /// Similarity a semantic hit needs; `None` takes `cache.threshold`.
    /// Only with [`CacheMode::Semantic`].
    pub threshold: Option<f32>,
    /// How long this decision's answers are served; `None` takes `cache.ttl`.
    pub ttl: Option<Duration>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            mode: CacheMode::Semantic,
            threshold: None,
            ttl: None,
        }
    }
}

/// How to reach NATS (gateway `nats:` section; worker command-line flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://…`.
    pub url: String,
    /// A `.creds` file (JWT + NKey seed) for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    /// CA certificate(s) to trust, PEM; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS, PEM.
    pub tls_client_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection that is not TLS.
    pub require_tls: bool,
}

impl NatsConfig {
    /// Plain connection to `url`, no credentials, no TLS requirements.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials_file: None,
            tls_ca_file: None,
            tls_client_cert: None,
            require_tls: false,
        }
    }
}

/// `router:`
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Model names that are routed rather than passed through.
    pub aliases: Vec<String>,
    /// The model an alias means on `POST /v1/embeddings` (none: an alias
    /// there is a 400).
    pub embeddings: Option<ModelId>,
    /// The model an alias means on `POST /v1/completions`.
    pub completions: Option<ModelId>,
}

/// `signals:` — what the classifier computes.
#[derive(Debug, Clone, Default)]
pub struct SignalsConfig {
    pub routes: Vec<RouteConfig>,
    pub keywords: Vec<KeywordRule>,
    /// Trained heads and HF classifiers, run by the classifier with the encoder.
    pub classifiers: Vec<ClassifierDef>,
    /// Every `label:` condition, with its key path, so that the labels can
    /// be checked against the classifiers' files when those are read.
    pub label_refs: Vec<LabelRef>,
}

/// A classifier run on every routed prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierDef {
    pub name: String,
    /// A head folder (`head.json`, `head.safetensors`) or an HF folder
    /// (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub path: PathBuf,
    /// With `transport: nats`, the pool that runs it when not the
    /// classifier's own pool (e.g. a GPU pool for a large model).
    pub pool: Option<String>,
}

/// A label a rule names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRef {
    /// Key path of the condition, for error messages.
    pub path: String,
    pub classifier: ClassifierId,
    pub label: String,
}

/// An embedding route: a name and example utterances.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Default similarity a `route:` predicate needs.
    pub threshold: f32,
    pub examples: Vec<String>,
}

/// A named set of keywords or regexes, matched case-insensitively.
#[derive(Debug, Clone)]
pub struct KeywordRule {
    pub name: String,
    /// All patterns compiled into one case-insensitive alternation.
    pub matcher: Regex,
}

/// A rule: when `when` holds, answer with `model`.
#[derive(Debug, Clone)]
pub struct DecisionConfig {
    pub name: String,
    pub priority: i32,
    pub when: Expr,
    pub action: DecisionAction,
}

/// What a decision does with the request.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionAction {
    /// Forward to one of the candidate models.
    Route(RouteAction),
    /// Refuse with this message (HTTP 400, code `content_blocked`).
    Block { message: String },
}

/// How a routed request is answered: which models may answer it, how one
/// is picked, and what is changed in the request on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAction {
    /// At least one; with `static` selection the first one answers.
    pub candidates: Vec<Candidate>,
    pub selection: Selection,
    /// λ of this decision (quality per USD per 1k requests); `None` takes
    /// `learning.cost_weight`.
    pub cost_weight: Option<f64>,
    /// Kinds of personal data replaced by typed placeholders (none when empty).
    pub redact_pii: Vec<PiiKind>,
    /// A system prompt put in front of the conversation, or in place of the
    /// client's system messages.
    pub system_prompt: Option<SystemPrompt>,
    /// Request headers added to (or removed from) what goes upstream.
    pub headers: HeaderEdits,
    /// A response slower than this counts as a failed outcome for learning.
    pub slo: Option<Duration>,
    /// Whether and how answers are served from, and stored in, the cache.
    pub cache: CachePolicy,
}

impl RouteAction {
    /// One candidate, static selection, nothing changed in the request,
    /// the default cache policy.
    pub fn single(model: ModelId) -> Self {
        Self {
            candidates: vec![Candidate::new(model)],
            selection: Selection::Static,
            cost_weight: None,
            redact_pii: Vec::new(),
            system_prompt: None,
            headers: HeaderEdits::default(),
            slo: None,
            cache: CachePolicy::default(),
        }
    }
}

/// A model a decision may send its requests to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub model: ModelId,
    /// Beta(α, β) prior of "this model answers this decision's prompts well".
    pub prior: (f64, f64),
    /// Reasoning asked of the model, translated for its upstream's family.
    pub reasoning: Option<Reasoning>,
}

impl Candidate {
    /// A uniform prior, no reasoning setting.
    pub fn new(model: ModelId) -> Self {
        Self {
            model,
            prior: (1.0, 1.0),
            reasoning: None,
        }
    }
}

/// How a decision picks among its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Always the first candidate.
    Static,
    /// Thompson sampling over Beta posteriors learned from outcomes, with
    /// the cost weight trading quality for money.
    Thompson,
}

/// Reasoning ("thinking") asked of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    Off,
    On,
    Low,
    Medium,
    High,
}

impl Reasoning {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// A system prompt a decision sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemPrompt {
    /// Put in front of the conversation, before the client's own system messages.
    Insert(String),
    /// Replace every system message the client sent with this one.
    Replace(String),
}

/// Header changes on the request sent upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Lower-case names and values; set (replacing any client value).
    pub add: Vec<(String, String)>,
    /// Lower-case names of client headers not forwarded.
    pub remove: Vec<String>,
}

/// The decision taken when no rule matches.
#[derive(Debug, Clone)]
pub struct DefaultDecision {
    pub name: String,
    pub action: RouteAction,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// Key path, e.g. `decisions[2].when.any[0].route`.
    pub path: String,
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} error{} in configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}
