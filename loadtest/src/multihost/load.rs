//! A closed loop of routed chat requests (`model: auto`) to the gateway: a fixed number in flight,
//! each prompt unique (so nothing can answer it from a cache), every answer recorded with its
//! start and end time, so the driver can cut the run into phases afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::server_timing;

/// The header the gateway puts on a response whose classify step failed.
pub const DEGRADED_HEADER: &str = "x-routemesh-degraded";

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Outcome {
    /// 2xx without `x-routemesh-degraded`.
    Ok,
    /// 2xx with `x-routemesh-degraded` (its value, e.g. `classify=timeout`).
    Degraded(String),
    /// A non-2xx status.
    Http(u16),
    /// No HTTP answer (connection error, timeout, unreadable body).
    Transport(String),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the driver's origin.
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
    /// The gateway's `Server-Timing` classify duration, in ms.
    pub classify_ms: Option<f64>,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// The running loop; [`Load::stop`] ends it and returns every sample.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<Vec<Sample>>,
}

impl Load {
    /// Starts `in_flight` loops posting to `{gateway}/v1/chat/completions`.
    pub fn start(
        gateway: &str,
        in_flight: usize,
        timeout: Duration,
        origin: Instant,
    ) -> Result<Self, reqwest::Error> {
        routemesh_runtime::install_tls_provider();
        let client = Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(in_flight)
            .build()?;
        let url = format!("{}/v1/chat/completions", gateway.trim_end_matches('/'));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for task in 0..in_flight {
            let (client, url, stop) = (client.clone(), url.clone(), Arc::clone(&stop));
            tasks.spawn(async move {
                let mut samples = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    samples.push(one(&client, &url, task, seq, origin).await);
                    seq += 1;
                }
                samples
            });
        }
        Ok(Self { stop, tasks })
    }

    /// Lets every loop finish the request it has in flight, then returns all samples by start.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            if let Ok(samples) = done {
                all.extend(samples);
            }
        }
        all.sort_by_key(|s| s.start);
        all
    }
}

/// The body of request `seq` of loop `task`: a unique prompt.
pub fn body(task: usize, seq: u64) -> String {
    let prompt = format!(
        "multihost request {task}-{seq}: what is {} plus {}?",
        seq % 97,
        task
    );
    serde_json::json!({
        "model": "auto",
        "messages": [{ "role": "user", "content": prompt }],
        "max_tokens": 8,
    })
    .to_string()
}

async fn one(client: &Client, url: &str, task: usize, seq: u64, origin: Instant) -> Sample {
    let start = origin.elapsed();
    let sent = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body(task, seq))
        .send()
        .await;
    let (outcome, classify_ms) = match sent {
        Err(e) => (Outcome::Transport(error_kind(&e)), None),
        Ok(response) => {
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let degraded = header(DEGRADED_HEADER);
            let classify_ms = header("server-timing")
                .and_then(|h| server_timing::duration(&server_timing::parse(&h), "classify"));
            match response.bytes().await {
                Err(e) => (Outcome::Transport(error_kind(&e)), classify_ms),
                Ok(_) if !status.is_success() => (Outcome::Http(status.as_u16()), classify_ms),
                Ok(_) => match degraded {
                    Some(reason) => (Outcome::Degraded(reason), classify_ms),
                    None => (Outcome::Ok, classify_ms),
                },
            }
        }
    };
    Sample {
        start,
        end: origin.elapsed(),
        outcome,
        classify_ms,
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body".to_owned()
    } else {
        "request".to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_routed_and_unique() {
        let a: serde_json::Value = serde_json::from_str(&body(3, 7)).unwrap();
        assert_eq!(a["model"], "auto");
        assert_ne!(body(3, 7), body(3, 8));
        assert_ne!(body(3, 7), body(4, 7));
    }
}
