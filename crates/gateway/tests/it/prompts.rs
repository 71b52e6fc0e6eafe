//! Prompt size against the embedded classifier: a huge prompt costs the
//! encoder what a long one does, so it cannot starve other requests.

use anyhow::Result;
use routemesh_test_support::gateway::{Fakes, Gateway};
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
/// carry their estimated length.
#[tokio::test]
async fn big_prompts_do_not_starve_the_embedded_classifier() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
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
