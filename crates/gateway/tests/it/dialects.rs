//! An upstream that speaks Anthropic's Messages API (`api: anthropic`; the
//! fake upstream serves `/v1/messages`): chat completions, streamed or not,
//! tool calls and their results, and Messages clients are translated both
//! ways; what cannot be translated is a 400 naming it.

use anyhow::{Context, Result};
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use serde_json::{Value, json};

pub(crate) const KEY: &str = "sk-ant-test-0123";

pub(crate) fn config(fake: &Fake) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: claude-api, base_url: "{base}/v1", api: anthropic, api_key_env: TEST_ANTHROPIC_KEY }}
models:
  - {{ name: claude, upstream: claude-api, upstream_model: claude-sonnet-4 }}
default: {{ model: claude }}
"#,
        model = model_dir().display(),
        base = fake.base,
    )
}

async fn post(gw: &Gateway, path: &str, body: Value) -> Result<reqwest::Response> {
    gw.post(path, body.to_string()).await
}

/// The `data:` payloads of an SSE body.
fn datas(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn chat_completions_reach_an_anthropic_upstream_and_come_back_translated() -> Result<()> {
    let fake = Fake::serving("claude", "claude-sonnet-4").await?;
    let gw = Gateway::start_with_env(&config(&fake), &[("TEST_ANTHROPIC_KEY", KEY)]).await?;

    let resp = gw
        .post("/v1/chat/completions", chat("auto", "Hello there"))
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-model"), "claude");
    let v: Value = resp.json().await?;
    assert_eq!(v["object"], "chat.completion", "{v}");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with("[claude]"), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["completion_tokens"].as_u64() > Some(0), "{v}");
    let stats: Value = reqwest::get(format!("{}/stats", fake.base))
        .await?
        .json()
        .await?;
    assert_eq!(
        stats["last_authorization"],
        format!("x-api-key {KEY}"),
        "the upstream's key goes in x-api-key: {stats}"
    );

    // Streamed: chunks translated as the events come, ending in [DONE].
    let resp = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "auto", "stream": true, "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": "Hello there" }] }),
    )
    .await?;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await?;
    let d = datas(&body);
    assert_eq!(d.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = d[..d.len() - 1]
        .iter()
        .map(|x| serde_json::from_str(x))
        .collect::<Result<_, _>>()?;
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text, "the same answer, streamed");
    assert!(
        chunks
            .iter()
            .any(|c| c["usage"]["completion_tokens"].as_u64() > Some(0))
    );

    // A tool call and its result.
    let tools = json!([{ "type": "function", "function": { "name": "search", "parameters": { "type": "object" } } }]);
    let ask = json!([{ "role": "user", "content": "Find the population of Paris." }]);
    let v: Value = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "auto", "tools": tools, "messages": ask }),
    )
    .await?
    .json()
    .await?;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    let args: Value = serde_json::from_str(
        call["function"]["arguments"]
            .as_str()
            .context("arguments")?,
    )?;
    assert_eq!(args, json!({ "query": "Find the population of Paris." }));
    let mut turns = ask.as_array().cloned().context("turns")?;
    turns.push(json!({ "role": "assistant", "content": null, "tool_calls": [call] }));
    turns.push(json!({ "role": "tool", "tool_call_id": call["id"], "content": "2.1 million" }));
    let v: Value = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "auto", "tools": tools, "messages": turns }),
    )
    .await?
    .json()
    .await?;
    assert_eq!(
        v["choices"][0]["message"]["content"], "[claude] the tool said: 2.1 million",
        "{v}"
    );

    // A Messages client through the chat-completions pipeline to the
    // Anthropic upstream: translated there and back.
    let resp = post(
        &gw,
        "/v1/messages",
        json!({ "model": "auto", "max_tokens": 32, "stream": true,
                "messages": [{ "role": "user", "content": "Hello there" }] }),
    )
    .await?;
    let body = resp.text().await?;
    let events: Vec<Value> = datas(&body)
        .iter()
        .map(|x| serde_json::from_str(x))
        .collect::<Result<_, _>>()?;
    let text_back: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text_back, text, "{body}");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("message_stop"))
    );

    // What Messages has no field for is refused by name, not dropped.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        json!({ "model": "auto", "logprobs": true, "messages": [{ "role": "user", "content": "Hi" }] }),
    )
    .await?;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await?;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("logprobs")),
        "{v}"
    );
    let resp = post(
        &gw,
        "/v1/embeddings",
        json!({ "model": "claude", "input": "x" }),
    )
    .await?;
    assert_eq!(resp.status(), 400, "no embeddings on an Anthropic upstream");
    Ok(())
}
