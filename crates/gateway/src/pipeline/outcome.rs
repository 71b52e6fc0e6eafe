//! How an answer counts, whichever front door relays it: the one rule
//! that reads a status ([`Verdict`]), the routed request's implicit
//! outcome (failure, SLO, usage → the learner) and the cache fill of a
//! complete answer ([`Watch`]). Nothing here delays the answer: chunks are
//! only looked at, and reports go out in the background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::{HeaderMap, StatusCode, header};
use routemesh_common::wire::OutcomeEvent;

use super::request::AnswerFormat;
use crate::cache::Fill;
use crate::learning::Learning;

/// Bytes of the end of an answer kept to find its usage.
const TAIL: usize = 4096;

/// What an upstream's status says about the model and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 5xx or a 429: the model failed (reward 0; worth a fallback).
    ModelFailed,
    /// Another 4xx: the request's fault, not the model's (nothing learned).
    RequestFault,
    /// A 2xx: answered (usage and SLO are learned from it).
    Answered,
    /// Anything else (1xx, 3xx): relayed, nothing learned.
    Other,
}

impl Verdict {
    /// The rule, in one place.
    pub fn of(status: StatusCode) -> Self {
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Self::ModelFailed
        } else if status.is_client_error() {
            Self::RequestFault
        } else if status.is_success() {
            Self::Answered
        } else {
            Self::Other
        }
    }

    /// Whether an answer with this status may be stored: a plain 200 only.
    pub fn cacheable(status: StatusCode) -> bool {
        status == StatusCode::OK
    }
}

/// Where a routed request's implicit outcome goes.
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub(crate) learning: Arc<Learning>,
    pub(crate) decision: String,
    pub(crate) model: String,
    /// Slower answers are reported as failed.
    pub(crate) slo: Option<Duration>,
    /// When the request arrived.
    pub(crate) started: Instant,
}

impl Outcomes {
    /// The same request's outcome for another candidate model.
    pub fn for_model(&self, model: &str) -> Self {
        Self {
            model: model.to_owned(),
            ..self.clone()
        }
    }

    /// Reward 0: the model did not answer.
    pub fn failed(self, source: &str) {
        let event = OutcomeEvent::new(self.decision, self.model, Some(0.0), source);
        self.learning.report_in_background(event);
    }

    /// The answer ended: an SLO miss is a reward of 0; otherwise only the
    /// usage (when the answer reported it) is recorded, since whether the
    /// answer was good is for feedback to say.
    pub fn finished(self, completion_tokens: Option<u32>) {
        let slow = self.slo.is_some_and(|slo| self.started.elapsed() > slo);
        let reward = slow.then_some(0.0);
        if reward.is_none() && completion_tokens.is_none() {
            return;
        }
        let source = if slow { "slo" } else { "usage" };
        let mut event = OutcomeEvent::new(self.decision, self.model, reward, source);
        event.completion_tokens = completion_tokens;
        self.learning.report_in_background(event);
    }
}

/// What to do with an answer while it passes: report how it ended, store
/// it once complete. Told the answer's status and headers, fed chunk by
/// chunk, then told how the answer ended.
#[derive(Debug, Default)]
pub struct Watch {
    /// Report how it ended (usage, SLO, a broken stream).
    outcomes: Option<Outcomes>,
    /// Store it in the cache once complete.
    fill: Option<Box<Fill>>,
    /// How the answer is read (usage, completeness): the API's codec.
    format: Option<&'static dyn AnswerFormat>,
    /// The answer's content type, from its headers.
    content_type: Option<String>,
    /// The answer's last bytes, where its usage is.
    tail: Vec<u8>,
    /// A stream's events so far, and the reader's state between chunks
    /// (for an estimate of its tokens when it reports no usage).
    events: u32,
    event_state: u8,
}

impl Watch {
    pub(crate) fn new(
        outcomes: Option<Outcomes>,
        fill: Option<Box<Fill>>,
        format: &'static dyn AnswerFormat,
    ) -> Self {
        Self {
            outcomes,
            fill,
            format: Some(format),
            content_type: None,
            tail: Vec::new(),
            events: 0,
            event_state: 0,
        }
    }

