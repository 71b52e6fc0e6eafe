//! The small endpoints: models, health, readiness.

use anyhow::Result;
use routemesh_test_support::gateway::{Fakes, Gateway};
use serde_json::Value;

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

#[tokio::test]
async fn the_api_key_comes_from_the_named_environment_variable() -> Result<()> {
    let fakes = Fakes::start().await?;
    // config/example.yaml names ROUTEMESH_CHAT_API_KEY for the chat upstream only.
    let gw = Gateway::start_with_env(
        &fakes.example_config()?,
        &[("ROUTEMESH_CHAT_API_KEY", "sk-test-4242")],
    )
    .await?;
    let ok = gw
        .post(
            "/v1/chat/completions",
            routemesh_test_support::gateway::chat("llama-3.2-1b", "hi"),
        )
        .await?;
    assert_eq!(ok.status(), 200);
    let ok = gw
        .post(
            "/v1/chat/completions",
            routemesh_test_support::gateway::chat("qwen-math-7b", "1+1"),
        )
        .await?;
    assert_eq!(ok.status(), 200);
    let stats = |base: String| async move {
        let v: Value = reqwest::get(format!("{base}/stats")).await?.json().await?;
        anyhow::Ok(v["last_authorization"].clone())
    };
    assert_eq!(stats(fakes.chat.base.clone()).await?, "Bearer sk-test-4242");
    assert_eq!(
        stats(fakes.math.base.clone()).await?,
        Value::Null,
        "no key configured, none sent"
    );
    Ok(())
}

/// `router.embeddings` names the model a router alias means on
/// `/v1/embeddings`; without it an alias there is a 400, and a name that is
/// no model is a config error naming the key.
#[tokio::test]
async fn router_embeddings_names_the_model_an_alias_means_there() -> Result<()> {
    use routemesh_test_support::gateway::header;
    let fakes = Fakes::start().await?;
    let example = fakes.example_config()?;
    let router = "router:\n  aliases: [auto]\n";
    anyhow::ensure!(
        example.contains(router),
        "the example's router section moved"
    );
    let config = example.replace(router, &format!("{router}  embeddings: llama-3.2-1b\n"));
    let gw = Gateway::start(&config).await?;
    let body = serde_json::json!({ "model": "auto", "input": ["one", "two"] });
    let resp = gw.post("/v1/embeddings", body.to_string()).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "embeddings");
    assert_eq!(header(&resp, "x-routemesh-model"), "llama-3.2-1b");
    assert_eq!(
        header(&resp, "x-fake-upstream"),
        "chat",
        "the chat upstream serves it"
    );
    let v: Value = resp.json().await?;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["model"], "llama-3.2-1b", "its upstream_model is sent");

    // Completions have no such entry here: an alias is refused, saying why.
    let body = serde_json::json!({ "model": "auto", "prompt": "def f(" });
    let resp = gw.post("/v1/completions", body.to_string()).await?;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await?;
    assert_eq!(v["error"]["param"], "model", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("router.completions")),
        "{v}"
    );

    // A model that does not exist: exit 64, the key named.
    let (code, err) = crate::config_cli::check_config_text(
        &example.replace(router, &format!("{router}  embeddings: text-embedding-3\n")),
    )?;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("router.embeddings") && err.contains("text-embedding-3"),
        "{err}"
    );
    Ok(())
}
