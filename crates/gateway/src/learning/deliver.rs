//! Delivery: moving the outbox's events, oldest first, to where they are
//! applied — the JetStream stream (`share: jetstream`) or this gateway's
//! learner (`share: local`) — deleting each only once delivered (acked by
//! JetStream, committed by the learner), retrying with backoff while the
//! destination is down, and resuming after a restart with whatever the
//! outbox still holds.
//!
//! Delivering an event twice (a crash between delivery and deletion, an
//! ack lost with the connection) applies it once: JetStream drops a
//! message id it saw within its duplicate window, and the learner records
//! the ids it applied.

use std::sync::Arc;
use std::time::Duration;

use routemesh_common::wire::OutcomeEvent;
use routemesh_decision::{Applied, Learner};
use tokio::sync::Notify;

use super::outbox::Outbox;
use super::stream::Publisher;

/// Events handed over at once.
const BATCH: usize = 256;
/// The first pause after a failed delivery; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Where outcomes are applied.
#[derive(Debug)]
pub(crate) enum Sink {
    Local(Arc<Learner>),
    JetStream(Box<Publisher>),
}

impl Sink {
    /// Whether a delivery can be tried now.
    fn ready(&self) -> bool {
        match self {
            Self::Local(_) => true,
            Self::JetStream(p) => p.connected(),
        }
    }

    /// Delivers `events` in order; returns how many of the first ones were
    /// delivered, and what stopped the rest.
    pub(crate) async fn deliver(&self, events: &[(u64, OutcomeEvent)]) -> (usize, Option<String>) {
        match self {
            Self::Local(learner) => {
                let mut done = 0;
                for (_, event) in events {
                    match apply(learner, event.clone()).await {
                        Ok(_) => done += 1,
                        Err(e) => return (done, Some(e)),
                    }
                }
                (done, None)
            }
            Self::JetStream(p) => p.publish(events).await,
        }
    }
}

/// Applies one event to the learner, off the async workers (it writes to
/// the learning store).
pub(crate) async fn apply(learner: &Arc<Learner>, event: OutcomeEvent) -> Result<Applied, String> {
    let learner = learner.clone();
    tokio::task::spawn_blocking(move || learner.apply(&event))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Delivers the outbox forever: whenever `wake` is notified or a retry is
/// due, until the outbox is empty.
pub(crate) async fn drain(outbox: Arc<Outbox>, sink: Arc<Sink>, wake: Arc<Notify>) {
    let mut pause = RETRY_MIN;
    // Whether the last try failed (logged once per outage).
    let mut failing = false;
    loop {
        let batch = match outbox.oldest(BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outcome outbox; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            }
        };
        if batch.is_empty() {
            if failing {
                tracing::info!("every outcome event waiting in the outbox is delivered");
                failing = false;
            }
            // A notification sent while delivering is kept for this wait.
            wake.notified().await;
            continue;
        }
        let stopped = if sink.ready() {
            let (done, stopped) = sink.deliver(&batch).await;
            for (key, _) in &batch[..done.min(batch.len())] {
                if let Err(e) = outbox.remove(*key) {
                    tracing::error!(error = %e, "cannot delete a delivered outcome event");
                }
            }
            stopped
        } else {
            Some("not connected to NATS".to_owned())
        };
        match stopped {
            None => pause = RETRY_MIN,
            Some(error) => {
                if !failing {
                    tracing::warn!(
                        waiting = outbox.len(),
                        %error,
                        "outcome events wait in the outbox; retrying until they are delivered"
                    );
                    failing = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
