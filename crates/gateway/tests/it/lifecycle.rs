//! Running a gateway through changes: hot reload (SIGHUP and file
//! change) while a slow request is in flight, reloads that must be refused,
//! and graceful shutdown (SIGTERM lets a request finish; the drain timeout
//! bounds it).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use routemesh_test_support::fake::FakeConfig;
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use serde_json::Value;

/// A fake serving `model` that answers after `latency`.
async fn fake(name: &str, model: &str, latency: Duration) -> Result<Fake> {
    Fake::start(FakeConfig {
        name: name.into(),
        served_models: vec![model.into()],
        latency,
        ..FakeConfig::default()
    })
    .await
}

/// Two models; every routed request goes to `default_model`.
fn config(a: &Fake, b: &Fake, default_model: &str, max_tokens: u32) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}", max_tokens: {max_tokens} }}
upstreams:
  - {{ name: a, base_url: "{a}/v1" }}
  - {{ name: b, base_url: "{b}/v1" }}
models:
  - {{ name: model-a, upstream: a }}
  - {{ name: model-b, upstream: b }}
default: {{ model: {default_model} }}
"#,
        model = model_dir().display(),
        a = a.base,
        b = b.base,
    )
}

/// Waits (up to 10 s) until `fake` has received `n` requests.
async fn wait_for_requests(fake: &Fake, n: u64) -> Result<()> {
    for _ in 0..200 {
        if fake.requests().await? >= n {
            return Ok(());
        }
        // Real: polling the fake, which the gateway process calls on its own time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the upstream never received {n} requests")
}

/// The model the dry run routes a prompt to.
async fn routed_model(gw: &Gateway) -> Result<String> {
    let v: Value = gw
        .post("/v1/route", chat("auto", "hello there"))
        .await?
        .json()
        .await?;
    v["model"]["name"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no model in {v}"))
}

/// Waits (up to 20 s) until the dry run routes to `model`.
async fn wait_for_route(gw: &Gateway, model: &str) -> Result<()> {
    let mut last = String::new();
    for _ in 0..200 {
        last = routed_model(gw).await?;
        if last == model {
            return Ok(());
        }
        // Real: polling the gateway process until a reload has taken effect.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("still routed to {last}, not {model}")
}

/// Waits (up to 20 s) until the gateway's log contains `text`.
async fn wait_for_log(gw: &Gateway, text: &str) -> Result<()> {
    for _ in 0..200 {
        if gw.logs().contains(text) {
            return Ok(());
        }
        // Real: polling the gateway process's log.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the log never said `{text}`:\n{}", gw.logs())
}

/// Sends a routed chat request; returns (status, model header, body).
async fn ask(base: String) -> Result<(u16, String, String)> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(chat("auto", "hello there"))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let model = header(&resp, "x-routemesh-model");
    Ok((status, model, resp.text().await?))
}

#[tokio::test]
async fn a_reload_changes_the_next_route_while_a_slow_request_completes() -> Result<()> {
    let a = fake("a", "model-a", Duration::from_millis(2500)).await?;
    let b = fake("b", "model-b", Duration::ZERO).await?;
    // No polling: this test reloads with SIGHUP only.
    let gw = Gateway::start_with(
        &config(&a, &b, "model-a", 128),
        &[],
        &["--reload-poll", "0s"],
    )
    .await?;
    let slow = tokio::spawn(ask(gw.base.clone()));
    wait_for_requests(&a, 1).await?;

    std::fs::write(gw.config_path(), config(&a, &b, "model-b", 128))?;
    gw.signal("HUP")?;
    wait_for_route(&gw, "model-b").await?;
    let (status, model, _) = ask(gw.base.clone()).await?;
    assert_eq!((status, model.as_str()), (200, "model-b"));

    let (status, model, body) = slow.await??;
    assert_eq!(
        (status, model.as_str()),
        (200, "model-a"),
        "the request in flight finished on the old config: {body}"
    );
    assert!(body.contains("chatcmpl-a-"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_bad_configs_keep_the_running_one() -> Result<()> {
    let a = fake("a", "model-a", Duration::ZERO).await?;
    let b = fake("b", "model-b", Duration::ZERO).await?;
    let gw = Gateway::start_with(
        &config(&a, &b, "model-a", 128),
        &[],
        &["--reload-poll", "200ms"],
    )
    .await?;
    assert_eq!(routed_model(&gw).await?, "model-a");

    // A file change alone (no signal) is picked up.
    std::fs::write(gw.config_path(), config(&a, &b, "model-b", 128))?;
    wait_for_route(&gw, "model-b").await?;

    // Invalid: the running config stays, and the log says why.
    std::fs::write(
        gw.config_path(),
        config(&a, &b, "model-a", 128).replace("default:", "defualt:"),
    )?;
    gw.signal("HUP")?;
    wait_for_log(&gw, "defualt").await?;
    // A section read only at start: refused, naming it.
    std::fs::write(gw.config_path(), config(&a, &b, "model-a", 64))?;
    gw.signal("HUP")?;
    wait_for_log(
        &gw,
        "encoder changed: that takes effect only when the gateway restarts",
    )
    .await?;
    assert_eq!(
        routed_model(&gw).await?,
        "model-b",
        "the running config stayed"
    );
    let (status, model, _) = ask(gw.base.clone()).await?;
    assert_eq!((status, model.as_str()), (200, "model-b"));
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() -> Result<()> {
    let a = fake("a", "model-a", Duration::from_millis(2000)).await?;
    let b = fake("b", "model-b", Duration::ZERO).await?;
    let mut gw = Gateway::start(&config(&a, &b, "model-a", 128)).await?;
    let slow = tokio::spawn(ask(gw.base.clone()));
    wait_for_requests(&a, 1).await?;
    gw.signal("TERM")?;
    let (status, model, body) = slow.await??;
    assert_eq!((status, model.as_str()), (200, "model-a"), "{body}");
    assert_eq!(gw.wait().await?, Some(0), "a clean exit after the drain");
    // Stopped accepting: nothing listens any more.
    assert!(ask(gw.base.clone()).await.is_err());
    Ok(())
}

#[tokio::test]
async fn the_drain_timeout_bounds_shutdown() -> Result<()> {
    let a = fake("a", "model-a", Duration::from_secs(60)).await?;
    let b = fake("b", "model-b", Duration::ZERO).await?;
    let mut gw = Gateway::start_with(
        &config(&a, &b, "model-a", 128),
        &[],
        &["--drain-timeout", "1s"],
    )
    .await?;
    let stuck = tokio::spawn(ask(gw.base.clone()));
    wait_for_requests(&a, 1).await?;
    gw.signal("TERM")?;
    assert_eq!(
        gw.wait().await?,
        Some(0),
        "exits although a request never ended"
    );
    let cut = stuck.await?;
    assert!(cut.is_err(), "the stuck request was cut off: {cut:?}");
    assert!(
        gw.logs().contains("cut off"),
        "the log says requests were cut"
    );
    Ok(())
}
