//! `stream: true`: SSE chunks are relayed as the upstream produces them.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::StreamExt;
use routemesh_test_support::fake::FakeConfig;
use routemesh_test_support::gateway::{Fake, Fakes, Gateway, header};

#[tokio::test]
async fn chunks_arrive_as_they_are_produced_not_buffered() -> Result<()> {
    let fakes = Fakes::start().await?;
    // The chat upstream emits 10 tokens at 10 per second: ~0.9 s between the
    // first and the last chunk if relayed, ~0 if the gateway buffered.
    let slow = Fake::start(FakeConfig {
        name: "slow-chat".into(),
        served_models: vec!["llama-3.2-1b".into()],
        tokens_per_sec: 10.0,
        reply_tokens: 10,
        ..FakeConfig::default()
    })
    .await?;
    let config = fakes
        .example_config()?
        .replace(&fakes.chat.base, &slow.base);
    let gw = Gateway::start(&config).await?;

    let body = serde_json::json!({
        "model": "auto", "stream": true,
        "messages": [{ "role": "user", "content": "Hi there!" }],
    });
    let started = Instant::now();
    let resp = gw.post("/v1/chat/completions", body.to_string()).await?;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/event-stream"));
    assert_eq!(header(&resp, "x-routemesh-model"), "llama-3.2-1b");

    let mut arrivals = Vec::new();
    let mut text = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let events = String::from_utf8_lossy(&chunk).matches("data: ").count();
        arrivals.extend(std::iter::repeat_n(started.elapsed(), events));
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream ends with [DONE]: {text}"
    );
    assert!(text.contains("\"object\":\"chat.completion.chunk\""));
    let (first, last) = (arrivals[0], arrivals[arrivals.len() - 1]);
    assert!(
        last - first >= Duration::from_millis(500),
        "all {} events arrived within {:?}: the stream was buffered",
        arrivals.len(),
        last - first
    );
    Ok(())
}
