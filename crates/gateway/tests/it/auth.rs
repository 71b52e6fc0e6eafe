//! API keys, tenants and the admin token end to end: 401 and 403 with
//! OpenAI-style bodies, keys from a variable and from a file, the cache
//! scoped by the key's tenant, client `x-routemesh-*` headers stripped,
//! the prompt-length limit, bad key sources refused at start, and the open
//! gateway without an `auth:` section.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use serde_json::{Value, json};

const ACME_ENV: &str = "acme-key-from-env-0001";
const ACME_FILE: &str = "acme-key-from-file-0002";
const GLOBEX: &str = "globex-key-from-file-0003";
const ADMIN: &str = "admin-token-0123456789";

/// One fake model, exact-or-semantic cache in one shard, and `extra`
/// sections (YAML) appended.
fn config(fake: &Fake, extra: &str) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: a, base_url: "{a}/v1" }}
models:
  - {{ name: model-a, upstream: a }}
default: {{ model: model-a }}
cache: {{ shards: 1, capacity: 100 }}
{extra}
"#,
        model = model_dir().display(),
        a = fake.base,
    )
}

/// A gateway with `auth:` on: acme's first key in the variable, its second
/// and globex's in a keys file (with a comment line), an admin token.
async fn guarded(fake: &Fake, dir: &tempfile::TempDir) -> Result<Gateway> {
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        format!("# tenant key\nacme {ACME_FILE}\n\nglobex {GLOBEX}\n"),
    )?;
    let auth = format!(
        "auth:\n  keys_env: TEST_API_KEYS\n  keys_file: \"{}\"\n  admin_token_env: TEST_ADMIN_TOKEN\n",
        keys.display()
    );
    let env = format!("acme:{ACME_ENV}");
    Gateway::start_with_env(
        &config(fake, &auth),
        &[("TEST_API_KEYS", &env), ("TEST_ADMIN_TOKEN", ADMIN)],
    )
    .await
}

