//! Well-formed traffic for the scenarios that put the gateway under load: chat completions
//! (streamed or not) with what the answer said about itself, feedback, the learner's state, and
//! the ledger that checks feedback was applied exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::ChaosError;

/// A client for the load (no proxy, small pool).
pub fn client() -> Result<reqwest::Client, ChaosError> {
    routemesh_runtime::install_tls_provider();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()?)
}

/// What one chat request got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Chat {
    /// Seconds since the scenario's clock started, when it was sent.
    pub sent_s: f64,
    pub latency_ms: f64,
    pub status: Option<u16>,
    /// Why there is no complete answer: `timeout`, `connect`, `transport`, `body_broken`,
    /// `incomplete` (a 200 whose body is not a whole answer).
    pub error: Option<String>,
    pub model: Option<String>,
    pub degraded: Option<String>,
    pub request_id: Option<String>,
    pub cache: Option<String>,
    /// `x-fake-upstream`: the FAKE upstream that made the answer (relayed), if any.
    pub fake: Option<String>,
    /// `error.code` of an error body.
    pub code: Option<String>,
    /// The classify stage from `Server-Timing`, in ms.
    pub classify_ms: Option<f64>,
}

impl Chat {
    /// A whole 2xx answer.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The kind of failure for a report: `status 503`, `timeout`, ...
    pub fn failure_kind(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        Some(match (&self.error, self.status) {
            (Some(e), Some(s)) => format!("{s} {e}"),
            (Some(e), None) => e.clone(),
            (None, Some(s)) => format!("status {s}"),
            (None, None) => "unknown".to_owned(),
        })
    }
}

/// A chat body for `model` with one user message.
pub fn chat_body(model: &str, prompt: &str, stream: bool) -> String {
    json!({
        "model": model,
        "messages": [{ "role": "user", "content": prompt }],
        "stream": stream,
    })
    .to_string()
}

/// A prompt no other request of the run has: `tag`, a counter and random words.
pub fn unique_prompt(rng: &mut impl Rng, tag: &str, n: u64) -> String {
    const WORDS: &[&str] = &[
        "river", "copper", "lantern", "orbit", "meadow", "cipher", "harbor", "prism", "tundra",
        "violet", "quartz", "ember", "glacier", "sonnet", "falcon", "marble", "nebula", "pepper",
        "saddle", "walnut",
    ];
    let words: Vec<&str> = (0..6)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect();
    format!("{tag} {n}: tell me about {} please", words.join(" "))
}

/// POSTs a chat completion and reads the whole answer within `timeout`.
pub async fn chat(
    client: &reqwest::Client,
    base: &str,
    body: String,
    stream: bool,
    timeout: Duration,
    clock: Instant,
) -> Chat {
    let sent = Instant::now();
    let mut out = Chat {
        sent_s: sent.duration_since(clock).as_secs_f64(),
        ..Chat::default()
    };
    let work = async {
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(
                    if e.is_connect() {
                        "connect"
                    } else {
                        "transport"
                    }
                    .to_owned(),
                );
                return;
            }
        };
        out.status = Some(resp.status().as_u16());
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        out.model = h("x-routemesh-model");
        out.degraded = h("x-routemesh-degraded");
        out.request_id = h("x-routemesh-request-id");
        out.cache = h("x-routemesh-cache");
        out.fake = h("x-fake-upstream");
        out.classify_ms = h("server-timing").and_then(|t| stage_ms(&t, "classify"));
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(c) => body.extend_from_slice(&c),
                Err(_) => {
                    out.error = Some("body_broken".to_owned());
                    return;
                }
            }
        }
        let status = out.status.unwrap_or(0);
        if (200..300).contains(&status) {
            if !complete(&body, stream) {
                out.error = Some("incomplete".to_owned());
            }
        } else {
            out.code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        }
    };
    if tokio::time::timeout(timeout, work).await.is_err() {
        out.error = Some("timeout".to_owned());
    }
    out.latency_ms = sent.elapsed().as_secs_f64() * 1e3;
    out
}

/// A whole answer: JSON with `choices`, or an SSE stream ending in `data: [DONE]`.
fn complete(body: &[u8], stream: bool) -> bool {
    if stream {
        let text = String::from_utf8_lossy(body);
        text.trim_end().ends_with("data: [DONE]")
    } else {
        serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("choices").is_some())
    }
}

/// `classify;dur=1.2, …` → 1.2 for `classify`.
fn stage_ms(header: &str, stage: &str) -> Option<f64> {
    header.split(',').find_map(|part| {
        let (name, rest) = part.trim().split_once(';')?;
        if name != stage {
            return None;
        }
        rest.split(';')
            .find_map(|p| p.trim().strip_prefix("dur="))
            .and_then(|d| d.parse().ok())
    })
}

/// What one feedback POST got.
#[derive(Debug, Clone, Serialize)]
pub struct Feedback {
    pub status: Option<u16>,
    /// `timeout` or `transport` when no status came back.
    pub error: Option<String>,
    pub latency_ms: f64,
    pub code: Option<String>,
}

impl Feedback {
    pub fn acked(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// No status came back: the event may or may not have been taken.
    pub fn unknown(&self) -> bool {
        self.status.is_none()
    }
}

/// `POST /v1/feedback {"request_id", "reward"}`.
pub async fn feedback(
    client: &reqwest::Client,
    base: &str,
    request_id: &str,
    reward: f64,
    timeout: Duration,
) -> Feedback {
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/v1/feedback"))
        .header("content-type", "application/json")
        .body(json!({ "request_id": request_id, "reward": reward }).to_string())
        .timeout(timeout)
        .send()
        .await;
    let (status, error, code) = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().map(str::to_owned);
            (Some(status), None, code)
        }
        Err(e) => (
            None,
            Some(
                if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                }
                .to_owned(),
            ),
            None,
        ),
    };
    Feedback {
        status,
        error,
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
        code,
    }
}

