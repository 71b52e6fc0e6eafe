//! The gateway in front of a REAL model server: llama.cpp's OpenAI-compatible
//! server (PyPI llama-cpp-python) serving SmolLM2-135M-Instruct, installed by
//! `scripts/model-server.sh install` (scripts/test.sh runs it). A fake
//! upstream (a fixture) serves the other model, so `auto` routes between a
//! real model and a fake. Without the server installed these tests fail and
//! say how to install it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures_util::StreamExt as _;
use routemesh_test_support::gateway::{Fake, Gateway, header};
use routemesh_test_support::model_server::{self, ModelServer};
use routemesh_test_support::{eventually, model_dir};
use serde_json::{Value, json};

/// Prior expected completion tokens of the real model's arm.
const PRIOR_TOKENS: f64 = 500.0;

fn config(real: &ModelServer, fake: &Fake, extra: &str) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: llama-cpp, base_url: "{real}", timeouts: {{ total: 120s }} }}
  - {{ name: fake, base_url: "{fake}/v1" }}
models:
  - name: smollm2
    upstream: llama-cpp
    upstream_model: {served}
    cost: {{ input_per_mtok: 0.1, output_per_mtok: 0.2, output_tokens: {PRIOR_TOKENS} }}
  - {{ name: fake-math, upstream: fake }}
signals:
  keywords:
    - {{ name: math_words, patterns: [derivative, integral] }}
decisions:
  - {{ name: math, when: {{ keyword: math_words }}, model: fake-math }}
  - name: chat
    when: {{ not: {{ keyword: math_words }} }}
    models: [smollm2]
    selection: thompson
default: {{ model: smollm2 }}
{extra}
"#,
        model = model_dir().display(),
        real = real.base_url,
        fake = fake.base,
        served = model_server::MODEL,
    )
}

async fn start(extra: &str) -> Result<(ModelServer, Fake, Gateway)> {
    let real = ModelServer::start().await?;
    let fake = Fake::serving("fake", "fake-math").await?;
    let gw = Gateway::start(&config(&real, &fake, extra)).await?;
    Ok((real, fake, gw))
}

fn ask(model: &str, prompt: &str, extra: &Value) -> String {
    let mut body = json!({
        "model": model, "temperature": 0,
        "messages": [{ "role": "user", "content": prompt }],
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body.to_string()
}

/// The `data:` payloads of an SSE body.
fn data_lines(sse: &str) -> Vec<&str> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .collect()
}

/// The learned arm of `decision` / `model`.
async fn arm(gw: &Gateway, decision: &str, model: &str) -> Result<Value> {
    let v = gw.get_json("/admin/learning").await?;
    v["arms"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["decision"] == decision && x["model"] == model)
        })
        .cloned()
        .with_context(|| format!("no {decision}/{model} arm in {v}"))
}

/// Asks the learner until `done` holds for the arm (outcomes are applied
/// in the background), for at most 30 s.
async fn until_arm(gw: &Gateway, done: impl Fn(&Value) -> bool) -> Result<Value> {
    eventually("the outcome learned", Duration::from_secs(30), || async {
        let a = arm(gw, "chat", "smollm2").await?;
        Ok(if done(&a) { Ok(a) } else { Err(a.to_string()) })
    })
    .await
}

#[tokio::test]
async fn routed_and_passthrough_answers_come_from_the_real_model_streamed_and_not() -> Result<()> {
    let (_real, fake, gw) = start("").await?;

    // Routed: a chat prompt goes to the real model; max_tokens is honoured.
    let resp = gw
        .post(
            "/v1/chat/completions",
            ask(
                "auto",
                "Say hello to the team.",
                &json!({ "max_tokens": 12 }),
            ),
        )
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "chat");
    assert_eq!(header(&resp, "x-routemesh-model"), "smollm2");
    let v: Value = resp.json().await?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !text.trim().is_empty(),
        "the real model said something: {v}"
    );
    let used = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    assert!((1..=12).contains(&used), "max_tokens 12 honoured: {v}");
    let finish = v["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(finish == "length" || finish == "stop", "{v}");
    // Its usage teaches the arm what its answers cost (a success is no
    // reward by itself: feedback and failures are); the first observation
    // replaces the prior.
    let learned = until_arm(&gw, |a| {
        a["out_tokens"].as_f64().is_some_and(|t| t < PRIOR_TOKENS)
    })
    .await?;
    assert_eq!(
        learned["out_tokens"].as_f64(),
        Some(used as f64),
        "the relayed usage moved the expected tokens: {learned}"
    );

    // A math prompt goes to the fake: routing between a real model and a fake.
    let resp = gw
        .post(
            "/v1/chat/completions",
            ask("auto", "What is the derivative of x^3?", &json!({})),
        )
        .await?;
    assert_eq!(header(&resp, "x-routemesh-model"), "fake-math");
    assert_eq!(fake.requests().await?, 1);

    // Passthrough, streamed: llama.cpp's own SSE, relayed.
    let (sse, chunks) = stream(&gw, "smollm2", "Name three colours.").await?;
    assert!(
        !sse.contains("\"usage\""),
        "llama.cpp 0.3.36 reports no usage in streams (stream_options is ignored): {sse}"
    );
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!streamed.trim().is_empty(), "{sse}");

    // Routed and streamed: without a reported usage, the learner gets the
    // stream's token chunks (its chunks less the role, finish and [DONE]
    // events), averaged with the first answer's.
    let (sse, chunks) = stream(&gw, "auto", "Name three animals.").await?;
    let estimated = chunks.len() as f64 - 2.0;
    assert!((1.0..=16.0).contains(&estimated), "max_tokens 16: {sse}");
    let expected = (used as f64 + estimated) / 2.0;
    let learned = until_arm(&gw, |a| a["out_tokens"].as_f64() != Some(used as f64)).await?;
    assert_eq!(learned["out_tokens"].as_f64(), Some(expected), "{learned}");
    Ok(())
}

