//! `model: "auto"` is routed by the rules; a model name passes through.

use anyhow::Result;
use routemesh_test_support::gateway::{Fakes, Gateway, chat, header};
use serde_json::Value;

#[tokio::test]
async fn math_question_and_greeting_are_answered_by_different_models() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;

    let math = gw
        .post(
            "/v1/chat/completions",
            chat("auto", "What is the integral of x^2 from 0 to 3?"),
        )
        .await?;
    assert_eq!(math.status(), 200);
    assert_eq!(header(&math, "x-routemesh-decision"), "math");
    assert_eq!(header(&math, "x-routemesh-model"), "qwen-math-7b");
    assert_eq!(
        header(&math, "x-fake-upstream"),
        "math",
        "answered by the math upstream"
    );
    assert_eq!(header(&math, "x-routemesh-request-id").len(), 32);
    let body: Value = math.json().await?;
    assert_eq!(
        body["model"], "qwen-math-7b",
        "the gateway rewrote `model` before forwarding"
    );

    let hello = gw
        .post(
            "/v1/chat/completions",
            chat("auto", "Hello! How are you doing today?"),
        )
        .await?;
    assert_eq!(hello.status(), 200);
    assert_eq!(header(&hello, "x-routemesh-decision"), "small_talk");
    assert_eq!(header(&hello, "x-routemesh-model"), "llama-3.2-1b");
    assert_eq!(header(&hello, "x-fake-upstream"), "chat");

    let code = gw
        .post(
            "/v1/chat/completions",
            chat(
                "auto",
                "def parse(s):\n    return json.loads(s)\nwhy does this fail?",
            ),
        )
        .await?;
    assert_eq!(
        header(&code, "x-routemesh-decision"),
        "code",
        "keyword rule `code_syntax` matched"
    );
    assert_eq!(header(&code, "x-fake-upstream"), "code");

    assert_eq!(
        (
            fakes.math.requests().await?,
            fakes.chat.requests().await?,
            fakes.code.requests().await?
        ),
        (1, 1, 1)
    );
    Ok(())
}

#[tokio::test]
async fn a_configured_model_name_passes_straight_through() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    // A math prompt sent to the coder by name is not re-routed.
    let resp = gw
        .post(
            "/v1/chat/completions",
            chat("qwen-coder-7b", "Solve 3x + 7 = 22"),
        )
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-decision"), "passthrough");
    assert_eq!(header(&resp, "x-routemesh-model"), "qwen-coder-7b");
    assert_eq!(header(&resp, "x-fake-upstream"), "code");
    let timing = header(&resp, "server-timing");
    assert!(
        !timing.contains("classify"),
        "passthrough does not classify: {timing}"
    );
    assert!(
        timing.contains("upstream;dur=") && timing.contains("total;dur="),
        "{timing}"
    );
    Ok(())
}

#[tokio::test]
async fn dry_run_shows_signals_decision_and_timings_and_forwards_nothing() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let long = "Explain the history of the Roman empire in detail. ".repeat(60);
    let resp = gw.post("/v1/route", chat("auto", &long)).await?;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await?;
    assert_eq!(v["routed"], true);
    let routes = v["signals"]["routes"].as_object().map(|o| o.len());
    assert_eq!(routes, Some(3), "one score per configured route: {v}");
    let tokens = v["signals"]["prompt_tokens"].as_u64().unwrap_or(0);
    assert!(tokens > 512, "every token counted: {v}");
    assert_eq!(
        v["signals"]["truncated"], false,
        "longer than max_tokens is read in windows, not cut or rejected"
    );
    let windows = v["signals"]["windows"].as_u64().unwrap_or(0);
    assert_eq!(windows, (tokens - 2).div_ceil(254), "windows of 256: {v}");
    for stage in ["tokenize", "forward", "classify", "decide", "total"] {
        assert!(
            v["timings_ms"][stage].as_f64().is_some(),
            "missing timing {stage}: {v}"
        );
    }
    assert_eq!(
        v["decision"]["name"], "general",
        "nothing matched: the default"
    );
    assert_eq!(v["decision"]["matched"], false);
    assert_eq!(v["model"]["name"], "llama-3.2-1b");

    let math: Value = gw
        .post(
            "/v1/route",
            chat("auto", "Find the derivative of sin(x) * x^2"),
        )
        .await?
        .json()
        .await?;
    assert_eq!(math["decision"]["name"], "math");
    let s = &math["signals"]["routes"];
    assert!(
        s["math"].as_f64() > s["small_talk"].as_f64(),
        "math scores highest on the math route: {s}"
    );
    assert_eq!(math["signals"]["keywords"]["math_words"], true);

    let total =
        fakes.math.requests().await? + fakes.code.requests().await? + fakes.chat.requests().await?;
    assert_eq!(total, 0, "a dry run forwards nothing");
    Ok(())
}

/// The dry run reads a Messages body (`?api=messages`) and a Responses
/// body (`?api=responses`) as their endpoints do: the same prompt gets the
/// same decision whatever API it came in; an unknown `api` is a 400.
#[tokio::test]
async fn the_dry_run_plans_messages_and_responses_bodies_like_chat() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let prompt = "Find the derivative of sin(x) * x^2";
    let bodies = [
        ("/v1/route", chat("auto", prompt)),
        (
            "/v1/route?api=messages",
            serde_json::json!({ "model": "auto", "max_tokens": 64, "system": "Be brief.",
                                "messages": [{ "role": "user", "content": prompt }] })
            .to_string(),
        ),
        (
            "/v1/route?api=responses",
            serde_json::json!({ "model": "auto", "instructions": "Be brief.", "input": prompt })
                .to_string(),
        ),
    ];
    for (path, body) in bodies {
        let v: Value = gw.post(path, body).await?.json().await?;
        assert_eq!(v["decision"]["name"], "math", "{path}: {v}");
        assert_eq!(v["model"]["name"], "qwen-math-7b", "{path}: {v}");
    }
    let bad = gw.post("/v1/route?api=soap", chat("auto", prompt)).await?;
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await?;
    assert_eq!(v["error"]["param"], "api", "{v}");
    Ok(())
}
