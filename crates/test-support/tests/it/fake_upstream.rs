//! Tests of the fake OpenAI upstream, served in-process on 127.0.0.1:0 and called with reqwest.
#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use futures_util::StreamExt;
use reqwest::StatusCode;
use routemesh_test_support::fake::{self, FakeConfig};
use serde_json::{Value, json};

/// A fake serving on a free loopback port; returns its base URL.
async fn start(cfg: FakeConfig) -> String {
    routemesh_runtime::install_tls_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(fake::serve(cfg, listener));
    format!("http://{addr}")
}

fn named(name: &str) -> FakeConfig {
    FakeConfig {
        name: name.to_owned(),
        ..FakeConfig::default()
    }
}

async fn post(base: &str, body: &Value) -> reqwest::Response {
    post_raw(base, body.to_string()).await
}

async fn post_raw(base: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn json_of(res: reqwest::Response) -> Value {
    serde_json::from_slice(&res.bytes().await.unwrap()).unwrap()
}

async fn get_json(url: String) -> Value {
    json_of(reqwest::get(url).await.unwrap()).await
}

fn chat(model: &str, content: Value) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }] })
}

/// The `data:` payloads of an SSE body, in order.
fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn non_streaming_reply_has_the_openai_shape() {
    let base = start(FakeConfig {
        reply_tokens: 5,
        ..named("alpha")
    })
    .await;
    let request = json!({ "model": "some-model", "messages": [
        { "role": "system", "content": "Be brief." },
        { "role": "user", "content": "What is 2+2?" },
    ]});
    let res = post(&base, &request).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-fake-upstream"], "alpha");
    let body = json_of(res).await;
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "some-model");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].as_u64().unwrap() > 0);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    let words: Vec<&str> = content.split(' ').collect();
    assert_eq!(words.len(), 5, "{content:?}");
    assert_eq!(words[0], "[alpha]");
    let prompt_chars = "Be brief.".len() + "What is 2+2?".len(); // 21 -> ceil(21 / 4) = 6
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_chars.div_ceil(4));
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(usage["total_tokens"], prompt_chars.div_ceil(4) + 5);
}

#[tokio::test]
async fn max_tokens_caps_the_reply_with_finish_reason_length() {
    let base = start(named("fake")).await;
    let mut request = chat("m", json!("hi"));
    request["max_completion_tokens"] = json!(3);
    let body = json_of(post(&base, &request).await).await;
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "[fake] token1 token2"
    );
}

#[tokio::test]
async fn streaming_sends_role_words_finish_usage_and_done() {
    let base = start(FakeConfig {
        reply_tokens: 4,
        ..named("beta")
    })
    .await;
    let mut request = chat("m", json!("hello"));
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": true });
    let res = post(&base, &request).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-fake-upstream"], "beta");
    let payloads = sse_payloads(&res.text().await.unwrap());
    // role chunk, 4 words, finish chunk, usage chunk, [DONE]
    assert_eq!(payloads.len(), 8, "{payloads:#?}");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..7]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "m");
        assert_eq!(chunk["id"], chunks[0]["id"]);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({ "role": "assistant", "content": "" })
    );
    let text: String = chunks[1..5]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "[beta] token1 token2 token3");
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[6]["choices"], json!([]));
    assert_eq!(chunks[6]["usage"]["completion_tokens"], 4);
    assert_eq!(chunks[6]["usage"]["prompt_tokens"], 2); // "hello": ceil(5 / 4)
}

#[tokio::test]
async fn streaming_without_include_usage_has_no_usage_chunk() {
    let base = start(FakeConfig {
        reply_tokens: 2,
        ..named("fake")
    })
    .await;
    let mut request = chat("m", json!("hello"));
    request["stream"] = json!(true);
    let payloads = sse_payloads(&post(&base, &request).await.text().await.unwrap());
    assert_eq!(payloads.len(), 5, "{payloads:#?}"); // role, 2 words, finish, [DONE]
    assert!(payloads.iter().all(|p| !p.contains("\"usage\"")));
}

