//! The classifier handle: embeds prompts in this process or through a NATS
//! worker pool, under one deadline. Both sides of the enum produce the same
//! [`Embeddings`]; a failure is a [`ClassifyFailure`] the pipeline can route
//! around (degrade) or refuse on, as the config says.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use routemesh_classifier_worker::{Batcher, ClassifyError, EmbedTimings, Embedding};
use routemesh_common::config::Hedge;
use routemesh_common::wire::{self, ClassifyReply, ClassifyRequest, WIRE_VERSION};

use crate::telemetry::CLASSIFY_HEDGES_TOTAL;

mod hedge;

use hedge::Hedging;

/// Where prompts are embedded.
#[derive(Debug, Clone)]
pub enum Classifier {
    /// The encoder runs in this process.
    Embedded(Batcher),
    /// A worker pool answers over NATS.
    Nats(NatsPool),
}

/// A pool of classifier workers behind one NATS subject.
#[derive(Debug, Clone)]
pub struct NatsPool {
    pub client: async_nats::Client,
    /// The pool that embeds prompts (and runs classifiers not placed elsewhere).
    pub pool: String,
    primary: Arc<Target>,
    /// Classifiers that other pools run: output name → that pool.
    elsewhere: BTreeMap<String, Arc<Target>>,
    /// `classifier.hedge`, for each pool's [`Hedging`].
    hedge: Hedge,
}

/// One pool asked over NATS, with its own hedging (its own latencies and
/// budget; shared by clones of the handle).
#[derive(Debug)]
struct Target {
    pool: String,
    subject: String,
    hedging: Hedging,
}

impl Target {
    fn new(pool: &str, hedge: Hedge) -> Arc<Self> {
        Arc::new(Self {
            pool: pool.to_owned(),
            subject: wire::classify_subject(pool),
            hedging: Hedging::new(hedge),
        })
    }
}

impl NatsPool {
    pub fn new(client: async_nats::Client, pool: &str) -> Self {
        let hedge = Hedge::default();
        Self {
            client,
            pool: pool.to_owned(),
            primary: Target::new(pool, hedge),
            elsewhere: BTreeMap::new(),
            hedge,
        }
    }

    /// Hedges as `classifier.hedge` says (`auto`, 10%, unless set).
    pub fn with_hedge(mut self, hedge: Hedge) -> Self {
        self.hedge = hedge;
        let placement = self
            .elsewhere
            .iter()
            .map(|(output, t)| (output.clone(), t.pool.clone()))
            .collect();
        self.primary = Target::new(&self.pool, hedge);
        self.with_placement(placement)
    }

    /// Sends these outputs to other pools (output name → pool); the prompt
    /// goes to all the pools involved in parallel, under one deadline.
    pub fn with_placement(mut self, elsewhere: BTreeMap<String, String>) -> Self {
        let mut targets: BTreeMap<String, Arc<Target>> = BTreeMap::new();
        self.elsewhere = elsewhere
            .into_iter()
            .filter(|(_, p)| *p != self.pool)
            .map(|(output, p)| {
                let target = targets
                    .entry(p.clone())
                    .or_insert_with(|| Target::new(&p, self.hedge))
                    .clone();
                (output, target)
            })
            .collect();
        self
    }
}

/// Embeddings of a request's texts and what producing them cost.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One per text, in order.
    pub items: Vec<Embedding>,
    pub timings: EmbedTimings,
    pub batch_size: usize,
    /// The worker that answered (NATS only).
    pub worker: Option<String>,
    /// Other pools that did not answer: their classifiers' outputs are missing.
    pub partial: Vec<(String, ClassifyFailure)>,
}

/// Why no embedding came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyFailure {
    #[error("no embedding within the classifier deadline of {0:?}")]
    Timeout(Duration),
    #[error("no classifier worker is serving pool `{0}`")]
    NoResponders(String),
    #[error("the classifier is overloaded; retry")]
    Overloaded,
    #[error("classifier worker error {code}: {message}")]
    Worker { code: u16, message: String },
    #[error("classifier transport: {0}")]
    Transport(String),
}

