//! The upstream pool: retries with backoff, the circuit breaker per
//! endpoint, fallback to the next candidate model, and streams that fail
//! over only before their first byte.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use routemesh_test_support::fake::{self, FakeConfig};
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A loopback port nothing listens on (free a moment ago).
fn closed_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A gateway config with `upstreams` (YAML list items) and `models`, whose
/// prompts containing `fallme` go to a static decision over `candidates`.
fn config(upstreams: &str, models: &str, candidates: &str) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
{upstreams}
models:
{models}
signals:
  keywords:
    - {{ name: fall, patterns: [fallme] }}
decisions:
  - name: falling
    when: {{ keyword: fall }}
    models: {candidates}
    selection: static
default: {{ model: model-a }}
"#,
        model = model_dir().display(),
    )
}

/// One upstream `a` (the given YAML keys after its name) serving `model-a`.
fn single(keys: &str) -> String {
    config(
        &format!("  - {{ name: a, {keys} }}"),
        "  - { name: model-a, upstream: a }",
        "[model-a]",
    )
}

fn fast_retries(attempts: u32) -> String {
    format!("retries: {{ attempts: {attempts}, backoff: 10ms, max_backoff: 20ms }}")
}

async fn stats(fake: &Fake) -> Result<Value> {
    Ok(reqwest::get(format!("{}/stats", fake.base))
        .await?
        .json()
        .await?)
}

fn stream_chat(model: &str, prompt: &str) -> String {
    json!({
        "model": model,
        "stream": true,
        "messages": [{ "role": "user", "content": prompt }],
    })
    .to_string()
}

