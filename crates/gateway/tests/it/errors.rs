//! Bad input gets a 4xx with an OpenAI-style error body; upstream failures
//! get 5xx with a body; nothing brings the gateway down.

use anyhow::Result;
use routemesh_test_support::gateway::{Fake, Fakes, Gateway, chat, header};
use serde_json::Value;

/// Asserts an OpenAI-style error and returns it.
async fn error(resp: reqwest::Response, status: u16) -> Result<Value> {
    assert_eq!(resp.status(), status);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    assert_eq!(
        header(&resp, "x-routemesh-request-id").len(),
        32,
        "errors carry the request id too"
    );
    let v: Value = resp.json().await?;
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        e["type"].is_string() && e.get("code").is_some() && e.get("param").is_some(),
        "{v}"
    );
    Ok(v["error"].clone())
}

#[tokio::test]
async fn bad_requests_get_openai_style_4xx_and_the_gateway_survives() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = fakes
        .example_config()?
        .replace("max_body_bytes: 1048576", "max_body_bytes: 4096");
    let mut gw = Gateway::start(&config).await?;

    let e = error(
        gw.post(
            "/v1/chat/completions",
            r#"{"model":"auto","messages":[{"role":"user""#,
        )
        .await?,
        400,
    )
    .await?;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{e}"
    );

    let e = error(
        gw.post("/v1/chat/completions", r#"{"model":"auto"}"#)
            .await?,
        400,
    )
    .await?;
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("messages"),
        "{e}"
    );

    let e = error(
        gw.post(
            "/v1/chat/completions",
            r#"{"model":"auto","messages":[{"role":"user","content":42}]}"#,
        )
        .await?,
        400,
    )
    .await?;
    assert_eq!(e["param"], "messages[0].content");

    let e = error(
        gw.post(
            "/v1/chat/completions",
            r#"{"model":["auto"],"messages":[]}"#,
        )
        .await?,
        400,
    )
    .await?;
    assert_eq!(e["param"], "model");

    let e = error(
        gw.post(
            "/v1/chat/completions",
            r#"{"model":"auto","messages":[],"stream":"yes"}"#,
        )
        .await?,
        400,
    )
    .await?;
    assert_eq!(e["param"], "stream");

    let big = chat("auto", &"x".repeat(10_000));
    let e = error(gw.post("/v1/chat/completions", big.clone()).await?, 413).await?;
    assert_eq!(e["code"], "request_too_large");
    let e = error(gw.post("/v1/route", big).await?, 413).await?;
    assert_eq!(e["code"], "request_too_large");

    let e = error(
        gw.post("/v1/chat/completions", chat("gpt-17", "hi"))
            .await?,
        404,
    )
    .await?;
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("model_not_found"), Some("model"))
    );

    let e = error(reqwest::get(gw.url("/v2/everything")).await?, 404).await?;
    assert_eq!(e["code"], "unknown_url");
    let e = error(reqwest::get(gw.url("/v1/chat/completions")).await?, 405).await?;
    assert_eq!(e["code"], "method_not_allowed");

    assert!(gw.running(), "the gateway is still up after bad input");
    assert_eq!(reqwest::get(gw.url("/healthz")).await?.status(), 200);
    let forwarded =
        fakes.math.requests().await? + fakes.code.requests().await? + fakes.chat.requests().await?;
    assert_eq!(forwarded, 0, "nothing invalid was forwarded");
    Ok(())
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_with_an_error_body() -> Result<()> {
    let fakes = Fakes::start().await?;
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let config = fakes
        .example_config()?
        .replace(&fakes.chat.base, &format!("http://127.0.0.1:{closed}"));
    let mut gw = Gateway::start(&config).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("auto", "Hello there!"))
        .await?;
    assert_eq!(
        header(&resp, "x-routemesh-model"),
        "llama-3.2-1b",
        "headers say where it was going"
    );
    let e = error(resp, 502).await?;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("upstream_error"), Some("upstream_unreachable"))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("local-chat"),
        "names the upstream: {e}"
    );
    assert!(gw.running());
    Ok(())
}

#[tokio::test]
async fn upstream_errors_are_relayed_with_their_status_and_body() -> Result<()> {
    let fakes = Fakes::start().await?;
    let failing = Fake::start(routemesh_test_support::fake::FakeConfig {
        name: "failing".into(),
        served_models: vec!["qwen-math-7b".into()],
        error_rate: 1.0,
        ..Default::default()
    })
    .await?;
    let config = fakes
        .example_config()?
        .replace(&fakes.math.base, &failing.base);
    let gw = Gateway::start(&config).await?;
    let resp = gw
        .post("/v1/chat/completions", chat("qwen-math-7b", "2+2?"))
        .await?;
    assert_eq!(header(&resp, "x-fake-upstream"), "failing");
    let e = error(resp, 500).await?;
    assert_eq!(
        e["type"], "server_error",
        "the upstream's own error body: {e}"
    );
    Ok(())
}

/// Regression (issue 16, 6): `/v1/feedback` and `/admin/cache/invalidate`
/// answered a body over `server.max_body_bytes` with 400 `invalid_request`
/// while chat and the dry run answered 413; every endpoint that reads a
/// body now refuses it alike.
#[tokio::test]
async fn bodies_over_the_limit_are_413_on_every_endpoint_that_reads_one() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = format!(
        "{}\ncache: {{}}\n",
        fakes
            .example_config()?
            .replace("max_body_bytes: 1048576", "max_body_bytes: 4096")
    );
    let gw = Gateway::start(&config).await?;
    let big = format!(r#"{{"request_id":"{}","reward":1}}"#, "x".repeat(10_000));
    for path in [
        "/v1/feedback",
        "/admin/cache/invalidate",
        "/v1/chat/completions",
    ] {
        let e = error(gw.post(path, big.clone()).await?, 413).await?;
        assert_eq!(e["code"], "request_too_large", "{path}: {e}");
    }
    Ok(())
}