    /// The answer's status and headers arrived: a failed model is reported
    /// at once; an answer that is not a 2xx teaches nothing; only a plain
    /// 200 is stored, and not a compressed one (it would be replayed
    /// without its encoding).
    pub fn answered(&mut self, status: StatusCode, headers: &HeaderMap) {
        match Verdict::of(status) {
            Verdict::ModelFailed => {
                if let Some(o) = self.outcomes.take() {
                    o.failed("upstream_error");
                }
            }
            Verdict::RequestFault | Verdict::Other => self.outcomes = None,
            Verdict::Answered => {}
        }
        if !Verdict::cacheable(status) || headers.contains_key(header::CONTENT_ENCODING) {
            self.fill = None;
        }
        self.content_type = super::headers::content_type(headers).map(str::to_owned);
    }

    /// Whether there is anything left to do (else the body needs no
    /// watching).
    pub fn is_idle(&self) -> bool {
        self.outcomes.is_none() && self.fill.is_none()
    }

    /// The next piece of the answer.
    pub fn chunk(&mut self, chunk: &[u8]) {
        if self.outcomes.is_some() {
            if let (Some(format), true) = (self.format, self.is_stream()) {
                self.events += format.stream_events(chunk, &mut self.event_state);
            }
            self.tail.extend_from_slice(chunk);
            if self.tail.len() > TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
        }
        if self.fill.as_mut().is_some_and(|f| !f.push(chunk)) {
            tracing::debug!("answer larger than cache.max_entry_bytes: not cached");
            self.fill = None;
        }
    }

    /// The answer broke off: a failed outcome, nothing stored.
    pub fn broke(mut self) {
        self.fill = None;
        if let Some(o) = self.outcomes.take() {
            o.failed("upstream_error");
        }
    }

    /// The answer ended: store it (if complete) and report its usage.
    pub fn ended(mut self) {
        let Some(format) = self.format else { return };
        if let Some(f) = self.fill.take() {
            f.finish(self.content_type.as_deref(), |kind, body| {
                format.is_complete(kind, body)
            });
        }
        if let Some(o) = self.outcomes.take() {
            let reported = format.completion_tokens(&self.tail);
            let estimated = || {
                self.is_stream()
                    .then(|| format.tokens_of_events(self.events))
                    .flatten()
            };
            o.finished(reported.or_else(estimated));
        }
    }

    fn is_stream(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    }

    /// Passes `body` through unchanged while this watch looks at it; at
    /// the end it reports the outcome and stores the answer, or reports a
    /// failure if the stream broke. A client that hangs up early reports
    /// and stores nothing.
    pub fn observe<S, E>(self, body: S) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Send + 'static,
    {
        futures_util::stream::unfold(
            (Box::pin(body), Some(self)),
            |(mut body, mut watch)| async move {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        if let Some(w) = watch.as_mut() {
                            w.chunk(&chunk);
                        }
                        Some((Ok(chunk), (body, watch)))
                    }
                    Some(Err(e)) => {
                        if let Some(w) = watch.take() {
                            w.broke();
                        }
                        Some((Err(e), (body, watch)))
                    }
                    None => {
                        if let Some(w) = watch.take() {
                            w.ended();
                        }
                        None
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_judged_once_for_every_front_door() {
        let of = |s: u16| Verdict::of(StatusCode::from_u16(s).expect("status"));
        assert_eq!(of(200), Verdict::Answered);
        assert_eq!(of(201), Verdict::Answered);
        assert_eq!(of(429), Verdict::ModelFailed);
        assert_eq!(of(500), Verdict::ModelFailed);
        assert_eq!(of(503), Verdict::ModelFailed);
        assert_eq!(of(400), Verdict::RequestFault);
        assert_eq!(of(404), Verdict::RequestFault);
        assert_eq!(of(304), Verdict::Other);
        assert!(Verdict::cacheable(StatusCode::OK));
        assert!(!Verdict::cacheable(StatusCode::CREATED));
    }
}
