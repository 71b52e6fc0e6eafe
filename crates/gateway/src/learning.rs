//! Outcomes and feedback: what routed requests teach the learner, and how
//! that reaches every gateway.
//!
//! Every routed request is remembered (bounded in count and age) so that
//! `POST /v1/feedback` can name it by request id. Outcomes (explicit
//! feedback, upstream failures, SLO misses, usage) become
//! [`OutcomeEvent`]s. With `share: local` they are applied here; with
//! `share: jetstream` they are published to a JetStream stream and *every*
//! gateway, this one included, applies every event from the stream, in
//! stream order, once: the learner records each event id and the last
//! stream sequence with the arm it changed (one sled transaction), and a
//! gateway that starts, or restarts, resumes after that sequence.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use routemesh_common::Config;
use routemesh_common::config::LearningShare;
use routemesh_common::wire::{self, OutcomeEvent};
use routemesh_decision::Learner;
use routemesh_decision::store::StoreError;

use crate::auth::Tenant;
use crate::telemetry::{
    FEEDBACK_REMEMBERED, OUTCOME_ERRORS_TOTAL, OUTCOMES_APPLIED_TOTAL, OUTCOMES_TOTAL,
};

/// How long the stream keeps outcome events: a gateway away for longer
/// misses the older ones (its own sled state stays).
const STREAM_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// JetStream drops a re-published event id seen within this window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Starting the learner failed.
#[derive(Debug, thiserror::Error)]
pub enum LearningError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the learning store {dir}: {source}")]
    Open { dir: String, source: StoreError },
    #[error("cannot reach NATS for the outcome stream: {0}")]
    Connect(#[from] routemesh_runtime::nats::ConnectError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("the task opening the learning store failed: {0}")]
    Task(String),
}

/// Why feedback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error(
        "no routed request `{0}` is remembered: the id is unknown, was passthrough, or is older than the feedback window"
    )]
    Unknown(String),
    #[error("request `{0}` already has feedback")]
    AlreadyRated(String),
    #[error("cannot record the outcome: {0}")]
    Unavailable(String),
}

/// A routed request, as remembered for feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedRequest {
    pub decision: String,
    pub model: String,
}

#[derive(Debug)]
struct Remembered {
    /// Who sent it: only the same tenant may rate it.
    tenant: Tenant,
    routed: RoutedRequest,
    at: Instant,
    rated: bool,
}

/// Routed requests by id, oldest forgotten first (by count and by age).
#[derive(Debug)]
struct Memory {
    by_id: HashMap<String, Remembered>,
    order: VecDeque<(String, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Memory {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            let too_many = self.order.len() > self.capacity;
            let too_old = now.duration_since(*at) > self.ttl;
            if !(too_many || too_old) {
                break;
            }
            // Only drop the entry if it is this one (ids are unique, but
            // be exact anyway).
            if self.by_id.get(id).is_some_and(|r| r.at == *at) {
                self.by_id.remove(id);
            }
            self.order.pop_front();
        }
    }

    fn insert(&mut self, id: &str, tenant: Tenant, routed: RoutedRequest, now: Instant) {
        self.by_id.insert(
            id.to_owned(),
            Remembered {
                tenant,
                routed,
                at: now,
                rated: false,
            },
        );
        self.order.push_back((id.to_owned(), now));
        self.expire(now);
    }

    /// Marks the request rated and returns it. Another tenant's request is
    /// unknown to `tenant` (the answer does not tell it exists).
    fn rate(
        &mut self,
        id: &str,
        tenant: &Tenant,
        now: Instant,
    ) -> Result<RoutedRequest, FeedbackError> {
        self.expire(now);
        let Some(r) = self.by_id.get_mut(id).filter(|r| r.tenant == *tenant) else {
            return Err(FeedbackError::Unknown(id.to_owned()));
        };
        if r.rated {
            return Err(FeedbackError::AlreadyRated(id.to_owned()));
        }
        r.rated = true;
        Ok(r.routed.clone())
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[derive(Debug)]
enum Sink {
    Local,
    JetStream {
        js: Box<jetstream::Context>,
        subject: String,
        stream: String,
    },
}

/// The learner and the way outcomes reach it.
#[derive(Debug)]
pub struct Learning {
    pub learner: Arc<Learner>,
    memory: Mutex<Memory>,
    sink: Sink,
}

impl Learning {
    /// Opens the learner (restoring its sled state) and, with JetStream
    /// sharing, connects, makes sure the stream exists and starts applying
    /// it from the last sequence this gateway applied.
    pub async fn start(config: &Config) -> Result<Arc<Self>, LearningError> {
        let l = &config.learning;
        let learner = match &l.store {
            Some(dir) => {
                let (c, d) = (config.clone(), dir.clone());
                let opened = tokio::task::spawn_blocking(move || Learner::open(&c, &d))
                    .await
                    .map_err(|e| LearningError::Task(e.to_string()))?;
                Arc::new(opened.map_err(|source| LearningError::Open {
                    dir: dir.display().to_string(),
                    source,
                })?)
            }
            None => Arc::new(Learner::in_memory(config)),
        };
        let sink = match &l.share {
            LearningShare::Local => Sink::Local,
            LearningShare::JetStream { stream, nats } => {
                let client =
                    routemesh_runtime::nats::connect(nats, "routemesh-gateway-learning").await?;
                let js = jetstream::new(client);
                js.get_or_create_stream(stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("{}.>", wire::OUTCOME_SUBJECT_PREFIX)],
                    storage: stream::StorageType::File,
                    max_age: STREAM_MAX_AGE,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    LearningError::JetStream(format!(
                        "cannot create or open stream `{stream}` (is JetStream enabled on the server? `nats-server -js`): {e}"
                    ))
                })?;
                tokio::spawn(consume(js.clone(), stream.clone(), learner.clone()));
                Sink::JetStream {
                    js: Box::new(js),
                    subject: wire::outcome_subject(),
                    stream: stream.clone(),
                }
            }
        };
        if l.store.is_none() && has_thompson(config) {
            tracing::warn!(
                "learning.store is not set: what Thompson-sampled decisions learn is lost at exit"
            );
        }
        Ok(Arc::new(Self {
            learner,
            memory: Mutex::new(Memory::new(l.remember_requests, l.remember_for)),
            sink,
        }))
    }

