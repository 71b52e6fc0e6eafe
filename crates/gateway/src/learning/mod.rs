//! Outcomes and feedback: what routed requests teach the learner, and how
//! that reaches every gateway.
//!
//! Every routed request is remembered (bounded in count and age) so that
//! `POST /v1/feedback` can name it by request id ([`memory`]); with a
//! learning store the memory is mirrored in it ([`disk`]), so a restart,
//! graceful or not, still knows the requests answered before it. Outcomes
//! (explicit feedback, upstream failures, SLO misses, usage) become
//! [`OutcomeEvent`]s.
//!
//! Feedback is taken into the [`outbox`] in the same sled transaction that
//! marks its request rated, flushed, and only then acknowledged; a
//! background task ([`deliver`]) moves the outbox to where events are
//! applied and deletes each once delivered. With `share: local` that is
//! this gateway's learner (feedback is applied before the answer when it
//! can be: 200; else it waits in the outbox: 202). With `share: jetstream`
//! it is the JetStream stream ([`stream`]), and the answer is a 202 at
//! once, whether NATS is up or not: *every* gateway, this one included,
//! applies every event from the stream, in stream order, once — the
//! learner records each event id and the last stream sequence with the arm
//! it changed (one sled transaction), and a gateway that starts, or
//! restarts, resumes after that sequence. Implicit outcomes go through the
//! outbox too with a stream (without a flush of their own), so an outage
//! of NATS loses none of them either.

mod deliver;
mod disk;
mod memory;
mod outbox;
mod stream;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use routemesh_common::Config;
use routemesh_common::config::LearningShare;
use routemesh_common::wire::OutcomeEvent;
use routemesh_decision::Learner;
use routemesh_decision::store::StoreError;
use tokio::sync::Notify;

use self::deliver::Sink;
use self::disk::Requests;
pub use self::memory::RoutedRequest;
use self::memory::{Clock, Memory, Remembered};
use self::outbox::Outbox;
use crate::auth::Tenant;
use crate::telemetry::{FEEDBACK_REMEMBERED, OUTCOME_ERRORS_TOTAL, OUTCOMES_TOTAL};

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

/// What became of feedback that was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Applied to this gateway's learner (`share: local`).
    Applied,
    /// Safely queued (on disk with a learning store) and on its way to the
    /// stream, or to the learner once it can write again.
    Queued,
}

impl Taken {
    /// As the feedback answer's `status` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Queued => "queued",
        }
    }
}

/// Feedback taken: the request it rated and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub routed: RoutedRequest,
    pub taken: Taken,
}

/// The learner and the way outcomes reach it.
#[derive(Debug)]
pub struct Learning {
    pub learner: Arc<Learner>,
    memory: Mutex<Memory>,
    /// The memory's copy in the learning store, when there is one.
    requests: Option<Requests>,
    outbox: Arc<Outbox>,
    sink: Arc<Sink>,
    /// Tells the delivery task the outbox has something new.
    wake: Arc<Notify>,
    clock: Clock,
}

/// What [`open_store`] restores from a learning store.
struct Opened {
    learner: Learner,
    requests: Requests,
    outbox: Outbox,
    remembered: Vec<(String, Remembered)>,
}

/// Opens the learner's sled folder and the gateway's trees in it (blocking).
fn open_store(config: &Config, dir: &std::path::Path) -> Result<Opened, LearningError> {
    let open = |source: StoreError| LearningError::Open {
        dir: dir.display().to_string(),
        source,
    };
    let learner = Learner::open(config, dir).map_err(open)?;
    let store = learner
        .store()
        .ok_or_else(|| LearningError::Task("the learner opened without its store".into()))?;
    let requests = Requests::open(store.tree(disk::TREE).map_err(open)?)
        .map_err(|e| LearningError::Task(format!("cannot start the flusher thread: {e}")))?;
    let remembered = requests.load().map_err(|e| open(StoreError::Sled(e)))?;
    let outbox = Outbox::on_disk(store.tree(outbox::TREE).map_err(open)?, outbox::LIMIT).map_err(
        |e| match e {
            outbox::OutboxError::Sled(e) => open(StoreError::Sled(e)),
            other => LearningError::Task(other.to_string()),
        },
    )?;
    Ok(Opened {
        learner,
        requests,
        outbox,
        remembered,
    })
}

