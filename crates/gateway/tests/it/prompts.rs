//! Prompt size against the embedded classifier: a huge prompt costs the
//! encoder what a prompt of `encoder.max_total_tokens` does, so it cannot
//! starve other requests; a long one is read in windows, and `/v1/route`
//! says how.

use anyhow::Result;
use routemesh_test_support::gateway::{Fakes, Gateway};
use routemesh_test_support::prompts::{JAILBREAK, benign_text};
use serde_json::{Value, json};

fn dry_run(prompt: &str) -> String {
    json!({ "model": "auto", "messages": [{ "role": "user", "content": prompt }] }).to_string()
}

/// `bytes` of words no tokenizer cache has seen: lowercase letters and
/// digits from a fixed-seed generator, spaced like text.
fn noise(bytes: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = 3 + (state % 9) as usize;
        for k in 0..len {
            let c = b"abcdefghijklmnopqrstuvwxyz0123456789"[((state >> (k * 5)) % 36) as usize];
            out.push(c as char);
        }
        out.push(' ');
    }
    out
}

/// Regression (issue 16, 7): four concurrent 900 KB prompts made three of
/// them, and an unrelated small request, time out in classify (the
/// tokenizer read every byte of each). Now every one is classified within
/// the default deadline, and the huge ones say they were truncated and
/// carry their estimated length. With the bound at one window, as when
/// this was fixed: at the default 4,096 tokens a 900 KB prompt costs 17
/// windows, about 2.3 s of this 2-core CPU with the candle path, and four
/// of them cannot all fit in the default 2 s deadline.
#[tokio::test]
async fn big_prompts_do_not_starve_the_embedded_classifier() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = fakes.example_config()?;
    let one_window = "  max_total_tokens: 4096\n";
    anyhow::ensure!(
        config.contains(one_window),
        "config/example.yaml's encoder changed shape"
    );
    let gw = Gateway::start(&config.replace(one_window, "  max_total_tokens: 256\n")).await?;
    let huge = noise(900_000);
    let mut requests: Vec<_> = (0..4)
        .map(|_| gw.post("/v1/route", dry_run(&huge)))
        .collect();
    requests.push(gw.post("/v1/route", dry_run("What is the capital of France?")));
    let answers = futures_util::future::join_all(requests).await;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer?;
        assert_eq!(answer.status(), 200, "request {i}");
        let v: Value = answer.json().await?;
        assert_eq!(
            v["classifier"]["degraded"],
            Value::Null,
            "request {i} was not classified: {}",
            v["classifier"]
        );
        let signals = &v["signals"];
        if i < 4 {
            assert_eq!(signals["truncated"], true, "request {i}: {signals}");
            let tokens = signals["prompt_tokens"].as_u64().unwrap_or(0);
            assert!(
                tokens > 100_000,
                "request {i}: a 900 KB prompt is estimated at {tokens} tokens"
            );
        } else {
            assert_eq!(signals["truncated"], false, "{signals}");
        }
    }
    Ok(())
}

/// `/v1/route` with the shipped heads: the prompt's windows, its truncation
/// and the injection head's verdict.
async fn route(gw: &Gateway, prompt: &str) -> Result<Value> {
    let answer = gw.post("/v1/route", dry_run(prompt)).await?;
    anyhow::ensure!(answer.status() == 200, "status {}", answer.status());
    let v: Value = answer.json().await?;
    anyhow::ensure!(
        v["classifier"]["degraded"].is_null(),
        "not classified: {}",
        v["classifier"]
    );
    Ok(v)
}

/// Issue 17, 3: a prompt past `encoder.max_tokens` used to be cut there,
/// so a jailbreak after 3,000 benign tokens never reached the injection
/// head. Now it is read in windows, the head flags it, and `/v1/route`
/// reports the windows and that nothing was cut; a prompt past
/// `encoder.max_total_tokens` (4,096) is reported truncated.
#[tokio::test]
async fn a_long_prompt_is_read_in_windows_and_route_says_how() -> Result<()> {
    let fakes = Fakes::start().await?;
    // Reading 4,096 tokens takes seconds on a 2-core CPU: no deadline here.
    let config = format!(
        "{}\nclassifier: {{ deadline: 120s }}\n",
        fakes.example_config()?
    );
    let gw = Gateway::start(&config).await?;

    let v = route(&gw, &format!("{}{JAILBREAK}", benign_text(45))).await?;
    let s = &v["signals"];
    let tokens = s["prompt_tokens"].as_u64().unwrap_or(0);
    assert!((3000..=4096).contains(&tokens), "{tokens} tokens: {s}");
    assert_eq!(s["truncated"], false, "{s}");
    assert_eq!(
        s["windows"].as_u64(),
        Some((tokens - 2).div_ceil(254)),
        "{s}"
    );
    assert_eq!(s["classifiers"]["injection"]["top"], "injection", "{s}");

    let v = route(&gw, &benign_text(45)).await?;
    assert_eq!(
        v["signals"]["classifiers"]["injection"]["top"], "benign",
        "{v}"
    );

    let v = route(&gw, &benign_text(90)).await?;
    let s = &v["signals"];
    assert_eq!(s["truncated"], true, "{s}");
    assert!(
        s["prompt_tokens"].as_u64().unwrap_or(0) > 4096,
        "counted whole: {s}"
    );
    assert_eq!(s["windows"], 17, "4,094 wordpieces in windows of 254: {s}");

    let v = route(&gw, "What is the capital of France?").await?;
    assert_eq!(
        (&v["signals"]["windows"], &v["signals"]["truncated"]),
        (&json!(1), &json!(false))
    );
    Ok(())
}