impl ClassifyFailure {
    /// A short label for headers and metrics (bounded cardinality).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::NoResponders(_) => "no_responders",
            Self::Overloaded => "overloaded",
            Self::Worker { .. } => "worker_error",
            Self::Transport(_) => "transport",
        }
    }
}

impl Classifier {
    /// Embeds `texts`, giving up after `deadline`.
    /// Embeds `texts` and runs the named classifiers (`outputs`) on them,
    /// giving up after `deadline`.
    pub async fn embed(
        &self,
        request_id: &str,
        texts: Vec<String>,
        outputs: &[String],
        deadline: Duration,
    ) -> Result<Embeddings, ClassifyFailure> {
        match self {
            Self::Embedded(batcher) => embed_local(batcher, texts, outputs, deadline).await,
            Self::Nats(pool) => embed_fanout(pool, request_id, texts, outputs, deadline).await,
        }
    }

    /// A label for logs: `embedded` or `nats:<pool>`.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(_) => "embedded".to_owned(),
            Self::Nats(p) => format!("nats:{}", p.pool),
        }
    }
}

async fn embed_local(
    batcher: &Batcher,
    texts: Vec<String>,
    outputs: &[String],
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let run = batcher.embed_with(texts, outputs.to_vec(), Some(Instant::now() + deadline));
    match tokio::time::timeout(deadline, run).await {
        Err(_) | Ok(Err(ClassifyError::DeadlineExceeded)) => {
            Err(ClassifyFailure::Timeout(deadline))
        }
        Ok(Err(ClassifyError::Overloaded { .. })) => Err(ClassifyFailure::Overloaded),
        Ok(Err(e)) => Err(ClassifyFailure::Worker {
            code: 500,
            message: e.to_string(),
        }),
        Ok(Ok(e)) => Ok(Embeddings {
            items: e.items,
            timings: e.timings,
            batch_size: e.batch_size,
            worker: None,
            partial: Vec::new(),
        }),
    }
}

/// Asks the embedding pool and every other pool that runs a wanted output,
/// in parallel; the other pools' outputs are merged into the items. A
/// secondary pool that fails leaves its outputs missing and is reported in
/// [`Embeddings::partial`].
async fn embed_fanout(
    pool: &NatsPool,
    request_id: &str,
    texts: Vec<String>,
    outputs: &[String],
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let mut by_pool: BTreeMap<&str, (&Target, Vec<String>)> = BTreeMap::new();
    let mut primary = Vec::new();
    for o in outputs {
        match pool.elsewhere.get(o) {
            Some(t) => by_pool
                .entry(t.pool.as_str())
                .or_insert_with(|| (t, Vec::new()))
                .1
                .push(o.clone()),
            None => primary.push(o.clone()),
        }
    }
    let main = embed_remote(
        &pool.client,
        &pool.primary,
        request_id,
        texts.clone(),
        &primary,
        deadline,
    );
    let others = futures_util::future::join_all(by_pool.into_values().map(|(target, outs)| {
        let texts = texts.clone();
        async move {
            let result =
                embed_remote(&pool.client, target, request_id, texts, &outs, deadline).await;
            (target.pool.as_str(), result)
        }
    }));
    let (main, others) = tokio::join!(main, others);
    let mut embeddings = main?;
    for (p, result) in others {
        match result {
            Ok(e) => {
                for (item, other) in embeddings.items.iter_mut().zip(e.items) {
                    item.outputs.extend(other.outputs);
                }
            }
            Err(failure) => embeddings.partial.push((p.to_owned(), failure)),
        }
    }
    Ok(embeddings)
}

