//! The semantic cache end to end: exact and semantic hits, scopes that must
//! never share answers (tenants, system prompts, parameters), streams stored
//! and replayed, coalesced misses, `Cache-Control`, per-decision policies,
//! the admin endpoints, and hits that survive a restart (real sled files).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use routemesh_test_support::fake::FakeConfig;
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use serde_json::{Value, json};

/// Semantic threshold of the default decision in [`config`].
const THRESHOLD: f64 = 0.8;

/// One fake model; prompts with `uncacheable` take a decision whose cache
/// is off, `literally` one that caches exactly, the rest the default
/// (semantic, threshold 0.8). `store` is the sled directory, if any.
fn config(fake: &Fake, store: Option<&Path>) -> String {
    let store = store.map_or(String::new(), |p| format!(", store: \"{}\"", p.display()));
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: a, base_url: "{a}/v1" }}
models:
  - {{ name: model-a, upstream: a }}
signals:
  keywords:
    - {{ name: private, patterns: [uncacheable] }}
    - {{ name: literal, patterns: [literally] }}
decisions:
  - {{ name: private, when: {{ keyword: private }}, models: [model-a], cache: off }}
  - {{ name: literal, when: {{ keyword: literal }}, models: [model-a], cache: exact }}
default: {{ model: model-a, cache: {{ mode: semantic, threshold: {THRESHOLD} }} }}
cache: {{ shards: 2, capacity: 100{store} }}
"#,
        model = model_dir().display(),
        a = fake.base,
    )
}

/// A request with extra fields and headers.
struct Ask<'a> {
    body: Value,
    headers: Vec<(&'a str, &'a str)>,
}

fn ask(prompt: &str) -> Ask<'static> {
    Ask {
        body: serde_json::from_str(&chat("auto", prompt)).unwrap_or(Value::Null),
        headers: Vec::new(),
    }
}

impl<'a> Ask<'a> {
    fn with(mut self, key: &str, value: Value) -> Self {
        if let Value::Object(m) = &mut self.body {
            m.insert(key.to_owned(), value);
        }
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// What came back: the cache headers and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    cache: String,
    tier: String,
    similarity: String,
    content_type: String,
    body: String,
}

async fn send(gw: &Gateway, a: &Ask<'_>) -> Result<Answer> {
    let mut req = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(a.body.to_string());
    for (n, v) in &a.headers {
        req = req.header(*n, *v);
    }
    let resp = req.send().await?;
    let answer = Answer {
        status: resp.status().as_u16(),
        cache: header(&resp, "x-routemesh-cache"),
        tier: header(&resp, "x-routemesh-cache-tier"),
        similarity: header(&resp, "x-routemesh-cache-similarity"),
        content_type: header(&resp, "content-type"),
        body: resp.text().await.unwrap_or_default(),
    };
    ensure!(
        answer.status == 200,
        "status {}: {}",
        answer.status,
        answer.body
    );
    Ok(answer)
}

/// Waits (up to 10 s) until the cache holds `n` entries: inserts happen
/// after the answer has been relayed.
async fn wait_for_entries(gw: &Gateway, n: u64) -> Result<Value> {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = gw.get_json("/admin/cache").await?;
        if last["entries"].as_u64() == Some(n) {
            return Ok(last);
        }
        // Real: polling the gateway process; its cache insert follows the answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the cache never held {n} entries: {last}")
}

const QUESTION: &str = "How do I reverse a list in Python?";

#[tokio::test]
async fn the_same_question_twice_is_answered_from_the_cache() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;

    let first = send(&gw, &ask(QUESTION)).await?;
    assert_eq!(first.cache, "miss");
    wait_for_entries(&gw, 1).await?;
    let second = send(&gw, &ask(QUESTION)).await?;
    assert_eq!(second.cache, "hit", "{second:?}");
    assert_eq!(second.tier, "exact");
    assert_eq!(second.similarity, "1.0000");
    assert_eq!(second.body, first.body, "the stored answer, byte for byte");
    assert_eq!(fake.requests().await?, 1);

    // Whitespace around and inside the prompt does not matter.
    let spaced = send(&gw, &ask("  How do I reverse a list   in Python? ")).await?;
    assert_eq!(
        (spaced.cache.as_str(), spaced.tier.as_str()),
        ("hit", "exact")
    );
    assert_eq!(fake.requests().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_close_paraphrase_hits_and_another_question_misses() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;
    let first = send(&gw, &ask(QUESTION)).await?;
    wait_for_entries(&gw, 1).await?;

    let paraphrase = send(&gw, &ask("How can I reverse a Python list?")).await?;
    assert_eq!(paraphrase.cache, "hit", "{paraphrase:?}");
    assert_eq!(paraphrase.tier, "semantic");
    let similarity: f64 = paraphrase.similarity.parse()?;
    assert!(
        (THRESHOLD..1.0).contains(&similarity),
        "similarity {similarity} should be in [{THRESHOLD}, 1)"
    );
    assert_eq!(paraphrase.body, first.body);

    let other = send(
        &gw,
        &ask("What is the boiling point of water at sea level?"),
    )
    .await?;
    assert_eq!(other.cache, "miss", "{other:?}");
    assert_eq!(fake.requests().await?, 2);
    Ok(())
}

#[tokio::test]
async fn other_tenants_system_prompts_and_parameters_never_share_answers() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;
    let tenant_a = ask(QUESTION).header("authorization", "Bearer key-of-tenant-a");
    send(&gw, &tenant_a).await?;
    wait_for_entries(&gw, 1).await?;