#[tokio::test]
async fn an_upstream_answering_503_twice_then_200_is_retried_and_succeeds() -> Result<()> {
    let flaky = Fake::start(FakeConfig {
        name: "flaky".into(),
        fail_first: Some((2, 503)),
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", {}",
        flaky.base,
        fast_retries(2)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    assert_eq!(flaky.requests().await?, 3, "two 503s, then the answer");
    let logs = gw.logs();
    assert_eq!(
        logs.matches("upstream attempt failed; retrying").count(),
        2,
        "{logs}"
    );
    assert!(!logs.contains("hello"), "the prompt is never logged");
    Ok(())
}

#[tokio::test]
async fn retries_are_bounded_and_the_last_upstream_error_is_relayed() -> Result<()> {
    let flaky = Fake::start(FakeConfig {
        name: "flaky".into(),
        fail_first: Some((5, 503)),
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", {}",
        flaky.base,
        fast_retries(1)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await?;
    assert_eq!(
        body["error"]["message"], "Injected failure 2 of 5 from fake upstream `flaky`.",
        "the last attempt's body: {body}"
    );
    assert_eq!(flaky.requests().await?, 2, "one try and one retry");

    // A 4xx is the request's fault: not retried.
    let picky = Fake::serving("picky", "other-model").await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", {}",
        picky.base,
        fast_retries(3)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 404);
    assert_eq!(picky.requests().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_first_byte_timeout_is_retried_then_a_504() -> Result<()> {
    let slow = Fake::start(FakeConfig {
        name: "slow".into(),
        latency: Duration::from_secs(5),
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", timeouts: {{ first_byte: 200ms }}, {}",
        slow.base,
        fast_retries(1)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    assert_eq!(slow.requests().await?, 2, "one try and one retry");
    Ok(())
}

/// Serves a fake on a fixed loopback port (one that was closed before).
async fn start_on(port: u16, cfg: FakeConfig) -> Result<Fake> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    tokio::spawn(async move {
        if let Err(e) = fake::serve(cfg, listener).await {
            eprintln!("fake upstream stopped: {e}");
        }
    });
    Ok(Fake {
        base: format!("http://127.0.0.1:{port}"),
    })
}

#[tokio::test]
async fn a_dead_endpoint_is_ejected_and_probed_back() -> Result<()> {
    let live = Fake::start(FakeConfig {
        name: "live".into(),
        ..FakeConfig::default()
    })
    .await?;
    let port = closed_port()?;
    // The dead endpoint has nearly all the weight: while it is in the pool,
    // almost every request tries it first.
    let gw = Gateway::start(&single(&format!(
        "endpoints: [ {{ url: \"{}/v1\", weight: 1 }}, {{ url: \"http://127.0.0.1:{port}/v1\", weight: 1000 }} ], \
         {}, breaker: {{ failures: 1, open_for: 1s, probes: 1 }}",
        live.base,
        fast_retries(2)
    )))
    .await?;
    for _ in 0..6 {
        let resp = gw
            .post("/v1/chat/completions", chat("model-a", "hello"))
            .await?;
        assert_eq!(resp.status(), 200, "retried on the live endpoint");
    }
    assert_eq!(live.requests().await?, 6);
    let logs = gw.logs();
    assert_eq!(
        logs.matches("endpoint ejected by its circuit breaker")
            .count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("upstream attempt failed").count(),
        1,
        "once ejected, the dead endpoint is not tried: {logs}"
    );

    // It comes back: once `open_for` has passed, a probe finds it.
    let revived = start_on(
        port,
        FakeConfig {
            name: "revived".into(),
            ..FakeConfig::default()
        },
    )
    .await?;
    // Real: `open_for` (1 s) runs on the gateway process's clock. The
    // open → half-open → closed cycle is pinned on paused time by the
    // unit tests in `upstream/tests.rs`; this checks the wiring end to end.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut answered_by = Vec::new();
    for _ in 0..10 {
        let resp = gw
            .post("/v1/chat/completions", chat("model-a", "hello"))
            .await?;
        assert_eq!(resp.status(), 200);
        answered_by.push(header(&resp, "x-fake-upstream"));
        if revived.requests().await? >= 3 {
            break;
        }
    }
    assert!(
        revived.requests().await? >= 3,
        "the endpoint is back in the pool: {answered_by:?}"
    );
    assert!(
        gw.logs().contains("endpoint back: a probe succeeded"),
        "{}",
        gw.logs()
    );
    Ok(())
}

#[tokio::test]
async fn every_endpoint_failing_falls_back_to_the_next_candidate_with_its_edits() -> Result<()> {
    let b = Fake::serving("b", "model-b").await?;
    let dead = closed_port()?;
    let text = config(
        &format!(
            "  - {{ name: dead, endpoints: [ {{ url: \"http://127.0.0.1:{dead}/v1\" }}, {{ url: \"http://127.0.0.1:{dead}/v2\" }} ], {} }}\n  \
             - {{ name: b, base_url: \"{}/v1\", family: vllm }}",
            fast_retries(2),
            b.base
        ),
        "  - { name: model-a, upstream: dead }\n  - { name: model-b, upstream: b }",
        "[ { model: model-a, reasoning: low }, { model: model-b, reasoning: high } ]",
    );
    let gw = Gateway::start(&text).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("auto", "fallme please"))
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "falling");
    assert_eq!(
        header(&resp, "x-routemesh-model"),
        "model-b",
        "the model that answered"
    );
    let body = &stats(&b).await?["last_body"];
    assert_eq!(body["model"], "model-b");
    assert_eq!(
        body["chat_template_kwargs"]["enable_thinking"], true,
        "the fallback's own reasoning, in its upstream's dialect"
    );
    assert_eq!(body["reasoning_effort"], "high");
    let logs = gw.logs();
    assert_eq!(
        logs.matches("upstream attempt failed").count(),
        3,
        "every attempt on the dead upstream first: {logs}"
    );
    assert!(
        logs.contains("falling back to the next candidate model"),
        "{logs}"
    );

    // Passthrough has no other candidate: a 502 naming the upstream.
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 502);
    let e: Value = resp.json().await?;
    assert_eq!(e["error"]["code"], "upstream_unreachable", "{e}");
    Ok(())
}

/// The whole SSE body, and whether it ended cleanly with `[DONE]`.
async fn read_stream(resp: reqwest::Response) -> (String, bool) {
    let mut text = String::new();
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => text.push_str(&String::from_utf8_lossy(&c)),
            Ok(None) => break,
            Err(_) => return (text, false),
        }
    }
    let done = text.trim_end().ends_with("data: [DONE]");
    (text, done)
}

#[tokio::test]
async fn a_stream_failing_before_its_first_byte_fails_over() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        name: "cut".into(),
        break_first_streams: 1,
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", {}",
        fake.base,
        fast_retries(2)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", stream_chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 200);
    let (text, done) = read_stream(resp).await;
    assert!(done, "a complete stream: {text}");
    assert_eq!(fake.requests().await?, 2, "the broken one, then the retry");
    Ok(())
}

#[tokio::test]
async fn a_stream_broken_midway_is_not_retried() -> Result<()> {
    let fake = Fake::start(FakeConfig {
        name: "cut".into(),
        break_stream_after: Some(2),
        // Chunks spaced out, so the first ones are on the wire before the break.
        tokens_per_sec: 20.0,
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", {}",
        fake.base,
        fast_retries(2)
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", stream_chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 200);
    let (text, done) = read_stream(resp).await;
    assert!(!done, "the client sees the break: {text}");
    if !text.contains("cut") {
        bail!("the stream started before it broke: {text}");
    }
    assert_eq!(fake.requests().await?, 1, "never sent twice");
    Ok(())
}

#[tokio::test]
async fn the_old_timeout_key_and_new_keys_load() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&single(&format!(
        "base_url: \"{}/v1\", timeout: 5s, timeouts: {{ connect: 1s, total: 30s }}, \
         breaker: {{ failures: 3, open_for: 2s, probes: 2 }}",
        fake.base
    )))
    .await?;
    let resp = gw
        .post("/v1/chat/completions", chat("model-a", "hello"))
        .await?;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.context("a JSON answer")?;
    Ok(())
}