/// Sends `method path` with an optional bearer credential and extra headers.
async fn send(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<reqwest::Response> {
    let mut req = reqwest::Client::new().request(method, gw.url(path));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    Ok(req.send().await?)
}

async fn ask(gw: &Gateway, key: Option<&str>, prompt: &str) -> Result<reqwest::Response> {
    send(
        gw,
        reqwest::Method::POST,
        "/v1/chat/completions",
        key,
        &[],
        Some(chat("auto", prompt)),
    )
    .await
}

/// Checks an OpenAI-style error: status, `type`, `code`; returns the message.
async fn error(resp: reqwest::Response, status: u16, kind: &str, code: &str) -> Result<String> {
    ensure!(
        resp.status().as_u16() == status,
        "expected {status}, got {}",
        resp.status()
    );
    ensure!(
        header(&resp, "x-routemesh-request-id").len() == 32,
        "every response has a request id"
    );
    let body: Value = resp.json().await?;
    let e = &body["error"];
    ensure!(
        e["type"] == kind && e["code"] == code,
        "expected {kind}/{code}: {body}"
    );
    e["message"]
        .as_str()
        .map(str::to_owned)
        .context("no message")
}

/// The `x-routemesh-cache` header of a successful chat answer.
async fn cache_outcome(gw: &Gateway, key: &str, prompt: &str) -> Result<String> {
    let resp = ask(gw, Some(key), prompt).await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    let outcome = header(&resp, "x-routemesh-cache");
    resp.bytes().await?;
    Ok(outcome)
}

/// Waits (up to 10 s) until the cache holds `n` entries: inserts happen
/// after the answer has been relayed.
async fn wait_for_entries(gw: &Gateway, n: u64) -> Result<()> {
    let mut last = Value::Null;
    for _ in 0..200 {
        let resp = send(
            gw,
            reqwest::Method::GET,
            "/admin/cache",
            Some(ADMIN),
            &[],
            None,
        )
        .await?;
        ensure!(resp.status() == 200, "admin stats: {}", resp.status());
        last = resp.json().await?;
        if last["entries"].as_u64() == Some(n) {
            return Ok(());
        }
        // Real: polling the gateway process; its cache insert follows the answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the cache never held {n} entries: {last}")
}

#[tokio::test]
async fn a_request_without_a_valid_key_gets_401_and_an_admin_call_without_the_admin_token_403()
-> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let gw = guarded(&fake, &dir).await?;
    use reqwest::Method as M;

    let resp = ask(&gw, None, "hello").await?;
    assert_eq!(header(&resp, "www-authenticate"), "Bearer");
    let message = error(resp, 401, "invalid_request_error", "invalid_api_key").await?;
    assert!(message.contains("Authorization: Bearer"), "{message}");
    for wrong in ["acme-key-from-env-0009", ADMIN] {
        let resp = ask(&gw, Some(wrong), "hello").await?;
        error(resp, 401, "invalid_request_error", "invalid_api_key").await?;
    }
    let basic = send(
        &gw,
        M::GET,
        "/v1/models",
        None,
        &[("authorization", &format!("Basic {ACME_ENV}"))],
        None,
    )
    .await?;
    error(basic, 401, "invalid_request_error", "invalid_api_key").await?;
    // Every path but the health checks is closed, unknown ones included.
    for path in ["/v1/models", "/v1/nothing-here", "/"] {
        let resp = send(&gw, M::GET, path, None, &[], None).await?;
        error(resp, 401, "invalid_request_error", "invalid_api_key").await?;
    }
    for path in ["/healthz", "/readyz"] {
        let resp = send(&gw, M::GET, path, None, &[], None).await?;
        assert_eq!(resp.status(), 200, "{path} stays open");
    }
    // Different prompts: acme's two keys would share a cached answer.
    let prompts = [
        "What is Rust?",
        "How tall is Mount Everest?",
        "Write a haiku about autumn.",
    ];
    for (key, prompt) in [ACME_ENV, ACME_FILE, GLOBEX].into_iter().zip(prompts) {
        let resp = send(&gw, M::GET, "/v1/models", Some(key), &[], None).await?;
        assert_eq!(resp.status(), 200);
        let resp = ask(&gw, Some(key), prompt).await?;
        assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    }
    assert_eq!(
        fake.requests().await?,
        3,
        "refused requests never went upstream"
    );

    for token in [None, Some(ACME_ENV), Some("admin-token-0123456780")] {
        let resp = send(&gw, M::GET, "/admin/cache", token, &[], None).await?;
        error(resp, 403, "invalid_request_error", "forbidden").await?;
        let resp = send(&gw, M::POST, "/admin/cache/flush", token, &[], None).await?;
        error(resp, 403, "invalid_request_error", "forbidden").await?;
    }
    let resp = send(&gw, M::GET, "/admin/cache", Some(ADMIN), &[], None).await?;
    assert_eq!(resp.status(), 200);
    let resp = send(&gw, M::GET, "/admin/learning", Some(ADMIN), &[], None).await?;
    assert_eq!(resp.status(), 200);
    // The admin token opens the admin endpoints only.
    let resp = ask(&gw, Some(ADMIN), "hello").await?;
    error(resp, 401, "invalid_request_error", "invalid_api_key").await?;

    let logs = without_ansi(&gw.logs());
    for secret in [ACME_ENV, ACME_FILE, GLOBEX, ADMIN] {
        assert!(!logs.contains(secret), "a secret was logged");
    }
    assert!(logs.contains("tenant=acme"), "the tenant is a log field");
    Ok(())
}

#[tokio::test]
async fn keys_of_one_tenant_share_cache_hits_and_other_tenants_never_do() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let gw = guarded(&fake, &dir).await?;
    let prompt = "What is the capital of France?";

    assert_eq!(cache_outcome(&gw, ACME_ENV, prompt).await?, "miss");
    wait_for_entries(&gw, 1).await?;
    assert_eq!(
        cache_outcome(&gw, ACME_FILE, prompt).await?,
        "hit",
        "another key of the same tenant"
    );
    assert_eq!(cache_outcome(&gw, GLOBEX, prompt).await?, "miss");
    wait_for_entries(&gw, 2).await?;
    assert_eq!(fake.requests().await?, 2);

    // The scope's tenant is the configured name.
    let resp = send(
        &gw,
        reqwest::Method::POST,
        "/admin/cache/invalidate",
        Some(ADMIN),
        &[],
        Some(json!({ "tenant": "acme" }).to_string()),
    )
    .await?;
    assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    wait_for_entries(&gw, 1).await?;
    assert_eq!(cache_outcome(&gw, ACME_FILE, prompt).await?, "miss");
    assert_eq!(cache_outcome(&gw, GLOBEX, prompt).await?, "hit");
    Ok(())
}

