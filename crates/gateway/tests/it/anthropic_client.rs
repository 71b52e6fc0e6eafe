//! The official `anthropic` Python SDK against `POST /v1/messages`, with
//! chat-completions upstreams (the fake): routed answers streaming and not,
//! a tool-use round trip, and errors in Anthropic's shape. Needs a Python
//! with the `anthropic` package (`.venv`, which scripts/test.sh creates,
//! or `$ROUTEMESH_TEST_PYTHON`).

use anyhow::{Context, Result};
use routemesh_test_support::gateway::{Fake, Fakes, Gateway};
use serde_json::{Value, json};

/// Runs anthropic_client.py against `gw`; what the SDK saw.
async fn run_sdk(gw: &Gateway) -> Result<Value> {
    crate::openai_client::run_sdk_script("anthropic_client.py", gw).await
}

#[tokio::test]
async fn official_anthropic_sdk_gets_routed_answers_streaming_tools_and_errors() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let v = run_sdk(&gw).await?;

    // Routed like the same chat completion: the math decision's model.
    assert_eq!(v["plain"]["decision"], "math", "{v}");
    assert_eq!(v["plain"]["model"], "qwen-math-7b", "{v}");
    assert!(
        v["plain"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[math]")),
        "{v}"
    );
    assert_eq!(v["plain"]["stop_reason"], "end_turn");
    assert!(v["plain"]["output_tokens"].as_u64() > Some(0), "{v}");

    let events: Vec<&str> = v["stream"]["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{events:?}");
    assert_eq!(events.last(), Some(&"message_stop"), "{events:?}");
    assert!(
        events.iter().filter(|e| **e == "text").count() > 3,
        "{events:?}"
    );
    assert!(
        v["stream"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[chat]")),
        "{v}"
    );

    assert_eq!(v["tools"]["stop_reason"], "tool_use", "{v}");
    assert_eq!(v["tools"]["name"], "search");
    assert_eq!(
        v["tools"]["input"],
        json!({ "query": "Find the population of Paris." })
    );
    assert!(
        v["tools"]["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with("the tool said: 2.1 million")),
        "the tool's result reached the model: {v}"
    );
    assert_eq!(v["tools"]["streamed_input"], v["tools"]["input"], "{v}");
    assert_eq!(v["tools"]["streamed_stop_reason"], "tool_use");

    assert_eq!(
        v["not_found"],
        json!({ "status": 404, "type": "not_found_error" }),
        "{v}"
    );
    assert_eq!(v["unsupported"]["status"], 400, "{v}");
    assert!(
        v["unsupported"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("container")),
        "{v}"
    );
    Ok(())
}

/// The SDK against a gateway whose only upstream speaks Messages itself
/// (`api: anthropic`): each request crosses both translations (Messages →
/// the pipeline's chat completions → Messages upstream, and the answer
/// back), streaming and tool use included.
#[tokio::test]
async fn official_anthropic_sdk_through_an_anthropic_only_upstream() -> Result<()> {
    let fake = Fake::serving("claude", "claude-sonnet-4").await?;
    let config = crate::dialects::config(&fake);
    let gw =
        Gateway::start_with_env(&config, &[("TEST_ANTHROPIC_KEY", crate::dialects::KEY)]).await?;
    let v = run_sdk(&gw).await?;

    assert_eq!(v["plain"]["model"], "claude", "{v}");
    assert!(
        v["plain"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[claude]")),
        "{v}"
    );
    assert_eq!(v["plain"]["stop_reason"], "end_turn", "{v}");
    assert!(v["plain"]["output_tokens"].as_u64() > Some(0), "{v}");
    let events: Vec<&str> = v["stream"]["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{events:?}");
    assert_eq!(events.last(), Some(&"message_stop"), "{events:?}");
    assert!(
        v["stream"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[claude]")),
        "{v}"
    );
    assert_eq!(v["tools"]["stop_reason"], "tool_use", "{v}");
    assert_eq!(
        v["tools"]["input"],
        json!({ "query": "Find the population of Paris." }),
        "{v}"
    );
    assert!(
        v["tools"]["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with("the tool said: 2.1 million")),
        "the tool's result crossed both translations: {v}"
    );
    assert_eq!(v["tools"]["streamed_input"], v["tools"]["input"], "{v}");
    assert_eq!(v["not_found"]["status"], 404, "{v}");
    assert_eq!(v["unsupported"]["status"], 400, "{v}");
    let stats: Value = reqwest::get(format!("{}/stats", fake.base))
        .await?
        .json()
        .await?;
    assert_eq!(
        stats["last_authorization"],
        format!("x-api-key {}", crate::dialects::KEY),
        "the upstream's own key, never the client's: {stats}"
    );
    Ok(())
}
