//! Sending one request: the request mix with its bodies serialised once, the seeded choice
//! among them, and one timed POST whose failure is sorted into an [`ErrorKind`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::json;

use super::record::{ErrorKind, Outcome};
use super::scenario::Scenario;
use super::schedule::Slot;

/// The gateway's response headers that are counted.
pub const HEADER_MODEL: &str = "x-routemesh-model";
pub const HEADER_DECISION: &str = "x-routemesh-decision";

/// One ready-to-send request: a mix entry with one of its prompts.
#[derive(Debug)]
pub(super) struct Variant {
    pub(super) body: Bytes,
    pub(super) headers: HeaderMap,
    pub(super) stream: bool,
}

/// The request mix: every (entry, prompt) pair rendered once, drawn by weight from a seeded RNG
/// (an entry's weight is shared evenly by its prompts).
#[derive(Debug)]
pub(super) struct Mix {
    variants: Arc<[Variant]>,
    /// Running sums of the weights, for drawing by binary search.
    cumulative: Vec<f64>,
    rng: StdRng,
}

impl Mix {
    pub(super) fn new(scenario: &Scenario) -> Self {
        let mut variants = Vec::new();
        let mut cumulative = Vec::new();
        let mut sum = 0.0;
        for entry in &scenario.mix {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (name, value) in &entry.headers {
                headers.insert(name.clone(), value.clone());
            }
            let share = entry.weight / entry.prompts.len().max(1) as f64;
            for prompt in &entry.prompts {
                let mut body = json!({
                    "model": entry.model,
                    "messages": [{ "role": "user", "content": prompt }],
                });
                if entry.stream {
                    body["stream"] = json!(true);
                }
                if let Some(max) = entry.max_tokens {
                    body["max_tokens"] = json!(max);
                }
                variants.push(Variant {
                    body: Bytes::from(body.to_string()),
                    headers: headers.clone(),
                    stream: entry.stream,
                });
                sum += share;
                cumulative.push(sum);
            }
        }
        Self {
            variants: variants.into(),
            cumulative,
            rng: StdRng::seed_from_u64(scenario.seed),
        }
    }

    /// All variants, shared with the request tasks.
    pub(super) fn variants(&self) -> Arc<[Variant]> {
        Arc::clone(&self.variants)
    }

    /// Draws the index of the next request's variant.
    pub(super) fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = self.rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        i.min(self.variants.len().saturating_sub(1))
    }
}

/// What came back before the request ended.
#[derive(Debug, Default)]
struct Answer {
    first_byte: Option<std::time::Duration>,
    model: Option<String>,
    decision: Option<String>,
    answered: bool,
}

/// Sends `variant` to `url` for `slot`, timing everything from the run's start `t0`.
pub(super) async fn send(
    client: &Client,
    url: &str,
    variant: &Variant,
    slot: Slot,
    t0: Instant,
) -> Outcome {
    let sent = t0.elapsed();
    let mut answer = Answer::default();
    let result = exchange(client, url, variant, t0, &mut answer).await;
    Outcome {
        slot,
        sent,
        first_byte: answer.first_byte,
        done: t0.elapsed(),
        result,
        model: answer.model,
        decision: answer.decision,
        answered: answer.answered,
    }
}

async fn exchange(
    client: &Client,
    url: &str,
    variant: &Variant,
    t0: Instant,
    answer: &mut Answer,
) -> Result<(), ErrorKind> {
    let mut res = client
        .post(url)
        .headers(variant.headers.clone())
        .body(variant.body.clone())
        .send()
        .await
        .map_err(|e| send_error(&e))?;
    answer.answered = true;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    answer.model = header(HEADER_MODEL);
    answer.decision = header(HEADER_DECISION);
    let status = res.status();
    // Read to the last byte: latency ends there, and the connection can be reused.
    loop {
        match res.chunk().await {
            Ok(Some(_)) => {
                if variant.stream && answer.first_byte.is_none() {
                    answer.first_byte = Some(t0.elapsed());
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(ErrorKind::Timeout),
            Err(_) => return Err(ErrorKind::Body),
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(ErrorKind::Http(status.as_u16()))
    }
}

/// The kind of a failure before any answer.
fn send_error(e: &reqwest::Error) -> ErrorKind {
    if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Request
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::loadgen::scenario::Overrides;

    fn check(mix: &str, draws: usize) -> (Mix, Vec<usize>) {
        let text = format!("target: http://h:1\nrate: 1\nduration: 1s\nseed: 3\nmix: {mix}\n");
        let scenario = Scenario::from_yaml(&text, "t", &Overrides::default()).unwrap();
        let mut mix = Mix::new(&scenario);
        let mut counts = vec![0; mix.variants().len()];
        for _ in 0..draws {
            counts[mix.pick()] += 1;
        }
        (mix, counts)
    }

    #[test]
    fn bodies_are_rendered_once_per_prompt() {
        let (mix, _) = check(
            "[{model: m, stream: true, max_tokens: 8, prompts: [a, b], headers: {x-k: v}}]",
            0,
        );
        let variants = mix.variants();
        assert_eq!(variants.len(), 2);
        let body: serde_json::Value = serde_json::from_slice(&variants[1].body).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "messages": [{"role": "user", "content": "b"}],
                   "stream": true, "max_tokens": 8})
        );
        assert!(variants[0].stream);
        assert_eq!(variants[0].headers["x-k"], "v");
        assert_eq!(variants[0].headers[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn picks_follow_the_weights() {
        // Weights 3 : 1, the first split over two prompts: 1.5 : 1.5 : 1.
        let (_, counts) = check(
            "[{weight: 3, prompts: [a, b]}, {weight: 1, prompt: c}]",
            8000,
        );
        let share = |i: usize| counts[i] as f64 / 8000.0;
        assert!((share(0) - 0.375).abs() < 0.03, "{counts:?}");
        assert!((share(1) - 0.375).abs() < 0.03, "{counts:?}");
        assert!((share(2) - 0.25).abs() < 0.03, "{counts:?}");
        // Seeded: the same sequence every time.
        assert_eq!(
            check("[{prompt: a}, {prompt: b}]", 50).1,
            check("[{prompt: a}, {prompt: b}]", 50).1
        );
    }
}