/// Asks one pool, hedged (see [`hedge`]): when no answer has come after
/// the hedge delay, or a worker answered it is overloaded or broken, or no
/// worker was there, the request is sent again and the first answer wins;
/// each attempt carries the time left as its deadline.
async fn embed_remote(
    client: &async_nats::Client,
    target: &Target,
    request_id: &str,
    texts: Vec<String>,
    outputs: &[String],
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let n = texts.len();
    let mut request = ClassifyRequest::new(request_id, texts, 0);
    request.outputs = outputs.to_vec();
    let ask = |left: Duration| {
        request.deadline_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        let body = serde_json::to_vec(&request)
            .map(Bytes::from)
            .map_err(|e| ClassifyFailure::Transport(format!("cannot encode the request: {e}")));
        async move { ask_once(client, target, body?, n, left).await }
    };
    let (result, report) = hedge::hedged(&target.hedging, deadline, ask).await;
    target.hedging.learn(&report, n);
    count_hedges(target, request_id, report);
    result
}

/// `routemesh_classify_hedges_total`, and a debug line for a hedged request.
fn count_hedges(target: &Target, request_id: &str, report: hedge::Report) {
    let count = |outcome: &'static str, n: u32| {
        let pool = target.pool.clone();
        metrics::counter!(CLASSIFY_HEDGES_TOTAL, "pool" => pool, "outcome" => outcome)
            .increment(u64::from(n));
    };
    if report.sent > 0 {
        count("sent", report.sent);
        tracing::debug!(
            request_id,
            pool = %target.pool,
            hedges = report.sent,
            won = report.won,
            "classify request sent again to another worker"
        );
    }
    if report.won {
        count("won", 1);
    }
    if report.throttled {
        count("throttled", 1);
    }
}

/// One request to the pool, answered or failed within `deadline`.
async fn ask_once(
    client: &async_nats::Client,
    target: &Target,
    body: Bytes,
    n: usize,
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let request = async_nats::Request::new()
        .payload(body)
        .timeout(Some(deadline));
    let msg = client
        .send_request(target.subject.clone(), request)
        .await
        .map_err(|e| {
            use async_nats::client::RequestErrorKind as K;
            match e.kind() {
                K::TimedOut => ClassifyFailure::Timeout(deadline),
                K::NoResponders => ClassifyFailure::NoResponders(target.pool.clone()),
                _ => ClassifyFailure::Transport(e.to_string()),
            }
        })?;
    if let Some(code) = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::service::NATS_SERVICE_ERROR_CODE))
    {
        let code: u16 = code.as_str().parse().unwrap_or(500);
        let message = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::service::NATS_SERVICE_ERROR))
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        return Err(match code {
            503 => ClassifyFailure::Overloaded,
            504 => ClassifyFailure::Timeout(deadline),
            _ => ClassifyFailure::Worker { code, message },
        });
    }
    let reply: ClassifyReply = serde_json::from_slice(&msg.payload)
        .map_err(|e| ClassifyFailure::Transport(format!("malformed reply: {e}")))?;
    if reply.v != WIRE_VERSION || reply.items.len() != n {
        return Err(ClassifyFailure::Transport(format!(
            "reply of version {} with {} items for {n} texts (this gateway speaks version {WIRE_VERSION})",
            reply.v,
            reply.items.len()
        )));
    }
    let t = reply.timings;
    Ok(Embeddings {
        items: reply
            .items
            .into_iter()
            .map(|i| Embedding {
                vector: i.embedding,
                tokens: i.tokens as usize,
                truncated: i.truncated,
                windows: i.windows as usize,
                outputs: i.outputs,
            })
            .collect(),
        timings: EmbedTimings {
            queue: Duration::from_micros(t.queue_us),
            tokenize: Duration::from_micros(t.tokenize_us),
            forward: Duration::from_micros(t.forward_us),
        },
        batch_size: reply.batch_size,
        worker: Some(reply.worker),
        partial: Vec::new(),
    })
}