/// Regression (issue 16, 4): with the chosen model's upstream using all of
/// its `total` timeout, the fallback shared that deadline, was never
/// contacted, and the request ended in 504 naming the fallback (which the
/// learner then blamed). Each candidate now has its own `total`: the
/// fallback answers, and only the model that was asked is blamed.
#[tokio::test]
async fn the_fallback_gets_time_of_its_own_and_only_an_asked_model_is_blamed() -> Result<()> {
    let slow = Fake::start(FakeConfig {
        name: "slow".into(),
        latency: Duration::from_secs(5),
        ..FakeConfig::default()
    })
    .await?;
    let b = Fake::serving("b", "model-b").await?;
    let text = config(
        &format!(
            "  - {{ name: slow, base_url: \"{}/v1\", timeouts: {{ first_byte: 200ms, total: 500ms }}, {} }}\n  \
             - {{ name: b, base_url: \"{}/v1\", timeouts: {{ first_byte: 200ms, total: 500ms }} }}",
            slow.base,
            fast_retries(2),
            b.base
        ),
        "  - { name: model-a, upstream: slow }\n  - { name: model-b, upstream: b }",
        "[model-a, model-b]",
    );
    let gw = Gateway::start(&text).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("auto", "fallme please"))
        .await?;
    assert_eq!(resp.status(), 200, "the fallback answered");
    assert_eq!(header(&resp, "x-routemesh-model"), "model-b");
    assert!(
        slow.requests().await? >= 2,
        "the chosen model was asked first"
    );
    assert_eq!(b.requests().await?, 1, "the fallback was asked once");
    // Outcomes are applied off the response path: wait for the blame.
    let arm = |v: &Value, model: &str| {
        v["arms"].as_array().and_then(|arms| {
            arms.iter()
                .find(|a| a["decision"] == "falling" && a["model"] == model)
                .map(|a| (a["beta"].as_f64(), a["rewards"].as_u64()))
        })
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let learning = loop {
        let v = gw.get_json("/admin/learning").await?;
        if arm(&v, "model-a").is_some_and(|(_, n)| n == Some(1)) {
            break v;
        }
        if tokio::time::Instant::now() > until {
            bail!("the chosen model's failure was not learned: {v}");
        }
        // Real time: the gateway is a child process on the wall clock,
        // which tokio's paused time in this test cannot move.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        arm(&learning, "model-a"),
        Some((Some(2.0), Some(1))),
        "the chosen model failed: a reward of 0 ({learning})"
    );
    assert_eq!(
        arm(&learning, "model-b").map(|(beta, _)| beta),
        Some(Some(1.0)),
        "the fallback answered and is not blamed ({learning})"
    );
    Ok(())
}

/// Issue 16 target "the fallback is tried whenever the chosen model
/// fails": a 500 (not retried: it may be the request's fault on that
/// server) from the chosen model's upstream now goes to the next
/// candidate; when the last candidate answers 5xx too, that answer is
/// relayed.
#[tokio::test]
async fn a_500_from_the_chosen_model_falls_back_to_the_next_candidate() -> Result<()> {
    let broken = Fake::start(FakeConfig {
        name: "broken".into(),
        error_rate: 1.0,
        ..FakeConfig::default()
    })
    .await?;
    let b = Fake::serving("b", "model-b").await?;
    let text = config(
        &format!(
            "  - {{ name: broken, base_url: \"{}/v1\" }}\n  - {{ name: b, base_url: \"{}/v1\" }}",
            broken.base, b.base
        ),
        "  - { name: model-a, upstream: broken }\n  - { name: model-b, upstream: b }",
        "[model-a, model-b]",
    );
    let gw = Gateway::start(&text).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("auto", "fallme please"))
        .await?;
    assert_eq!(resp.status(), 200, "the fallback answered");
    assert_eq!(header(&resp, "x-routemesh-model"), "model-b");
    assert_eq!(
        broken.requests().await?,
        1,
        "a 500 is not retried on its upstream"
    );
    assert_eq!(b.requests().await?, 1);

    // Both broken: the last one's 500 is relayed, naming the last asked.
    let only_broken = config(
        &format!(
            "  - {{ name: broken, base_url: \"{}/v1\" }}\n  - {{ name: b, base_url: \"{}/v1\" }}",
            broken.base, broken.base
        ),
        "  - { name: model-a, upstream: broken }\n  - { name: model-b, upstream: b }",
        "[model-a, model-b]",
    );
    let gw = Gateway::start(&only_broken).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("auto", "fallme please"))
        .await?;
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-routemesh-model"), "model-b");
    let v: Value = resp.json().await?;
    assert!(
        v["error"]["message"].is_string(),
        "the upstream's body: {v}"
    );
    Ok(())
}
