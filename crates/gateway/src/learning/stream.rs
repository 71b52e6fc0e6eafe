//! The JetStream outcome stream: opening it, publishing the outbox's
//! events to it (message id = event id, so JetStream drops a re-publish
//! within its duplicate window) and applying it to the learner, in stream
//! order, resuming after the last sequence applied.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use routemesh_common::config::NatsConfig;
use routemesh_common::wire::{self, OutcomeEvent};
use routemesh_decision::Learner;

use super::LearningError;
use crate::telemetry::OUTCOMES_APPLIED_TOTAL;

/// How long the stream keeps outcome events: a gateway away for longer
/// misses the older ones (its own sled state stays).
const STREAM_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// JetStream drops a re-published event id seen within this window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Longest pull of the consumer (its idle heartbeat is half of it): a
/// consumer lost with a restarted NATS server is noticed, and made again,
/// within about twice this (the client's default of 30 s made it minutes).
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// The stream, as this gateway publishes to it.
#[derive(Debug)]
pub(crate) struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    subject: String,
    pub(crate) stream: String,
}

impl Publisher {
    /// Connects (the first attempt must succeed), makes sure the stream
    /// exists and starts applying it to `learner`.
    pub(crate) async fn start(
        nats: &NatsConfig,
        stream_name: &str,
        learner: Arc<Learner>,
    ) -> Result<Self, LearningError> {
        let client = routemesh_runtime::nats::connect(nats, "routemesh-gateway-learning").await?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: stream_name.to_owned(),
            subjects: vec![format!("{}.>", wire::OUTCOME_SUBJECT_PREFIX)],
            storage: stream::StorageType::File,
            max_age: STREAM_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            LearningError::JetStream(format!(
                "cannot create or open stream `{stream_name}` (is JetStream enabled on the server? `nats-server -js`): {e}"
            ))
        })?;
        tokio::spawn(consume(
            client.clone(),
            js.clone(),
            stream_name.to_owned(),
            learner,
        ));
        Ok(Self {
            client,
            js,
            subject: wire::outcome_subject(),
            stream: stream_name.to_owned(),
        })
    }

    /// Whether the client is connected: publishing while it is not would
    /// only pile copies up in its buffer.
    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Publishes `events` in order, all at once, then waits for their acks;
    /// returns how many of the first ones JetStream acknowledged, and what
    /// stopped the rest.
    pub(crate) async fn publish(&self, events: &[(u64, OutcomeEvent)]) -> (usize, Option<String>) {
        let before = connects(&self.client);
        let mut acknowledged = 0;
        let published = self.publish_counting(events, &mut acknowledged);
        tokio::select! {
            stopped = published => (acknowledged, stopped),
            // Acks of what went out before a reconnection may never come:
            // stop waiting for them (what is sent again is a duplicate).
            () = reconnected(&self.client, before) => {
                (acknowledged, Some("NATS reconnected while publishing".to_owned()))
            }
        }
    }

    /// [`Publisher::publish`], counting acks into `acknowledged`.
    async fn publish_counting(
        &self,
        events: &[(u64, OutcomeEvent)],
        acknowledged: &mut usize,
    ) -> Option<String> {
        let mut acks = Vec::with_capacity(events.len());
        let mut stopped = None;
        for (_, event) in events {
            let payload = match serde_json::to_vec(event) {
                Ok(p) => p,
                Err(e) => {
                    stopped = Some(e.to_string());
                    break;
                }
            };
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(&event.id);
            match self.js.send_publish(self.subject.clone(), message).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    stopped = Some(e.to_string());
                    break;
                }
            }
        }
        for ack in acks {
            match ack.await {
                Ok(_) => *acknowledged += 1,
                Err(e) => return Some(e.to_string()),
            }
        }
        stopped
    }
}

/// Applies the stream to the learner forever, resuming after the last
/// applied sequence; makes the consumer again (after a pause) when it
/// fails, and at once when the client reconnects: a restarted NATS server
/// has forgotten it, and the client's own recovery takes ~15 s to give up.
async fn consume(
    client: async_nats::Client,
    js: jetstream::Context,
    stream_name: String,
    learner: Arc<Learner>,
) {
    loop {
        let consumed = tokio::select! {
            consumed = consume_once(&js, &stream_name, &learner) => consumed,
            () = reconnected(&client, connects(&client)) => Err("NATS reconnected".to_owned()),
        };
        match consumed {
            Ok(()) => tracing::warn!(stream = %stream_name, "outcome stream ended; resubscribing"),
            Err(e) => {
                tracing::warn!(stream = %stream_name, error = %e, "outcome stream failed; retrying")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How many times the client has connected.
fn connects(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Returns once the client has connected more than `before` times
/// (however briefly it was away).
async fn reconnected(client: &async_nats::Client, before: u64) {
    // Real time: the client counts its connections but cannot be awaited.
    const EVERY: Duration = Duration::from_millis(100);
    while connects(client) <= before {
        tokio::time::sleep(EVERY).await;
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
            max_expires: PULL_EXPIRES,
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