/// A streamed request of at most 16 tokens: the SSE text and its chunks
/// (`[DONE]`, which must end it, left out).
async fn stream(gw: &Gateway, model: &str, prompt: &str) -> Result<(String, Vec<Value>)> {
    let resp = gw
        .post(
            "/v1/chat/completions",
            ask(
                model,
                prompt,
                &json!({ "max_tokens": 16, "stream": true, "stream_options": { "include_usage": true } }),
            ),
        )
        .await?;
    ensure!(resp.status() == 200, "{}", resp.status());
    let want = if model == "auto" {
        "chat"
    } else {
        "passthrough"
    };
    ensure!(header(&resp, "x-routemesh-decision") == want);
    ensure!(header(&resp, "content-type").starts_with("text/event-stream"));
    let sse = resp.text().await?;
    let data = data_lines(&sse);
    ensure!(data.last() == Some(&"[DONE]"), "{sse}");
    let chunks = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str(d))
        .collect::<Result<_, _>>()?;
    Ok((sse, chunks))
}

#[tokio::test]
async fn a_real_answer_is_cached_and_served_again() -> Result<()> {
    let (_real, _fake, gw) = start("cache: { shards: 1, capacity: 100 }").await?;
    let body = ask(
        "auto",
        "Give me one word for happy.",
        &json!({ "max_tokens": 8 }),
    );
    let first = gw.post("/v1/chat/completions", body.clone()).await?;
    assert_eq!(header(&first, "x-routemesh-cache"), "miss");
    let first = first.text().await?;
    // The store is asynchronous: ask until the answer is there.
    let again = eventually("a cache hit", Duration::from_secs(10), || async {
        let again = gw.post("/v1/chat/completions", body.clone()).await?;
        let cache = header(&again, "x-routemesh-cache");
        Ok(if cache == "hit" {
            Ok(again)
        } else {
            Err(cache)
        })
    })
    .await?;
    assert_eq!(header(&again, "x-routemesh-cache-tier"), "exact");
    assert_eq!(
        again.text().await?,
        first,
        "the stored answer, byte for byte"
    );
    Ok(())
}

/// A long generation: the end-of-text tokens are banned so the model keeps
/// going until `max_tokens`.
fn long_story() -> String {
    ask(
        "auto",
        "Tell me a long story about a dragon.",
        &json!({ "max_tokens": 600, "stream": true, "logit_bias": { "0": -100, "2": -100 } }),
    )
}

#[tokio::test]
async fn a_server_killed_mid_stream_breaks_the_stream_and_counts_as_a_failure() -> Result<()> {
    let (mut real, _fake, gw) = start("").await?;
    let before = arm(&gw, "chat", "smollm2").await?;
    let beta = before["beta"].as_f64().context("beta")?;
    let resp = gw.post("/v1/chat/completions", long_story()).await?;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.context("no first chunk")??;
    assert!(
        String::from_utf8_lossy(&first).contains("data:"),
        "{first:?}"
    );
    real.kill().await?;
    let mut rest = Vec::new();
    let mut broke = false;
    while let Some(piece) = body.next().await {
        match piece {
            Ok(b) => rest.extend_from_slice(&b),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        broke || !rest.contains("[DONE]"),
        "the client sees a broken stream, not a complete one: {rest}"
    );
    let after = until_arm(&gw, |a| a["beta"].as_f64() > Some(beta)).await?;
    assert_eq!(
        after["beta"].as_f64(),
        Some(beta + 1.0),
        "one failure: {before} -> {after}"
    );
    Ok(())
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_cancels_the_upstream_request() -> Result<()> {
    let (real, _fake, gw) = start("").await?;
    let resp = gw.post("/v1/chat/completions", long_story()).await?;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    body.next().await.context("no first chunk")??;
    drop(body);
    // llama.cpp's server says when its client (the gateway) went away.
    eventually(
        "the upstream request cancelled",
        Duration::from_secs(30),
        || async {
            let logs = real.logs();
            Ok(if logs.contains("Disconnected from client") {
                Ok(())
            } else {
                Err(logs)
            })
        },
    )
    .await?;
    // The server is free again: the next request is answered.
    let resp = gw
        .post(
            "/v1/chat/completions",
            ask("auto", "Say hi.", &json!({ "max_tokens": 4 })),
        )
        .await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}
