//! The official `openai` Python client works against the gateway, streaming
//! and not. Needs a Python with the `openai` package: `$ROUTEMESH_TEST_PYTHON`
//! or `<workspace>/.venv/bin/python`, which scripts/test.sh creates.

use std::path::PathBuf;

use anyhow::{Context, Result};
use routemesh_test_support::gateway::{Fakes, Gateway};
use routemesh_test_support::workspace;
use serde_json::Value;

pub(crate) fn python() -> PathBuf {
    let python = std::env::var_os("ROUTEMESH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python with the `openai` package at {}: run scripts/test.sh (it creates .venv), \
         or set ROUTEMESH_TEST_PYTHON",
        python.display()
    );
    python
}

/// Runs the SDK script `tests/it/NAME` against `gw`: what the SDK saw (the
/// JSON object its last line prints).
pub(crate) async fn run_sdk_script(name: &str, gw: &Gateway) -> Result<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it")
        .join(name);
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(&gw.base)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_str(
        stdout.lines().last().context("no output")?,
    )?)
}

#[tokio::test]
async fn official_openai_python_client_streaming_and_not() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let v = run_sdk_script("openai_client.py", &gw).await?;

    assert_eq!(v["plain"]["decision"], "math", "{v}");
    assert_eq!(v["plain"]["model"], "qwen-math-7b");
    assert!(
        v["plain"]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("[math]")),
        "{v}"
    );

    assert_eq!(v["stream"]["model"], "llama-3.2-1b", "{v}");
    assert!(v["stream"]["chunks"].as_u64() > Some(3), "{v}");
    assert!(
        v["stream"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[chat]")),
        "{v}"
    );
    assert!(
        v["stream"]["completion_tokens"].as_u64() > Some(0),
        "usage chunk parsed: {v}"
    );

    assert_eq!(v["not_found"]["status"], 404, "{v}");
    assert_eq!(v["not_found"]["code"], "model_not_found");
    Ok(())
}

/// The SDK's Responses API (`responses.create`, `responses.stream`, a
/// function-call round trip) against chat-completions upstreams, and its
/// `embeddings` and `completions`, passed through to the model named.
#[tokio::test]
async fn official_openai_sdk_responses_embeddings_and_completions() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let v = run_sdk_script("openai_responses.py", &gw).await?;

    assert_eq!(v["plain"]["decision"], "math", "{v}");
    assert_eq!(v["plain"]["model"], "qwen-math-7b");
    assert!(
        v["plain"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[math]")),
        "{v}"
    );
    assert_eq!(v["plain"]["status"], "completed");
    assert!(v["plain"]["output_tokens"].as_u64() > Some(0), "{v}");

    let types: Vec<&str> = v["stream"]["types"]
        .as_array()
        .context("types")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types.first(), Some(&"response.created"), "{types:?}");
    assert_eq!(types.last(), Some(&"response.completed"), "{types:?}");
    assert!(
        types
            .iter()
            .filter(|t| **t == "response.output_text.delta")
            .count()
            > 3,
        "{types:?}"
    );
    assert!(
        v["stream"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[chat]")),
        "{v}"
    );

    assert_eq!(v["tools"]["name"], "search", "{v}");
    assert_eq!(
        v["tools"]["arguments"],
        serde_json::json!({ "query": "Find the population of Paris." })
    );
    assert!(
        v["tools"]["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with("the tool said: 2.1 million")),
        "{v}"
    );
    assert_eq!(
        v["tools"]["streamed_arguments"], v["tools"]["arguments"],
        "{v}"
    );
    assert_eq!(
        v["refused"],
        serde_json::json!({ "status": 400, "param": "previous_response_id" }),
        "{v}"
    );

    // Embeddings and text completions pass through to the model named.
    assert_eq!(v["embeddings"]["count"], 2, "{v}");
    assert_eq!(v["embeddings"]["dim"], 8, "{v}");
    assert_eq!(v["embeddings"]["model"], "llama-3.2-1b", "{v}");
    assert_eq!(v["embeddings"]["upstream"], "chat", "{v}");
    assert!(
        v["completions"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[code]")),
        "{v}"
    );
    assert_eq!(
        v["alias"],
        serde_json::json!({ "status": 400, "param": "model" }),
        "{v}"
    );
    Ok(())
}

/// The SDK's chat completions and Responses API against a gateway whose
/// only upstream speaks Anthropic's Messages API (`api: anthropic`): every
/// call crosses both translations, streams and tool round trips included.
#[tokio::test]
async fn official_openai_sdk_through_an_anthropic_only_upstream() -> Result<()> {
    let fake = routemesh_test_support::gateway::Fake::serving("claude", "claude-sonnet-4").await?;
    let gw = Gateway::start_with_env(
        &crate::dialects::config(&fake),
        &[("TEST_ANTHROPIC_KEY", crate::dialects::KEY)],
    )
    .await?;
    let v = run_sdk_script("openai_via_anthropic.py", &gw).await?;
    let starts = |key: &str, field: &str| {
        v[key][field]
            .as_str()
            .is_some_and(|t| t.starts_with("[claude]"))
    };
    assert!(starts("chat", "text"), "{v}");
    assert_eq!(v["chat"]["finish"], "stop", "{v}");
    assert_eq!(v["chat"]["model"], "claude", "{v}");
    assert!(v["chat"]["completion_tokens"].as_u64() > Some(0), "{v}");
    assert!(starts("chat_stream", "text"), "{v}");
    assert!(
        v["chat_stream"]["completion_tokens"].as_u64() > Some(0),
        "{v}"
    );
    let paris = serde_json::json!({ "query": "Find the population of Paris." });
    assert_eq!(v["chat_tools"]["finish"], "tool_calls", "{v}");
    assert_eq!(v["chat_tools"]["name"], "search", "{v}");
    assert_eq!(v["chat_tools"]["arguments"], paris, "{v}");
    assert!(
        v["chat_tools"]["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with("the tool said: 2.1 million")),
        "{v}"
    );
    assert!(starts("responses", "text"), "{v}");
    assert_eq!(v["responses"]["status"], "completed", "{v}");
    assert_eq!(v["responses_stream"]["first"], "response.created", "{v}");
    assert_eq!(v["responses_stream"]["last"], "response.completed", "{v}");
    assert!(starts("responses_stream", "text"), "{v}");
    assert_eq!(v["responses_tools"]["arguments"], paris, "{v}");
    assert!(
        v["responses_tools"]["answer"]
            .as_str()
            .is_some_and(|a| a.ends_with("the tool said: 2.1 million")),
        "{v}"
    );
    Ok(())
}
