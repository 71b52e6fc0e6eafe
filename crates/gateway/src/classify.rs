//! The classifier handle: embeds prompts in this process or through a NATS
//! worker pool, under one deadline. Both sides of the enum produce the same
//! [`Embeddings`]; a failure is a [`ClassifyFailure`] the pipeline can route
//! around (degrade) or refuse on, as the config says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use routemesh_classifier_worker::{Batcher, ClassifyError, EmbedTimings, Embedding};
use routemesh_common::config::Hedge;
use routemesh_common::wire::{self, ClassifyReply, ClassifyRequest, WIRE_VERSION};

use crate::telemetry::CLASSIFY_HEDGES_TOTAL;

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
    subject: String,
    /// Classifiers that other pools run: output name → pool.
    elsewhere: BTreeMap<String, String>,
    /// When requests are sent again to another worker (shared by clones).
    hedging: Arc<Hedging>,
}

impl NatsPool {
    pub fn new(client: async_nats::Client, pool: &str) -> Self {
        Self {
            client,
            pool: pool.to_owned(),
            subject: wire::classify_subject(pool),
            elsewhere: BTreeMap::new(),
            hedging: Arc::new(Hedging::new(Hedge::Auto)),
        }
    }

    /// Hedges as `classifier.hedge` says (`auto` unless set).
    pub fn with_hedge(mut self, hedge: Hedge) -> Self {
        self.hedging = Arc::new(Hedging::new(hedge));
        self
    }

