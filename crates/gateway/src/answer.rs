//! What happens while an answer passes through, whichever surface relays
//! it (the HTTP gateway, or Envoy through ext_proc): the routed request's
//! implicit outcome (usage, SLO, failure) is reported to the learner and a
//! complete answer is stored in the cache. Nothing here delays the answer:
//! chunks are only looked at, and reports go out in the background.

use std::sync::Arc;
use std::time::{Duration, Instant};

use routemesh_common::wire::OutcomeEvent;

use crate::cache::Fill;
use crate::learning::Learning;

/// Bytes of the end of an answer kept to find its `usage`.
const TAIL: usize = 4096;

/// Where a routed request's implicit outcome goes.
#[derive(Debug, Clone)]
pub struct Outcomes {
    pub learning: Arc<Learning>,
    pub decision: String,
    pub model: String,
    /// Slower answers are reported as failed.
    pub slo: Option<Duration>,
    /// When the request arrived.
    pub started: Instant,
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
/// it once complete. Fed chunk by chunk, then told how the answer ended.
#[derive(Debug, Default)]
pub struct Watch {
    /// Report how it ended (usage, SLO, a broken stream).
    pub outcomes: Option<Outcomes>,
    /// Store it in the cache once complete.
    pub fill: Option<Box<Fill>>,
    /// The answer's last bytes, where `usage` is.
    tail: Vec<u8>,
}

impl Watch {
    pub fn new(outcomes: Option<Outcomes>, fill: Option<Box<Fill>>) -> Self {
        Self {
            outcomes,
            fill,
            tail: Vec::new(),
        }
    }

    /// Whether there is anything to do (else the body needs no watching).
    pub fn is_idle(&self) -> bool {
        self.outcomes.is_none() && self.fill.is_none()
    }

    /// The next piece of the answer.
    pub fn chunk(&mut self, chunk: &[u8]) {
        if self.outcomes.is_some() {
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
    pub fn ended(mut self, content_type: Option<&str>) {
        if let Some(f) = self.fill.take() {
            f.finish(content_type);
        }
        if let Some(o) = self.outcomes.take() {
            o.finished(completion_tokens(&self.tail));
        }
    }
}

/// The last `"completion_tokens": N` in a JSON body or SSE stream.
pub fn completion_tokens(tail: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"completion_tokens\"";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &tail[at + KEY.len()..];
    let rest = rest
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || *b == b':'))
        .map(|i| &rest[i..])?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_found_at_the_end_of_json_and_sse_bodies() {
        let json = br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens": 42,"total_tokens":47}}"#;
        assert_eq!(completion_tokens(json), Some(42));
        let sse = b"data: {\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        assert_eq!(completion_tokens(sse), Some(7));
        assert_eq!(completion_tokens(b"data: {\"choices\":[]}"), None);
    }
}
