//! The small endpoints: models, health, readiness.

use anyhow::Result;
use serde_json::Value;

use crate::harness::{Fakes, Gateway};

#[tokio::test]
async fn models_lists_aliases_then_configured_models() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let v: Value = reqwest::get(gw.url("/v1/models")).await?.json().await?;
    assert_eq!(v["object"], "list");
    let ids: Vec<_> = v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["auto", "qwen-math-7b", "qwen-coder-7b", "llama-3.2-1b"]
    );
    assert_eq!(v["data"][1]["owned_by"], "local-math");

    assert_eq!(reqwest::get(gw.url("/healthz")).await?.status(), 200);
    let ready = reqwest::get(gw.url("/readyz")).await?;
    assert_eq!(ready.status(), 200, "ready once the model is loaded");
    Ok(())
}