    /// Remembers a routed request, sent by `tenant`, for feedback.
    pub fn remember(&self, request_id: &str, tenant: &Tenant, decision: &str, model: &str) {
        let routed = RoutedRequest {
            decision: decision.to_owned(),
            model: model.to_owned(),
        };
        let mut m = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        m.insert(request_id, tenant.clone(), routed, now());
        metrics::gauge!(FEEDBACK_REMEMBERED).set(m.len() as f64);
    }

    /// Explicit feedback from `tenant`: a reward in [0, 1] for a request it
    /// sent that is remembered.
    pub async fn feedback(
        &self,
        request_id: &str,
        tenant: &Tenant,
        reward: f64,
    ) -> Result<RoutedRequest, FeedbackError> {
        let routed = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rate(request_id, tenant, now())?;
        let event = OutcomeEvent::new(&routed.decision, &routed.model, Some(reward), "feedback");
        self.report(event)
            .await
            .map_err(|e| FeedbackError::Unavailable(e.to_string()))?;
        Ok(routed)
    }

    /// Sends an outcome where it is applied: here (local) or to the stream
    /// (acknowledged by JetStream before this returns).
    pub async fn report(&self, event: OutcomeEvent) -> Result<(), String> {
        metrics::counter!(OUTCOMES_TOTAL, "source" => event.source.clone()).increment(1);
        match &self.sink {
            Sink::Local => {
                let learner = self.learner.clone();
                tokio::task::spawn_blocking(move || learner.apply(&event))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Sink::JetStream { js, subject, .. } => {
                let payload = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
                let publish = jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(&event.id);
                let ack = js
                    .send_publish(subject.clone(), publish)
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    /// [`Learning::report`] without waiting: implicit outcomes must not
    /// delay the response. Failures are logged and counted.
    pub fn report_in_background(self: &Arc<Self>, event: OutcomeEvent) {
        let this = self.clone();
        tokio::spawn(async move {
            let source = event.source.clone();
            if let Err(e) = this.report(event).await {
                metrics::counter!(OUTCOME_ERRORS_TOTAL).increment(1);
                tracing::warn!(%source, error = %e, "an outcome was not recorded");
            }
        });
    }

    /// The learned arms and, with a stream, the last sequence applied.
    pub fn describe(&self) -> serde_json::Value {
        let (share, stream) = match &self.sink {
            Sink::Local => ("local", None),
            Sink::JetStream { stream, .. } => ("jetstream", Some(stream.clone())),
        };
        serde_json::json!({
            "share": share,
            "stream": stream,
            "last_sequence": self.learner.last_sequence().ok().flatten(),
            "arms": self.learner.snapshot(),
        })
    }
}

/// The memory's clock: tokio's, so that tests on paused time move it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn has_thompson(config: &Config) -> bool {
    config
        .route_actions()
        .any(|(_, a)| a.selection == routemesh_common::config::Selection::Thompson)
}

/// Applies the stream to the learner forever, resuming after the last
/// applied sequence; reconnects (after a pause) when the consumer fails.
async fn consume(js: jetstream::Context, stream_name: String, learner: Arc<Learner>) {
    loop {
        match consume_once(&js, &stream_name, &learner).await {
            Ok(()) => tracing::warn!(stream = %stream_name, "outcome stream ended; resubscribing"),
            Err(e) => {
                tracing::warn!(stream = %stream_name, error = %e, "outcome stream failed; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume_once(
    js: &jetstream::Context,
    stream_name: &str,
    learner: &Arc<Learner>,
) -> Result<(), String> {
    let l = learner.clone();
    let last = tokio::task::spawn_blocking(move || l.last_sequence())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let deliver_policy = match last {
        Some(seq) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        None => consumer::DeliverPolicy::All,
    };
    tracing::info!(stream = %stream_name, after = ?last, "applying outcome events");
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy,
            filter_subject: format!("{}.>", wire::OUTCOME_SUBJECT_PREFIX),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let event = serde_json::from_slice::<OutcomeEvent>(&message.payload);
        let l = learner.clone();
        let applied = tokio::task::spawn_blocking(move || match event {
            Ok(event) if event.v == wire::WIRE_VERSION => {
                l.apply_at(&event, Some(sequence)).map(Some)
            }
            Ok(event) => {
                tracing::warn!(
                    sequence,
                    version = event.v,
                    "skipping an outcome event of another wire version"
                );
                l.skip(sequence).map(|()| None)
            }
            Err(e) => {
                tracing::warn!(sequence, error = %e, "skipping an unreadable outcome event");
                l.skip(sequence).map(|()| None)
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        match applied {
            Ok(Some(routemesh_decision::Applied::Applied)) => {
                metrics::counter!(OUTCOMES_APPLIED_TOTAL).increment(1);
            }
            Ok(_) => {}
            // The disk failed: stop, so the event is fetched again later
            // rather than skipped.
            Err(e) => return Err(format!("cannot store outcome at sequence {sequence}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Tenant {
        Tenant::from_credential(Some(b"Bearer acme"))
    }

    fn routed(d: &str) -> RoutedRequest {
        RoutedRequest {
            decision: d.into(),
            model: "m".into(),
        }
    }

    #[test]
    fn feedback_finds_a_request_once() {
        let mut m = Memory::new(10, Duration::from_secs(60));
        let t = Instant::now();
        m.insert("a", acme(), routed("math"), t);
        assert_eq!(m.rate("a", &acme(), t), Ok(routed("math")));
        assert_eq!(
            m.rate("a", &acme(), t),
            Err(FeedbackError::AlreadyRated("a".into()))
        );
        assert_eq!(
            m.rate("b", &acme(), t),
            Err(FeedbackError::Unknown("b".into()))
        );
    }

    /// Regression (issue 16, 8): tenant B could rate tenant A's request
    /// given its id. Another tenant's request is unknown to it, and stays
    /// rateable by its own tenant.
    #[test]
    fn feedback_across_tenants_is_refused_as_unknown() {
        let mut m = Memory::new(10, Duration::from_secs(60));
        let t = Instant::now();
        m.insert("a", acme(), routed("math"), t);
        let globex = Tenant::from_credential(Some(b"Bearer globex"));
        assert_eq!(
            m.rate("a", &globex, t),
            Err(FeedbackError::Unknown("a".into()))
        );
        assert_eq!(m.rate("a", &acme(), t), Ok(routed("math")));
    }

    #[test]
    fn memory_is_bounded_in_count_and_age() {
        let mut m = Memory::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..5 {
            m.insert(&format!("r{i}"), acme(), routed("d"), t);
        }
        assert_eq!(m.len(), 3);
        assert!(matches!(
            m.rate("r1", &acme(), t),
            Err(FeedbackError::Unknown(_))
        ));
        assert!(m.rate("r4", &acme(), t).is_ok());
        let later = t + Duration::from_secs(61);
        assert!(matches!(
            m.rate("r3", &acme(), later),
            Err(FeedbackError::Unknown(_))
        ));
        assert_eq!(m.len(), 0, "expired entries are dropped");
    }

    /// `learning.remember.for` reaches the memory, which reads tokio's
    /// clock: what the gateway test `feedback_expires_after_the_window`
    /// pins through a process on the wall clock.
    #[tokio::test(start_paused = true)]
    async fn feedback_is_taken_within_the_window_and_refused_after_it() {
        let text = r#"
encoder: { model_dir: m }
upstreams: [ { name: up, base_url: "http://127.0.0.1:1" } ]
models: [ { name: a, upstream: up }, { name: b, upstream: up } ]
signals: { keywords: [ { name: k, patterns: [x] } ] }
decisions: [ { name: learned, when: { keyword: k }, models: [a, b], selection: thompson } ]
default: { model: a }
learning: { remember: { requests: 100, for: 300ms } }
"#;
        let config = match routemesh_common::config::parse(text, std::path::Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let learning = Learning::start(&config).await.expect("local learning");
        learning.remember("early", &acme(), "learned", "a");
        learning.remember("late", &acme(), "learned", "b");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(
            learning
                .feedback("early", &acme(), 1.0)
                .await
                .map(|r| r.model),
            Ok("a".to_owned()),
            "at the end of the window"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            learning.feedback("late", &acme(), 1.0).await,
            Err(FeedbackError::Unknown("late".into())),
            "past the window"
        );
    }
}