    /// Sends these outputs to other pools (output name → pool); the prompt
    /// goes to all the pools involved in parallel, under one deadline.
    pub fn with_placement(mut self, elsewhere: BTreeMap<String, String>) -> Self {
        self.elsewhere = elsewhere
            .into_iter()
            .filter(|(_, p)| *p != self.pool)
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
    let mut by_pool: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut primary = Vec::new();
    for o in outputs {
        match pool.elsewhere.get(o) {
            Some(p) => by_pool.entry(p.as_str()).or_default().push(o.clone()),
            None => primary.push(o.clone()),
        }
    }
    let main = embed_remote(
        pool,
        &pool.subject,
        &pool.pool,
        request_id,
        texts.clone(),
        &primary,
        deadline,
    );
    let others = futures_util::future::join_all(by_pool.iter().map(|(p, outs)| {
        let subject = wire::classify_subject(p);
        let texts = texts.clone();
        async move {
            (
                *p,
                embed_remote(pool, &subject, p, request_id, texts, outs, deadline).await,
            )
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

/// Asks the pool, and — when no reply has come after the hedge delay, or
/// the first worker answered it is overloaded or none was there — asks
/// again (NATS gives a queue-group request to a worker at random, and a
/// killed worker's subscription is gone with its connection), taking the
/// first answer; all within `deadline` and the hedge budget.
async fn embed_remote(
    pool: &NatsPool,
    subject: &str,
    pool_name: &str,
    request_id: &str,
    texts: Vec<String>,
    outputs: &[String],
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let n = texts.len();
    let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
    let mut request = ClassifyRequest::new(request_id, texts, deadline_ms);
    request.outputs = outputs.to_vec();
    let body = Bytes::from(
        serde_json::to_vec(&request)
            .map_err(|e| ClassifyFailure::Transport(format!("cannot encode the request: {e}")))?,
    );
    let hedging = &pool.hedging;
    hedging.requested();
    let started = Instant::now();
    let ask = |timeout: Duration| ask_once(pool, subject, pool_name, body.clone(), n, timeout);
    let first = ask(deadline);
    tokio::pin!(first);
    let Some(delay) = hedging.delay(deadline) else {
        let result = first.await;
        hedging.observe(started.elapsed(), &result);
        return result;
    };
    let early = tokio::select! {
        result = &mut first => Some(result),
        () = tokio::time::sleep(delay) => None,
    };
    let retry_now = match &early {
        // A quick "busy" or "nobody there": another worker may answer.
        Some(Err(ClassifyFailure::Overloaded | ClassifyFailure::NoResponders(_))) => true,
        Some(result) => {
            hedging.observe(started.elapsed(), result);
            return early.unwrap_or(Err(ClassifyFailure::Timeout(deadline)));
        }
        None => false,
    };
    let left = deadline.saturating_sub(started.elapsed());
    if left.is_zero() || !hedging.take() {
        return match early {
            Some(result) => result,
            None => {
                let result = first.await;
                hedging.observe(started.elapsed(), &result);
                result
            }
        };
    }
    metrics::counter!(CLASSIFY_HEDGES_TOTAL, "outcome" => "sent").increment(1);
    tracing::debug!(
        request_id,
        pool = pool_name,
        after_ms = started.elapsed().as_millis() as u64,
        "classify request sent again to another worker"
    );
    let second = ask(left);
    if retry_now {
        return second.await;
    }
    tokio::pin!(second);
    // The first answer wins; a failure waits for the other request.
    let (result, hedge_won) = tokio::select! {
        r = &mut first => match r {
            Ok(e) => (Ok(e), false),
            Err(_) => (second.await, true),
        },
        r = &mut second => match r {
            Ok(e) => (Ok(e), true),
            Err(_) => (first.await, false),
        },
    };
    if hedge_won && result.is_ok() {
        metrics::counter!(CLASSIFY_HEDGES_TOTAL, "outcome" => "won").increment(1);
    }
    hedging.observe(started.elapsed(), &result);
    result
}

/// One request to the pool, answered or failed within `timeout`.
async fn ask_once(
    pool: &NatsPool,
    subject: &str,
    pool_name: &str,
    body: Bytes,
    n: usize,
    deadline: Duration,
) -> Result<Embeddings, ClassifyFailure> {
    let request = async_nats::Request::new()
        .payload(body)
        .timeout(Some(deadline));
    let msg = pool
        .client
        .send_request(subject.to_owned(), request)
        .await
        .map_err(|e| {
            use async_nats::client::RequestErrorKind as K;
            match e.kind() {
                K::TimedOut => ClassifyFailure::Timeout(deadline),
                K::NoResponders => ClassifyFailure::NoResponders(pool_name.to_owned()),
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

/// How many latencies the hedge delay is estimated from.
const HEDGE_WINDOW: usize = 128;
/// Hedges are allowed at one per this many requests (in the long run).
const HEDGE_EVERY: f64 = 10.0;
/// Most hedges saved up for a burst of failures (a killed worker's load).
const HEDGE_BURST: f64 = 10.0;
/// The shortest automatic hedge delay.
const HEDGE_FLOOR: Duration = Duration::from_millis(50);

/// The hedging policy of one pool: a delay from recent latencies and a
/// token bucket that keeps hedges to about one request in ten, so a pool
/// that is slow because it is overloaded is not sent twice the load.
#[derive(Debug)]
struct Hedging {
    mode: Hedge,
    state: Mutex<HedgeState>,
}

#[derive(Debug)]
struct HedgeState {
    /// Latencies of recent answered requests, newest last.
    recent: VecDeque<Duration>,
    /// Hedges that may be sent now.
    tokens: f64,
}

impl Hedging {
    fn new(mode: Hedge) -> Self {
        Self {
            mode,
            state: Mutex::new(HedgeState {
                recent: VecDeque::with_capacity(HEDGE_WINDOW),
                tokens: HEDGE_BURST,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HedgeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request is being sent: the budget grows by a tenth of a hedge.
    fn requested(&self) {
        let mut s = self.lock();
        s.tokens = (s.tokens + 1.0 / HEDGE_EVERY).min(HEDGE_BURST);
    }

    /// Spends one hedge of the budget, if there is one.
    fn take(&self) -> bool {
        let mut s = self.lock();
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// An answer's latency (failures say nothing about a healthy worker's
    /// speed).
    fn observe(&self, latency: Duration, result: &Result<Embeddings, ClassifyFailure>) {
        if result.is_err() {
            return;
        }
        let mut s = self.lock();
        if s.recent.len() == HEDGE_WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back(latency);
    }

    /// How long to wait for the first reply before hedging; `None`: never.
    fn delay(&self, deadline: Duration) -> Option<Duration> {
        let cap = deadline / 2;
        match self.mode {
            Hedge::Off => None,
            Hedge::After(d) => (d < deadline).then_some(d),
            Hedge::Auto => {
                let s = self.lock();
                if s.recent.len() < 16 {
                    // Too few answers to know the pool: a quarter of the deadline.
                    return Some((deadline / 4).max(HEDGE_FLOOR).min(cap));
                }
                let mut sorted: Vec<Duration> = s.recent.iter().copied().collect();
                sorted.sort_unstable();
                let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
                Some((p95 * 2).max(HEDGE_FLOOR).min(cap))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered() -> Result<Embeddings, ClassifyFailure> {
        Ok(Embeddings {
            items: Vec::new(),
            timings: EmbedTimings::default(),
            batch_size: 1,
            worker: None,
            partial: Vec::new(),
        })
    }

    #[test]
    fn the_delay_follows_the_pools_p95_within_the_floor_and_half_the_deadline() {
        let h = Hedging::new(Hedge::Auto);
        let deadline = Duration::from_secs(2);
        assert_eq!(
            h.delay(deadline),
            Some(Duration::from_millis(500)),
            "unknown pool"
        );
        for i in 0..100u64 {
            // 1..=100 ms: p95 is 96 ms.
            h.observe(Duration::from_millis(i + 1), &answered());
        }
        assert_eq!(h.delay(deadline), Some(Duration::from_millis(192)));
        h.observe(
            Duration::from_secs(60),
            &Err(ClassifyFailure::Timeout(deadline)),
        );
        assert_eq!(
            h.delay(deadline),
            Some(Duration::from_millis(192)),
            "failures are not latencies"
        );
        for _ in 0..HEDGE_WINDOW {
            h.observe(Duration::from_secs(5), &answered());
        }
        assert_eq!(
            h.delay(deadline),
            Some(Duration::from_secs(1)),
            "at most half the deadline"
        );
        let fast = Hedging::new(Hedge::Auto);
        for _ in 0..20 {
            fast.observe(Duration::from_millis(1), &answered());
        }
        assert_eq!(fast.delay(deadline), Some(HEDGE_FLOOR));
        assert_eq!(Hedging::new(Hedge::Off).delay(deadline), None);
        let fixed = Hedging::new(Hedge::After(Duration::from_millis(300)));
        assert_eq!(fixed.delay(deadline), Some(Duration::from_millis(300)));
    }

    #[test]
    fn hedges_are_kept_to_one_request_in_ten_after_a_burst() {
        let h = Hedging::new(Hedge::Auto);
        let burst = (0..100).filter(|_| h.take()).count();
        assert_eq!(burst, HEDGE_BURST as usize, "a saved-up burst, then none");
        let mut sent = 0;
        for _ in 0..1000 {
            h.requested();
            if h.take() {
                sent += 1;
            }
        }
        assert!(
            (99..=101).contains(&sent),
            "{sent} hedges for 1000 requests"
        );
    }
}