/// Regression (issue 16, 8): tenant B could rate tenant A's request given
/// its id. Another tenant's feedback is a 404 (the request is unknown to
/// it); any key of the request's own tenant may rate it.
#[tokio::test]
async fn feedback_across_tenants_is_refused() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let gw = guarded(&fake, &dir).await?;
    let resp = ask(&gw, Some(ACME_ENV), "Which tenant am I?").await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    let id = header(&resp, "x-routemesh-request-id");
    let rate = |key: &'static str| {
        let body = json!({ "request_id": id, "reward": "up" }).to_string();
        let gw = &gw;
        async move {
            send(
                gw,
                reqwest::Method::POST,
                "/v1/feedback",
                Some(key),
                &[],
                Some(body),
            )
            .await
        }
    };
    error(
        rate(GLOBEX).await?,
        404,
        "invalid_request_error",
        "request_not_found",
    )
    .await?;
    let resp = rate(ACME_FILE).await?;
    ensure!(
        resp.status() == 200,
        "acme's other key: {}",
        resp.text().await?
    );
    Ok(())
}

#[tokio::test]
async fn spoofed_routemesh_headers_have_no_effect_and_never_reach_the_upstream() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let gw = guarded(&fake, &dir).await?;
    let prompt = "Name three prime numbers.";
    assert_eq!(cache_outcome(&gw, ACME_ENV, prompt).await?, "miss");
    wait_for_entries(&gw, 1).await?;

    let spoofed = [
        ("x-routemesh-tenant", "acme"),
        ("x-routemesh-request-id", "spoofed"),
        ("x-routemesh-decision", "spoofed"),
        ("x-routemesh-cache", "hit"),
        ("x-team", "kept"),
    ];
    let resp = send(
        &gw,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some(GLOBEX),
        &spoofed,
        Some(chat("auto", prompt)),
    )
    .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-routemesh-cache"),
        "miss",
        "claiming another tenant does not reach its answers"
    );
    assert_ne!(header(&resp, "x-routemesh-request-id"), "spoofed");
    assert_eq!(header(&resp, "x-routemesh-decision"), "default");
    resp.bytes().await?;

    let stats: Value = reqwest::get(format!("{}/stats", fake.base))
        .await?
        .json()
        .await?;
    let seen = stats["last_headers"]
        .as_object()
        .context("the fake records headers")?;
    assert_eq!(seen.get("x-team"), Some(&json!("kept")), "{stats}");
    assert_eq!(
        stats["last_authorization"],
        Value::Null,
        "the client's key is not sent upstream"
    );
    let leaked: Vec<&String> = seen
        .keys()
        .filter(|k| k.starts_with("x-routemesh-"))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
    Ok(())
}

#[tokio::test]
async fn without_an_auth_section_the_gateway_is_open_and_long_prompts_get_400() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let gw = Gateway::start(&config(&fake, "server: { max_prompt_chars: 40 }")).await?;
    use reqwest::Method as M;

    // Open as before: no key needed anywhere, tenants derived from the credential.
    assert_eq!(
        cache_outcome_open(&gw, None, "What is 2 + 2?").await?,
        "miss"
    );
    let resp = send(&gw, M::GET, "/admin/cache", None, &[], None).await?;
    assert_eq!(resp.status(), 200);
    for _ in 0..200 {
        let stats = gw.get_json("/admin/cache").await?;
        if stats["entries"] == 1 {
            break;
        }
        // Real: polling the gateway process; its cache insert follows the answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cache_outcome_open(&gw, None, "What is 2 + 2?").await?,
        "hit"
    );
    assert_eq!(
        cache_outcome_open(&gw, Some("sk-whoever-1234567890"), "What is 2 + 2?").await?,
        "miss",
        "another credential is another tenant"
    );

    // 40 characters pass (multi-byte ones count once), 41 do not.
    let at_limit = "é".repeat(40);
    assert_eq!(ask(&gw, None, &at_limit).await?.status(), 200);
    let before = fake.requests().await?;
    let too_long = format!("{at_limit}!");
    let message = error(
        ask(&gw, None, &too_long).await?,
        400,
        "invalid_request_error",
        "context_length_exceeded",
    )
    .await?;
    assert!(
        message.contains("41") && message.contains("40"),
        "{message}"
    );
    let dry = gw.post("/v1/route", chat("auto", &too_long)).await?;
    error(dry, 400, "invalid_request_error", "context_length_exceeded").await?;
    // Only the last user message counts.
    let earlier = json!({ "model": "auto", "messages": [
        { "role": "user", "content": too_long },
        { "role": "assistant", "content": "ok" },
        { "role": "user", "content": "short" },
    ] });
    assert_eq!(
        gw.post("/v1/chat/completions", earlier.to_string())
            .await?
            .status(),
        200
    );
    assert_eq!(
        fake.requests().await?,
        before + 1,
        "the long prompt was not forwarded"
    );
    Ok(())
}