    let tenant_b = ask(QUESTION).header("authorization", "Bearer key-of-tenant-b");
    let anonymous = ask(QUESTION);
    let system = Ask {
        body: json!({ "model": "auto", "messages": [
            { "role": "system", "content": "Answer in French." },
            { "role": "user", "content": QUESTION },
        ] }),
        headers: vec![("authorization", "Bearer key-of-tenant-a")],
    };
    let earlier_turn = Ask {
        body: json!({ "model": "auto", "messages": [
            { "role": "user", "content": "I use Python 2." },
            { "role": "assistant", "content": "Noted." },
            { "role": "user", "content": QUESTION },
        ] }),
        headers: vec![("authorization", "Bearer key-of-tenant-a")],
    };
    let sampling = ask(QUESTION)
        .with("temperature", json!(1.5))
        .header("authorization", "Bearer key-of-tenant-a");
    for (name, a) in [
        ("another tenant", &tenant_b),
        ("no credential", &anonymous),
        ("a system prompt", &system),
        ("an earlier turn", &earlier_turn),
        ("other sampling parameters", &sampling),
    ] {
        let got = send(&gw, a).await?;
        assert_eq!(got.cache, "miss", "{name} must miss: {got:?}");
    }
    // The original scope still hits.
    let again = send(&gw, &tenant_a).await?;
    assert_eq!(again.cache, "hit");
    assert_eq!(fake.requests().await?, 6);
    Ok(())
}

#[tokio::test]
async fn a_completed_stream_is_replayed_and_a_broken_one_never_stored() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;
    let stream = ask(QUESTION).with("stream", json!(true));
    let first = send(&gw, &stream).await?;
    assert!(
        first.body.trim_end().ends_with("data: [DONE]"),
        "{}",
        first.body
    );
    wait_for_entries(&gw, 1).await?;
    let second = send(&gw, &stream).await?;
    assert_eq!(second.cache, "hit");
    assert!(
        second.content_type.starts_with("text/event-stream"),
        "{second:?}"
    );
    assert_eq!(second.body, first.body);
    // The same question without streaming is another context.
    let plain = send(&gw, &ask(QUESTION)).await?;
    assert_eq!(plain.cache, "miss");
    assert_eq!(fake.requests().await?, 2);

    let breaking = Fake::start(FakeConfig {
        name: "b".into(),
        served_models: vec!["model-a".into()],
        break_stream_after: Some(2),
        // Spaced chunks: the headers and first chunks are sent before the
        // break (an immediate error would abort the response unsent).
        tokens_per_sec: 50.0,
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&config(&breaking, None)).await?;
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(stream.body.to_string())
        .send()
        .await?;
    assert_eq!(header(&resp, "x-routemesh-cache"), "miss");
    let text = resp.text().await;
    assert!(text.is_err(), "the stream was cut off: {text:?}");
    // The gateway drops what it collected before passing the error on, so
    // once the client has seen the break there is nothing to wait for.
    let stats = gw.get_json("/admin/cache").await?;
    assert_eq!(stats["entries"], 0, "nothing was stored: {stats}");
    assert_eq!(stats["inserts"], 0, "{stats}");
    Ok(())
}

#[tokio::test]
async fn identical_concurrent_misses_make_one_upstream_call() -> Result<()> {
    let slow = Fake::start(FakeConfig {
        name: "slow".into(),
        served_models: vec!["model-a".into()],
        latency: Duration::from_millis(800),
        ..FakeConfig::default()
    })
    .await?;
    let gw = Gateway::start(&config(&slow, None)).await?;
    let question = ask(QUESTION);
    let answers = futures_util::future::join_all((0..6).map(|_| send(&gw, &question))).await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_>>()?;
    assert_eq!(
        slow.requests().await?,
        1,
        "one upstream call for six requests"
    );
    let hits = answers.iter().filter(|a| a.cache == "hit").count();
    assert_eq!(hits, 5, "{answers:?}");
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    Ok(())
}