/// One arm of `GET /admin/learning`.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    pub decision: String,
    pub model: String,
    pub alpha: f64,
    pub beta: f64,
    pub rewards: u64,
}

/// The learner's arms and last stream sequence.
pub async fn learning(
    client: &reqwest::Client,
    base: &str,
) -> Result<(Vec<Arm>, Option<u64>), ChaosError> {
    let v: Value = client
        .get(format!("{base}/admin/learning"))
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .json()
        .await?;
    let arms = v["arms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Arm {
                    decision: x["decision"].as_str().unwrap_or_default().to_owned(),
                    model: x["model"].as_str().unwrap_or_default().to_owned(),
                    alpha: x["alpha"].as_f64().unwrap_or(f64::NAN),
                    beta: x["beta"].as_f64().unwrap_or(f64::NAN),
                    rewards: x["rewards"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((arms, v["last_sequence"].as_u64()))
}

/// Feedback given, by the model it rated: what must be applied, exactly once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Ledger {
    /// Acknowledged (2xx): (count, sum of rewards) per model.
    pub acked: BTreeMap<String, (u64, f64)>,
    /// No answer (timeout, connection lost): may or may not have been taken.
    pub unknown: BTreeMap<String, (u64, f64)>,
    /// Refused, by status.
    pub refused: BTreeMap<u16, u64>,
}

impl Ledger {
    pub fn record(&mut self, model: &str, reward: f64, result: &Feedback) {
        let slot = match result.status {
            Some(s) if (200..300).contains(&s) => self.acked.entry(model.to_owned()).or_default(),
            Some(s) => {
                *self.refused.entry(s).or_default() += 1;
                return;
            }
            None => self.unknown.entry(model.to_owned()).or_default(),
        };
        slot.0 += 1;
        slot.1 += reward;
    }

    pub fn acked_total(&self) -> u64 {
        self.acked.values().map(|v| v.0).sum()
    }

    pub fn unknown_total(&self) -> u64 {
        self.unknown.values().map(|v| v.0).sum()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Compares one gateway's arms of `decision` with the ledger (priors `prior` per model):
    /// events lost (acked, not applied) and events extra (applied beyond acked + unknown).
    pub fn check(&self, arms: &[Arm], decision: &str, prior: (f64, f64)) -> Applied {
        let mut out = Applied::default();
        let models: std::collections::BTreeSet<&String> = self
            .acked
            .keys()
            .chain(self.unknown.keys())
            .chain(
                arms.iter()
                    .filter(|a| a.decision == decision)
                    .map(|a| &a.model),
            )
            .collect();
        for model in models {
            let (acked, acked_sum) = self.acked.get(model).copied().unwrap_or((0, 0.0));
            let (unknown, _) = self.unknown.get(model).copied().unwrap_or((0, 0.0));
            let arm = arms
                .iter()
                .find(|a| a.decision == decision && &a.model == model);
            let applied = arm.map_or(0, |a| a.rewards);
            let applied_sum = arm.map_or(0.0, |a| a.alpha - prior.0);
            out.applied += applied;
            out.lost += acked.saturating_sub(applied);
            out.extra += applied.saturating_sub(acked + unknown);
            if unknown == 0 && (applied_sum - acked_sum).abs() > 1e-6 {
                out.reward_sum_mismatch.push(format!(
                    "{model}: Σreward applied {applied_sum:.3} ≠ acknowledged {acked_sum:.3}"
                ));
            }
        }
        out
    }
}

/// How a gateway's learner compares with a [`Ledger`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    pub applied: u64,
    pub lost: u64,
    pub extra: u64,
    pub reward_sum_mismatch: Vec<String>,
}

impl Applied {
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.extra == 0 && self.reward_sum_mismatch.is_empty()
    }
}

/// Counts of a list of kinds, as a JSON object.
pub fn counts<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Value {
    let mut map: BTreeMap<&str, u64> = BTreeMap::new();
    for k in kinds {
        *map.entry(k).or_default() += 1;
    }
    json!(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_stages_are_read_by_name() {
        let h = "classify;dur=12.5, decide;dur=0.1, total;dur=20";
        assert_eq!(stage_ms(h, "classify"), Some(12.5));
        assert_eq!(stage_ms(h, "total"), Some(20.0));
        assert_eq!(stage_ms(h, "cache"), None);
    }

    #[test]
    fn the_ledger_finds_lost_and_doubled_events() {
        let ack = Feedback {
            status: Some(200),
            error: None,
            latency_ms: 1.0,
            code: None,
        };
        let mut l = Ledger::default();
        l.record("a", 1.0, &ack);
        l.record("a", 0.0, &ack);
        let arm = |rewards, alpha| Arm {
            decision: "d".into(),
            model: "a".into(),
            alpha,
            beta: 1.0,
            rewards,
        };
        assert!(l.check(&[arm(2, 2.0)], "d", (1.0, 1.0)).exact());
        assert_eq!(l.check(&[arm(1, 2.0)], "d", (1.0, 1.0)).lost, 1);
        assert_eq!(l.check(&[arm(3, 3.0)], "d", (1.0, 1.0)).extra, 1);
    }
}