#[tokio::test]
async fn streaming_chunks_are_sent_as_produced() {
    // At 2 tokens/s the words are 0.5 s apart, so the first frame to arrive can hold only the
    // role chunk; a buffered body would deliver everything (and [DONE]) at once.
    let base = start(FakeConfig {
        tokens_per_sec: 2.0,
        reply_tokens: 3,
        ..named("fake")
    })
    .await;
    let mut request = chat("m", json!("hello"));
    request["stream"] = json!(true);
    let mut stream = post(&base, &request).await.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first = std::str::from_utf8(&first).unwrap();
    assert_eq!(sse_payloads(first).len(), 1, "{first:?}");
    assert!(first.contains("\"role\":\"assistant\""), "{first:?}");
}

#[tokio::test]
async fn unknown_served_model_gets_404_model_not_found() {
    let base = start(FakeConfig {
        served_models: vec!["qwen-math-7b".to_owned(), "llama-3.2-1b".to_owned()],
        ..named("fake")
    })
    .await;
    let res = post(&base, &chat("gpt-4o", json!("hi"))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-fake-upstream"], "fake");
    let error = &json_of(res).await["error"];
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("gpt-4o"));

    let res = post(&base, &chat("llama-3.2-1b", json!("hi"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let models = get_json(format!("{base}/v1/models")).await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["qwen-math-7b", "llama-3.2-1b"]);
    let stats = get_json(format!("{base}/stats")).await;
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["last_authorization"], json!(null));
    assert_eq!(stats["last_body"], chat("llama-3.2-1b", json!("hi")));
    assert_eq!(stats["last_headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn bad_requests_get_400_with_an_openai_error() {
    let base = start(named("fake")).await;
    let bodies = [
        "{not json".to_owned(),
        json!({ "model": "m" }).to_string(),
        json!({ "messages": [{ "role": "user", "content": "hi" }] }).to_string(),
    ];
    for body in bodies {
        let res = post_raw(&base, body.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = &json_of(res).await["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(get_json(format!("{base}/stats")).await["requests"], 3);
}

#[tokio::test]
async fn echo_replies_with_the_last_user_message() {
    let base = start(FakeConfig {
        echo: true,
        ..named("fake")
    })
    .await;
    let request = json!({ "model": "m", "messages": [
        { "role": "user", "content": "first question" },
        { "role": "assistant", "content": "an answer" },
        { "role": "user", "content": "say  exactly\nthis" },
    ]});
    let body = json_of(post(&base, &request).await).await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "say  exactly\nthis"
    );
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let parts =
        json!([{ "type": "text", "text": "from parts" }, { "type": "text", "text": "too" }]);
    let body = json_of(post(&base, &chat("m", parts)).await).await;
    assert_eq!(body["choices"][0]["message"]["content"], "from parts\ntoo");

    let mut request = chat("m", json!("streamed echo"));
    request["stream"] = json!(true);
    let payloads = sse_payloads(&post(&base, &request).await.text().await.unwrap());
    let text: String = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "streamed echo");
}

#[tokio::test]
async fn error_rate_one_answers_500_server_error() {
    let base = start(FakeConfig {
        error_rate: 1.0,
        ..named("broken")
    })
    .await;
    for _ in 0..3 {
        let res = post(&base, &chat("m", json!("hi"))).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["x-fake-upstream"], "broken");
        assert_eq!(json_of(res).await["error"]["type"], "server_error");
    }
    assert_eq!(get_json(format!("{base}/stats")).await["requests"], 3);
}

#[tokio::test]
async fn a_seed_reproduces_the_failure_sequence() {
    let cfg = FakeConfig {
        error_rate: 0.5,
        seed: 7,
        ..named("flaky")
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let base = start(cfg.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..24 {
            statuses.push(post(&base, &chat("m", json!("hi"))).await.status().as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&500),
        "{:?}",
        runs[0]
    );
}

#[tokio::test]
async fn health_and_unknown_paths_carry_the_identity_header() {
    let base = start(named("gamma")).await;
    let res = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-fake-upstream"], "gamma");
    let res = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-fake-upstream"], "gamma");
}

#[test]
fn invalid_configs_are_refused() {
    let bad = [
        FakeConfig {
            error_rate: 1.5,
            ..named("x")
        },
        FakeConfig {
            tokens_per_sec: -1.0,
            ..named("x")
        },
        FakeConfig {
            tokens_per_sec: f64::NAN,
            ..named("x")
        },
        named(""),
        named("bad\nname"),
    ];
    for cfg in bad {
        assert!(fake::router(cfg.clone()).is_err(), "{cfg:?}");
    }
    assert!(fake::router(named("ok")).is_ok());
}