#[tokio::test]
async fn cache_control_and_decision_policies_are_obeyed() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;

    // no-store: answered, not stored.
    let no_store = send(&gw, &ask(QUESTION).header("cache-control", "no-store")).await?;
    assert_eq!(no_store.cache, "miss");
    let stats = gw.get_json("/admin/cache").await?;
    assert_eq!(stats["entries"], 0, "{stats}");
    send(&gw, &ask(QUESTION)).await?;
    wait_for_entries(&gw, 1).await?;
    // no-cache: not answered from the cache.
    let no_cache = send(&gw, &ask(QUESTION).header("cache-control", "no-cache")).await?;
    assert_eq!(no_cache.cache, "bypass");
    assert_eq!(fake.requests().await?, 3);

    // A decision with `cache: off` never stores nor hits.
    let private = "Please keep this uncacheable: my account number question";
    for _ in 0..2 {
        let got = send(&gw, &ask(private)).await?;
        assert_eq!(got.cache, "off");
    }
    assert_eq!(fake.requests().await?, 5);

    // `cache: exact`: the same text hits, a paraphrase does not.
    let literal = "Tell me literally what the capital of France is";
    send(&gw, &ask(literal)).await?;
    wait_for_entries(&gw, 2).await?;
    let same = send(&gw, &ask(literal)).await?;
    assert_eq!((same.cache.as_str(), same.tier.as_str()), ("hit", "exact"));
    let close = send(
        &gw,
        &ask("Tell me literally what the capital city of France is"),
    )
    .await?;
    assert_eq!(close.cache, "miss", "{close:?}");

    // A passthrough request (a model named) uses the exact tier.
    let direct = Ask {
        body: serde_json::from_str(&chat("model-a", QUESTION))?,
        headers: Vec::new(),
    };
    assert_eq!(send(&gw, &direct).await?.cache, "miss");
    wait_for_entries(&gw, 4).await?;
    let again = send(&gw, &direct).await?;
    assert_eq!(
        (again.cache.as_str(), again.tier.as_str()),
        ("hit", "exact")
    );
    Ok(())
}

#[tokio::test]
async fn the_admin_endpoints_report_invalidate_and_flush() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, None)).await?;
    send(&gw, &ask(QUESTION)).await?;
    send(&gw, &ask("literally: what is a monad?")).await?;
    send(
        &gw,
        &ask("What is the boiling point of water at sea level?"),
    )
    .await?;
    let stats = wait_for_entries(&gw, 3).await?;
    assert_eq!(stats["shards"].as_array().map(Vec::len), Some(2), "{stats}");
    assert_eq!(stats["inserts"], 3);

    let removed: Value = gw
        .post("/admin/cache/invalidate", r#"{"decision": "literal"}"#)
        .await?
        .json()
        .await?;
    assert_eq!(removed["removed"], 1, "{removed}");
    wait_for_entries(&gw, 2).await?;
    let after = send(&gw, &ask("literally: what is a monad?")).await?;
    assert_eq!(after.cache, "miss");

    let bad = gw.post("/admin/cache/invalidate", "{}").await?;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("flush")),
        "{body}"
    );

    let flushed: Value = gw.post("/admin/cache/flush", "").await?.json().await?;
    assert_eq!(flushed["removed"], 3, "{flushed}");
    let stats = gw.get_json("/admin/cache").await?;
    assert_eq!(stats["entries"], 0, "{stats}");
    let again = send(&gw, &ask(QUESTION)).await?;
    assert_eq!(again.cache, "miss");
    Ok(())
}

#[tokio::test]
async fn without_a_cache_section_there_is_no_cache() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let text = config(&fake, None);
    let without = text
        .lines()
        .filter(|l| !l.starts_with("cache:"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(", cache: off", "")
        .replace(", cache: exact", "")
        .replace(", cache: { mode: semantic, threshold: 0.8 }", "");
    let gw = Gateway::start(&without).await?;
    for _ in 0..2 {
        let got = send(&gw, &ask(QUESTION)).await?;
        assert_eq!(got.cache, "", "no cache header without a cache");
    }
    assert_eq!(fake.requests().await?, 2);
    let resp = reqwest::get(gw.url("/admin/cache")).await?;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "cache_disabled");
    Ok(())
}

#[tokio::test]
async fn hits_survive_a_restart() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("cache");
    let text = config(&fake, Some(&store));
    let mut gw = Gateway::start(&text).await?;
    let first = send(&gw, &ask(QUESTION)).await?;
    let stream = ask(QUESTION).with("stream", json!(true));
    let first_stream = send(&gw, &stream).await?;
    wait_for_entries(&gw, 2).await?;
    let code = gw.terminate().await?;
    assert_eq!(code, Some(0), "clean shutdown");

    let gw = Gateway::start(&text).await?;
    let stats = gw.get_json("/admin/cache").await?;
    assert_eq!(stats["entries"], 2, "entries reloaded from sled: {stats}");
    let exact = send(&gw, &ask(QUESTION)).await?;
    assert_eq!(
        (exact.cache.as_str(), exact.tier.as_str()),
        ("hit", "exact")
    );
    assert_eq!(exact.body, first.body);
    let paraphrase = send(&gw, &ask("How can I reverse a Python list?")).await?;
    assert_eq!(
        (paraphrase.cache.as_str(), paraphrase.tier.as_str()),
        ("hit", "semantic"),
        "the index was rebuilt from the store"
    );
    let replay = send(&gw, &stream).await?;
    assert_eq!(replay.cache, "hit");
    assert_eq!(replay.body, first_stream.body);
    assert_eq!(fake.requests().await?, 2);
    let _ = std::fs::metadata(&store).context("the store is a directory on disk")?;
    Ok(())
}