async fn cache_outcome_open(gw: &Gateway, bearer: Option<&str>, prompt: &str) -> Result<String> {
    let resp = ask(gw, bearer, prompt).await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    let outcome = header(&resp, "x-routemesh-cache");
    resp.bytes().await?;
    Ok(outcome)
}

#[test]
fn missing_key_variables_and_bad_key_files_stop_the_gateway_with_64() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("acme {ACME_FILE}\nglobex\n"))?;
    let path = dir.path().join("routemesh.yaml");
    std::fs::write(
        &path,
        format!(
            "encoder: {{ model_dir: \"{}\" }}\n\
             upstreams: [ {{ name: a, base_url: \"http://127.0.0.1:9/v1\" }} ]\n\
             models: [ {{ name: model-a, upstream: a }} ]\n\
             default: {{ model: model-a }}\n\
             auth: {{ keys_env: TEST_UNSET_KEYS, keys_file: keys, admin_token_env: TEST_UNSET_ADMIN }}\n",
            model_dir().display()
        ),
    )?;
    let p = path.display().to_string();
    for args in [
        vec!["check-config", &p],
        vec!["serve", "--listen", "127.0.0.1:0", "--config", &p],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_routemesh"))
            .args(&args)
            .env_remove("TEST_UNSET_KEYS")
            .env_remove("TEST_UNSET_ADMIN")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stdout}{err}");
        assert!(!stdout.contains("listening"), "nothing is bound");
        for expected in [
            "auth.keys_env: the environment variable `TEST_UNSET_KEYS` is not set",
            &format!(
                "auth.keys_file: {} line 2: expected `TENANT KEY`",
                keys.display()
            ),
            "auth.admin_token_env: the environment variable `TEST_UNSET_ADMIN` is not set",
        ] {
            assert!(
                err.contains(expected),
                "{args:?}: missing {expected:?} in {err}"
            );
        }
        assert!(!err.contains(ACME_FILE), "the key is never printed");
    }
    Ok(())
}

/// The log text without terminal colour codes (`ESC [ … m`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Anthropic's clients send `x-api-key`: it names the tenant like a bearer
/// key, is never sent upstream (nor are `anthropic-*` headers), and a
/// missing or wrong key is a 401 in Anthropic's error shape on
/// `/v1/messages`.
#[tokio::test]
async fn an_x_api_key_names_the_tenant_on_the_messages_api_and_stays_here() -> Result<()> {
    let fake = Fake::serving("a", "model-a").await?;
    let dir = tempfile::tempdir()?;
    let gw = guarded(&fake, &dir).await?;
    let body = json!({
        "model": "auto", "max_tokens": 16,
        "messages": [{ "role": "user", "content": "Name three prime numbers." }],
    })
    .to_string();
    let anthropic = [("anthropic-version", "2023-06-01")];
    for key in [None, Some("wrong-key")] {
        let mut headers = anthropic.to_vec();
        if let Some(k) = key {
            headers.push(("x-api-key", k));
        }
        let resp = send(
            &gw,
            reqwest::Method::POST,
            "/v1/messages",
            None,
            &headers,
            Some(body.clone()),
        )
        .await?;
        assert_eq!(resp.status(), 401, "{key:?}");
        let v: Value = resp.json().await?;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "authentication_error", "{v}");
    }
    let mut headers = anthropic.to_vec();
    headers.push(("x-api-key", GLOBEX));
    let resp = send(
        &gw,
        reqwest::Method::POST,
        "/v1/messages",
        None,
        &headers,
        Some(body),
    )
    .await?;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await?;
    assert_eq!(v["type"], "message", "{v}");

    let stats: Value = reqwest::get(format!("{}/stats", fake.base))
        .await?
        .json()
        .await?;
    let seen = stats["last_headers"]
        .as_object()
        .context("the fake records headers")?;
    let leaked: Vec<&String> = seen
        .keys()
        .filter(|k| *k == "x-api-key" || k.starts_with("anthropic-"))
        .collect();
    assert!(leaked.is_empty(), "reached the upstream: {leaked:?}");
    Ok(())
}