impl Learning {
    /// Opens the learner (restoring its sled state, the request memory and
    /// the outbox) and, with JetStream sharing, connects, makes sure the
    /// stream exists and starts applying it from the last sequence this
    /// gateway applied. Then starts delivering the outbox.
    pub async fn start(config: &Config) -> Result<Arc<Self>, LearningError> {
        let l = &config.learning;
        let clock = Clock::start();
        let mut memory = Memory::new(l.remember_requests, l.remember_for);
        let (learner, requests, outbox) = match &l.store {
            Some(dir) => {
                let (c, d) = (config.clone(), dir.clone());
                let opened = tokio::task::spawn_blocking(move || open_store(&c, &d))
                    .await
                    .map_err(|e| LearningError::Task(e.to_string()))??;
                let now = clock.now();
                let mut forgotten = Vec::new();
                for (id, mut r) in opened.remembered {
                    // A time ahead of this run's clock (the system clock
                    // went back): as if routed now.
                    r.at = r.at.min(now);
                    forgotten.extend(memory.insert(&id, r, now));
                }
                opened
                    .requests
                    .forget(&forgotten)
                    .map_err(StoreError::Sled)?;
                if memory.len() > 0 || opened.outbox.len() > 0 {
                    tracing::info!(
                        requests = memory.len(),
                        outbox = opened.outbox.len(),
                        "restored the request memory and the outcome outbox"
                    );
                }
                (
                    Arc::new(opened.learner),
                    Some(opened.requests),
                    opened.outbox,
                )
            }
            None => (
                Arc::new(Learner::in_memory(config)),
                None,
                Outbox::in_memory(outbox::LIMIT),
            ),
        };
        let sink = match &l.share {
            LearningShare::Local => Sink::Local(learner.clone()),
            LearningShare::JetStream { stream, nats } => Sink::JetStream(Box::new(
                stream::Publisher::start(nats, stream, learner.clone()).await?,
            )),
        };
        if l.store.is_none() && has_thompson(config) {
            tracing::warn!(
                "learning.store is not set: what Thompson-sampled decisions learn is lost at exit"
            );
        }
        if l.store.is_none() && matches!(l.share, LearningShare::JetStream { .. }) {
            tracing::warn!(
                "learning.store is not set: feedback taken while NATS is down waits in memory and \
                 is lost if the gateway stops first, and requests answered before a restart \
                 cannot get feedback after it"
            );
        }
        let (outbox, sink, wake) = (Arc::new(outbox), Arc::new(sink), Arc::new(Notify::new()));
        tokio::spawn(deliver::drain(outbox.clone(), sink.clone(), wake.clone()));
        metrics::gauge!(FEEDBACK_REMEMBERED).set(memory.len() as f64);
        Ok(Arc::new(Self {
            learner,
            memory: Mutex::new(memory),
            requests,
            outbox,
            sink,
            wake,
            clock,
        }))
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        // Every change is a map operation or a flag: a panic cannot leave
        // the memory half-written.
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Mirrors forgotten ids in the store (under the memory's lock).
    fn forget(&self, ids: &[String]) {
        if let Some(requests) = &self.requests
            && let Err(e) = requests.forget(ids)
        {
            tracing::warn!(error = %e, "cannot delete forgotten requests from the learning store");
        }
    }

    /// Remembers a routed request, sent by `tenant`, for feedback.
    pub fn remember(&self, request_id: &str, tenant: &Tenant, decision: &str, model: &str) {
        let now = self.clock.now();
        let entry = Remembered {
            tenant: tenant.as_str().to_owned(),
            routed: RoutedRequest {
                decision: decision.to_owned(),
                model: model.to_owned(),
            },
            at: now,
            rated: false,
        };
        let mut m = self.memory();
        if let Some(requests) = &self.requests
            && let Err(e) = requests.put(request_id, &entry)
        {
            tracing::warn!(error = %e, "cannot store a routed request: feedback for it is lost at restart");
        }
        let forgotten = m.insert(request_id, entry, now);
        self.forget(&forgotten);
        metrics::gauge!(FEEDBACK_REMEMBERED).set(m.len() as f64);
    }

    /// Explicit feedback from `tenant`: a reward in [0, 1] for a request it
    /// sent that is remembered. When this returns `Ok` the rating is safe
    /// (on disk with a learning store) and will be applied once everywhere.
    pub async fn feedback(
        &self,
        request_id: &str,
        tenant: &Tenant,
        reward: f64,
    ) -> Result<Accepted, FeedbackError> {
        let (event, key, routed) = self.take(request_id, tenant, reward)?;
        metrics::counter!(OUTCOMES_TOTAL, "source" => event.source.clone()).increment(1);
        if self.outbox.is_durable() {
            // Acknowledged only once on disk: a crash from here on loses nothing.
            let outbox = self.outbox.clone();
            let flushed = tokio::task::spawn_blocking(move || outbox.flush())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = flushed {
                self.give_back(request_id, key);
                return Err(FeedbackError::Unavailable(format!(
                    "the learning store cannot be written: {e}"
                )));
            }
        }
        let taken = match &*self.sink {
            Sink::Local(learner) => match deliver::apply(learner, event).await {
                Ok(_) => {
                    if let Err(e) = self.outbox.remove(key) {
                        // Left there, it is applied again, as a duplicate.
                        tracing::warn!(error = %e, "cannot delete an applied outcome event");
                    }
                    Taken::Applied
                }
                Err(e) => {
                    tracing::warn!(error = %e, "feedback waits in the outbox: the learner cannot write");
                    self.wake.notify_one();
                    Taken::Queued
                }
            },
            Sink::JetStream(_) => {
                self.wake.notify_one();
                Taken::Queued
            }
        };
        Ok(Accepted { routed, taken })
    }

    /// Marks the request rated and queues its outcome event, in one
    /// transaction of the learning store (not yet flushed).
    fn take(
        &self,
        request_id: &str,
        tenant: &Tenant,
        reward: f64,
    ) -> Result<(OutcomeEvent, u64, RoutedRequest), FeedbackError> {
        let now = self.clock.now();
        let mut m = self.memory();
        let forgotten = m.expire(now);
        self.forget(&forgotten);
        let rated = m.rate(request_id, tenant, now)?;
        let event = OutcomeEvent::new(
            &rated.routed.decision,
            &rated.routed.model,
            Some(reward),
            "feedback",
        );
        let pushed = match &self.requests {
            Some(requests) => {
                let pushed = self.outbox.push_beside(
                    &event,
                    requests.tree(),
                    request_id.as_bytes(),
                    &disk::encode(&rated),
                );
                requests.changed();
                pushed
            }
            None => self.outbox.push(&event),
        };
        match pushed {
            Ok(key) => Ok((event, key, rated.routed)),
            Err(e) => {
                m.unrate(request_id);
                Err(FeedbackError::Unavailable(e.to_string()))
            }
        }
    }

    /// Undoes [`Learning::take`] when its flush failed: the feedback was not
    /// acknowledged, so it must not be applied, and may be given again.
    fn give_back(&self, request_id: &str, key: u64) {
        let mut m = self.memory();
        m.unrate(request_id);
        if let Err(e) = self.outbox.remove(key) {
            tracing::error!(error = %e, "cannot take back unacknowledged feedback");
        }
        if let Some(requests) = &self.requests
            && let Some(r) = m.get(request_id)
            && let Err(e) = requests.put(request_id, r)
        {
            tracing::error!(error = %e, "cannot take back unacknowledged feedback");
        }
    }

    /// Reports an implicit outcome without delaying the response: applied
    /// here (local; in the background) or queued for the stream. Failures
    /// are logged and counted.
    pub fn report_in_background(self: &Arc<Self>, event: OutcomeEvent) {
        metrics::counter!(OUTCOMES_TOTAL, "source" => event.source.clone()).increment(1);
        match &*self.sink {
            Sink::Local(learner) => {
                let learner = learner.clone();
                tokio::spawn(async move {
                    let source = event.source.clone();
                    if let Err(e) = deliver::apply(&learner, event).await {
                        not_recorded(&source, &e);
                    }
                });
            }
            Sink::JetStream(_) => match self.outbox.push(&event) {
                Ok(_) => self.wake.notify_one(),
                Err(e) => not_recorded(&event.source, &e.to_string()),
            },
        }
    }

    /// The learned arms, the last stream sequence applied (with a
    /// stream), what waits in the outbox and what is remembered.
    pub fn describe(&self) -> serde_json::Value {
        let (share, stream) = match &*self.sink {
            Sink::Local(_) => ("local", None),
            Sink::JetStream(p) => ("jetstream", Some(p.stream.clone())),
        };
        let remembered = self.memory().len();
        serde_json::json!({
            "share": share,
            "stream": stream,
            "last_sequence": self.learner.last_sequence().ok().flatten(),
            "arms": self.learner.snapshot(),
            "outbox": {
                "events": self.outbox.len(),
                "durable": self.outbox.is_durable(),
            },
            "memory": {
                "requests": remembered,
                "durable": self.requests.is_some(),
                "unflushed": self.requests.as_ref().map_or(0, Requests::unflushed),
            },
        })
    }
}

fn not_recorded(source: &str, error: &str) {
    metrics::counter!(OUTCOME_ERRORS_TOTAL).increment(1);
    tracing::warn!(%source, %error, "an outcome was not recorded");
}

fn has_thompson(config: &Config) -> bool {
    config
        .route_actions()
        .any(|(_, a)| a.selection == routemesh_common::config::Selection::Thompson)
}

#[cfg(test)]
mod tests;
