//! Learning: Thompson-sampled decisions, explicit feedback, implicit
//! outcomes, persistence across a SIGKILL, and learning shared between
//! gateways through a real JetStream stream.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use routemesh_test_support::fake::FakeConfig;
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use routemesh_test_support::nats_server::NatsServer;
use serde_json::{Value, json};

/// Two fakes serving `model-a` and `model-b`.
async fn fakes() -> Result<(Fake, Fake)> {
    Ok((
        Fake::serving("a", "model-a").await?,
        Fake::serving("b", "model-b").await?,
    ))
}

/// A gateway config: prompts with the word `learnme` go to the `learned`
/// decision (Thompson over model-a and model-b, priors as given), the rest
/// to model-a. `learning` is the body of the `learning:` section.
fn config(a: &Fake, b: &Fake, priors: ((u32, u32), (u32, u32)), learning: &str) -> String {
    let ((aa, ab), (ba, bb)) = priors;
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: a, base_url: "{a}/v1" }}
  - {{ name: b, base_url: "{b}/v1", family: vllm }}
  - {{ name: dead, base_url: "http://127.0.0.1:9/v1", timeout: 2s }}
models:
  - {{ name: model-a, upstream: a, cost: {{ input_per_mtok: 1, output_per_mtok: 2 }} }}
  - {{ name: model-b, upstream: b }}
  - {{ name: model-dead, upstream: dead }}
signals:
  keywords:
    - {{ name: tagged, patterns: [learnme] }}
    - {{ name: doomed, patterns: [doomed] }}
decisions:
  - name: learned
    when: {{ keyword: tagged }}
    models:
      - {{ model: model-a, prior: {{ alpha: {aa}, beta: {ab} }} }}
      - {{ model: model-b, reasoning: high, prior: {{ alpha: {ba}, beta: {bb} }} }}
    selection: thompson
    system_prompt: {{ insert: "Be exact." }}
    headers: {{ add: {{ x-team: research }}, remove: [x-user] }}
  - name: failing
    when: {{ keyword: doomed }}
    models: [model-dead, model-a]
    selection: thompson
default: {{ model: model-a }}
learning: {{ {learning} }}
"#,
        model = model_dir().display(),
        a = a.base,
        b = b.base,
    )
}

/// (α, β) of an arm as the gateway reports it.
async fn arm(gw: &Gateway, decision: &str, model: &str) -> Result<(f64, f64)> {
    let v = gw.get_json("/admin/learning").await?;
    let arms = v["arms"].as_array().context("no arms")?;
    let a = arms
        .iter()
        .find(|a| a["decision"] == decision && a["model"] == model)
        .with_context(|| format!("no arm {decision}/{model} in {v}"))?;
    Ok((
        a["alpha"].as_f64().context("alpha")?,
        a["beta"].as_f64().context("beta")?,
    ))
}

/// Waits (up to 15 s) until `arm` is `want`.
async fn wait_for_arm(gw: &Gateway, decision: &str, model: &str, want: (f64, f64)) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = arm(gw, decision, model).await?;
        if got == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{decision}/{model} is {got:?}, expected {want:?}");
        }
        // Real: polling the gateway process until the outcome is applied.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a routed request and returns (request id, model that answered).
async fn routed(gw: &Gateway, prompt: &str) -> Result<(String, String)> {
    let resp = gw
        .post("/v1/chat/completions", chat("auto", prompt))
        .await?;
    anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
    Ok((
        header(&resp, "x-routemesh-request-id"),
        header(&resp, "x-routemesh-model"),
    ))
}

async fn feedback(gw: &Gateway, body: Value) -> Result<(u16, Value)> {
    let resp = gw.post("/v1/feedback", body.to_string()).await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

fn store(dir: &Path) -> String {
    format!("store: \"{}\"", dir.display())
}

#[tokio::test]
async fn feedback_updates_the_posterior_of_the_model_that_answered() -> Result<()> {
    let (a, b) = fakes().await?;
    let gw = Gateway::start(&config(&a, &b, ((1, 1), (1, 1)), "cost_weight: 0")).await?;
    let (id, model) = routed(&gw, "learnme: what is a monad?").await?;
    assert!(model == "model-a" || model == "model-b", "{model}");
    assert_eq!(arm(&gw, "learned", &model).await?, (1.0, 1.0));

    let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": "up" })).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], model.as_str());
    assert_eq!(body["decision"], "learned");
    assert_eq!(
        body["status"], "applied",
        "share: local applies it before answering"
    );
    assert_eq!(arm(&gw, "learned", &model).await?, (2.0, 1.0));

    // Once per request.
    let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": 0.0 })).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "feedback_already_given");
    assert_eq!(arm(&gw, "learned", &model).await?, (2.0, 1.0));

    // A fractional reward.
    let (id, model) = routed(&gw, "learnme again").await?;
    let before = arm(&gw, "learned", &model).await?;
    let (status, _) = feedback(&gw, json!({ "request_id": id, "reward": 0.25 })).await?;
    assert_eq!(status, 200);
    assert_eq!(
        arm(&gw, "learned", &model).await?,
        (before.0 + 0.25, before.1 + 0.75)
    );

    // Unknown ids, passthrough requests and bad rewards are refused.
    let (status, body) = feedback(&gw, json!({ "request_id": "nope", "reward": 1 })).await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "request_not_found");
    let resp = gw
        .post("/v1/chat/completions", chat("model-b", "learnme"))
        .await?;
    let passthrough = header(&resp, "x-routemesh-request-id");
    let (status, _) = feedback(&gw, json!({ "request_id": passthrough, "reward": 1 })).await?;
    assert_eq!(status, 404, "a passthrough request taught nothing to rate");
    let (id, _) = routed(&gw, "learnme once more").await?;
    for bad in [json!(1.5), json!(-0.1), json!("sideways")] {
        let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": bad })).await?;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["param"], "reward");
    }
    let (status, body) = feedback(&gw, json!({ "id": id })).await?;
    assert_eq!(status, 400, "{body}");
    Ok(())
}

#[tokio::test]
async fn feedback_expires_after_the_window() -> Result<()> {
    let (a, b) = fakes().await?;
    let gw = Gateway::start(&config(
        &a,
        &b,
        ((1, 1), (1, 1)),
        "remember: { requests: 100, for: 300ms }",
    ))
    .await?;
    let (id, _) = routed(&gw, "learnme").await?;
    // Real: the window runs on the gateway process's clock. The expiry
    // itself is pinned on paused time by `learning`'s unit test
    // `feedback_is_taken_within_the_window_and_refused_after_it`.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": 1 })).await?;
    assert_eq!(status, 404, "{body}");
    Ok(())
}

#[tokio::test]
async fn the_chosen_candidate_gets_the_decisions_request_edits() -> Result<()> {
    let (a, b) = fakes().await?;
    // model-b's prior makes it the choice of (practically) every draw.
    let gw = Gateway::start(&config(&a, &b, ((1, 1000), (1000, 1)), "")).await?;
    let resp = reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("x-user", "alice@example.com")
        .header("x-trace", "t-1")
        .header("x-routemesh-model", "spoofed")
        .body(chat("auto", "learnme: prove it"))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-model"), "model-b");
    let stats: Value = reqwest::get(format!("{}/stats", b.base))
        .await?
        .json()
        .await?;
    let body = &stats["last_body"];
    assert_eq!(
        body["messages"][0],
        json!({ "role": "system", "content": "Be exact." })
    );
    assert_eq!(body["messages"][1]["content"], "learnme: prove it");
    assert_eq!(
        body["chat_template_kwargs"]["enable_thinking"], true,
        "vLLM family: thinking on"
    );
    assert_eq!(body["reasoning_effort"], "high");
    let headers = &stats["last_headers"];
    assert_eq!(headers["x-team"], "research");
    assert_eq!(headers["x-trace"], "t-1", "other client headers pass");
    assert!(headers.get("x-user").is_none(), "removed by the decision");
    assert!(headers.get("x-routemesh-model").is_none());
    Ok(())
}

#[tokio::test]
async fn an_upstream_failure_is_a_reward_of_zero() -> Result<()> {
    let (a, b) = fakes().await?;
    let gw = Gateway::start(&config(&a, &b, ((1, 1), (1, 1)), "")).await?;
    // Whenever the dead model is drawn first, the request falls back to
    // model-a, and the dead model's arm gets a reward of 0.
    for _ in 0..20 {
        let resp = gw
            .post("/v1/chat/completions", chat("auto", "doomed"))
            .await?;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-routemesh-model"), "model-a");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (alpha, beta) = loop {
        let got = arm(&gw, "failing", "model-dead").await?;
        if got.1 >= 2.0 || tokio::time::Instant::now() > deadline {
            break got;
        }
        // Real: polling the gateway process until the outcome is applied.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(alpha, 1.0, "never a success");
    assert!(beta >= 2.0, "the dead model was never drawn: β = {beta}");
    assert_eq!(arm(&gw, "failing", "model-a").await?, (1.0, 1.0));
    Ok(())
}

#[tokio::test]
async fn a_killed_gateway_restarts_with_the_same_posteriors() -> Result<()> {
    let (a, b) = fakes().await?;
    let dir = tempfile::tempdir()?;
    let text = config(&a, &b, ((1, 1), (1, 1)), &store(&dir.path().join("learn")));
    let mut gw = Gateway::start(&text).await?;
    for reward in [json!(1), json!(0.3), json!("down"), json!(0.9)] {
        let (id, _) = routed(&gw, "learnme").await?;
        let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": reward })).await?;
        assert_eq!(status, 200, "{body}");
    }
    let before = gw.get_json("/admin/learning").await?["arms"].clone();
    let rewards: u64 = before
        .as_array()
        .context("arms")?
        .iter()
        .filter_map(|a| a["rewards"].as_u64())
        .sum();
    assert_eq!(rewards, 4);
    gw.kill().await?;

    let gw = Gateway::start(&text).await?;
    let after = gw.get_json("/admin/learning").await?["arms"].clone();
    assert_eq!(after, before, "posteriors restored exactly");
    Ok(())
}

#[tokio::test]
async fn feedback_to_one_gateway_teaches_every_gateway_through_jetstream() -> Result<()> {
    let nats = NatsServer::start_with_jetstream()?;
    let (a, b) = fakes().await?;
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let text = |i: usize| {
        let share = format!(
            "share: jetstream, stream: TEST_OUTCOMES, {}",
            store(&dirs[i].path().join("learn"))
        );
        format!(
            "{}nats: {{ url: \"{}\" }}\n",
            config(&a, &b, ((1, 1), (1, 1)), &share),
            nats.url()
        )
    };
    let gw_a = Gateway::start(&text(0)).await?;
    let mut gw_b = Gateway::start(&text(1)).await?;
    let (id, model) = routed(&gw_a, "learnme").await?;
    let (status, body) = feedback(&gw_a, json!({ "request_id": id, "reward": 1 })).await?;
    assert_eq!(status, 202, "queued for the stream: {body}");
    assert_eq!(body["status"], "queued");
    // Both apply the event from the stream, the gateway that took it too.
    wait_for_arm(&gw_a, "learned", &model, (2.0, 1.0)).await?;
    wait_for_arm(&gw_b, "learned", &model, (2.0, 1.0)).await?;

    // A gateway started later catches up from the stream.
    let gw_c = Gateway::start(&text(2)).await?;
    wait_for_arm(&gw_c, "learned", &model, (2.0, 1.0)).await?;

    // Killed and restarted, B resumes after the last sequence it applied:
    // nothing is applied twice, and what it missed meanwhile arrives.
    gw_b.kill().await?;
    let (id, model2) = routed(&gw_c, "learnme").await?;
    let want2 = if model2 == model {
        (2.0, 2.0)
    } else {
        (1.0, 2.0)
    };
    let (status, _) = feedback(&gw_c, json!({ "request_id": id, "reward": 0 })).await?;
    assert_eq!(status, 202);
    let gw_b = Gateway::start(&text(1)).await?;
    wait_for_arm(&gw_b, "learned", &model2, want2).await?;
    wait_for_arm(&gw_a, "learned", &model2, want2).await?;
    let v = gw_b.get_json("/admin/learning").await?;
    assert_eq!(v["share"], "jetstream");
    let rewards: u64 = v["arms"]
        .as_array()
        .context("arms")?
        .iter()
        .filter_map(|a| a["rewards"].as_u64())
        .sum();
    assert_eq!(rewards, 2, "two rewards, each applied once: {v}");
    // Each routed answer also reported its usage: 2 answers + 2 feedbacks.
    assert_eq!(v["last_sequence"], 4);
    if model2 != model {
        assert_eq!(arm(&gw_b, "learned", &model).await?, (2.0, 1.0));
    }
    Ok(())
}

#[tokio::test]
async fn a_gateway_refuses_to_start_without_jetstream() -> Result<()> {
    // A server without JetStream: the stream cannot be created.
    let nats = NatsServer::start()?;
    let a = Fake::start(FakeConfig::default()).await?;
    let text = format!(
        "{}nats: {{ url: \"{}\" }}\n",
        config(&a, &a, ((1, 1), (1, 1)), "share: jetstream"),
        nats.url()
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text)?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_routemesh"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output(),
    )
    .await??;
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JetStream"), "{stderr}");
    Ok(())
}

/// A JetStream-sharing gateway config with its own learning store in `dir`.
fn shared(a: &Fake, b: &Fake, nats_url: &str, dir: &Path) -> String {
    let share = format!(
        "share: jetstream, stream: TEST_OUTCOMES, {}",
        store(&dir.join("learn"))
    );
    format!(
        "{}nats: {{ url: \"{nats_url}\" }}\n",
        config(a, b, ((1, 1), (1, 1)), &share)
    )
}

/// Polls `GET /admin/learning` (up to 60 s: a NATS client reconnects with
/// a backoff of a few seconds) until `done` holds; returns that state.
async fn wait_for_learning(
    gw: &Gateway,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = gw.get_json("/admin/learning").await?;
        if done(&v) {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} never happened: {v}");
        }
        // Real: polling the gateway process (and its NATS client).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rewards applied, over every arm.
fn total_rewards(v: &Value) -> u64 {
    v["arms"].as_array().map_or(0, |arms| {
        arms.iter().filter_map(|a| a["rewards"].as_u64()).sum()
    })
}

/// The arm each model of `learned` should have after these (model, reward)
/// ratings from the uniform prior.
fn expected(rated: &[(String, f64)], model: &str) -> (f64, f64) {
    rated
        .iter()
        .filter(|(m, _)| m == model)
        .fold((1.0, 1.0), |(a, b), (_, r)| (a + r, b + 1.0 - r))
}

/// Waits until `gw` has applied exactly `rated` (and nothing else rated),
/// then rates one more request on `gw` as a sentinel: once it is applied,
/// anything re-published before it has been applied too (the stream is
/// ordered), so the totals prove each rating was applied once.
async fn applied_once(gw: &Gateway, rated: &[(String, f64)]) -> Result<()> {
    let n = rated.len() as u64;
    wait_for_learning(gw, "every rating applied", |v| total_rewards(v) >= n).await?;
    for model in ["model-a", "model-b"] {
        assert_eq!(
            arm(gw, "learned", model).await?,
            expected(rated, model),
            "{model}"
        );
    }
    let (id, _) = routed(gw, "learnme: the sentinel").await?;
    let (status, body) = feedback(gw, json!({ "request_id": id, "reward": 1 })).await?;
    assert_eq!(status, 202, "{body}");
    let v = wait_for_learning(gw, "the sentinel applied", |v| total_rewards(v) > n).await?;
    assert_eq!(total_rewards(&v), n + 1, "each rating applied once: {v}");
    Ok(())
}

/// Regression (issue 16, 2): with `share: jetstream` and NATS down, each
/// feedback blocked 5 s and answered 503, yet was published and applied
/// when NATS returned (and a retry got a 409). Now it is taken into the
/// outbox and acknowledged at once with a 202, waits there while NATS is
/// down, and is applied once on every gateway when NATS returns.
#[tokio::test]
async fn feedback_while_nats_is_down_is_acknowledged_at_once_and_applied_once_when_it_returns()
-> Result<()> {
    let mut nats = NatsServer::start_with_jetstream()?;
    let (a, b) = fakes().await?;
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let gw_a = Gateway::start(&shared(&a, &b, &nats.url(), dir_a.path())).await?;
    let gw_b = Gateway::start(&shared(&a, &b, &nats.url(), dir_b.path())).await?;
    let mut answered = Vec::new();
    for prompt in ["learnme one", "learnme two", "learnme three"] {
        answered.push(routed(&gw_a, prompt).await?);
    }

    nats.stop();
    let mut rated = Vec::new();
    for ((id, model), reward) in answered.iter().zip([1.0, 1.0, 0.0]) {
        let (status, body) = feedback(&gw_a, json!({ "request_id": id, "reward": reward })).await?;
        assert_eq!(status, 202, "acknowledged while NATS is down: {body}");
        assert_eq!(body["status"], "queued");
        assert_eq!(body["model"], model.as_str());
        rated.push((model.clone(), reward));
    }
    // A client that retries an acknowledged rating is told it is taken.
    let (status, body) =
        feedback(&gw_a, json!({ "request_id": answered[0].0, "reward": 1 })).await?;
    assert_eq!(status, 409, "{body}");
    let v = gw_a.get_json("/admin/learning").await?;
    assert!(v["outbox"]["events"].as_u64() >= Some(3), "queued: {v}");
    assert_eq!(v["outbox"]["durable"], true);
    assert_eq!(total_rewards(&v), 0, "applied from the stream only: {v}");

    nats.restart()?;
    applied_once(&gw_a, &rated).await?;
    wait_for_learning(&gw_a, "the outbox drained", |v| v["outbox"]["events"] == 0).await?;
    // The other gateway gets every rating once too (and the sentinel).
    let v = wait_for_learning(&gw_b, "gateway B caught up", |v| {
        total_rewards(v) > rated.len() as u64
    })
    .await?;
    assert_eq!(total_rewards(&v), rated.len() as u64 + 1, "{v}");
    Ok(())
}

/// Regression (issue 16, 2): feedback taken while NATS was down lived only
/// in the NATS client's buffer, lost with the gateway. Now it is on disk
/// before it is acknowledged: a gateway killed before NATS returns
/// delivers it after its restart, once.
#[tokio::test]
async fn acknowledged_feedback_survives_a_kill_9_before_nats_returns() -> Result<()> {
    let mut nats = NatsServer::start_with_jetstream()?;
    let (a, b) = fakes().await?;
    let dir = tempfile::tempdir()?;
    let text = shared(&a, &b, &nats.url(), dir.path());
    let mut gw = Gateway::start(&text).await?;
    let mut answered = Vec::new();
    for prompt in ["learnme one", "learnme two"] {
        answered.push(routed(&gw, prompt).await?);
    }

    nats.stop();
    let mut rated = Vec::new();
    for ((id, model), reward) in answered.iter().zip([1.0, 0.25]) {
        let (status, body) = feedback(&gw, json!({ "request_id": id, "reward": reward })).await?;
        assert_eq!(status, 202, "{body}");
        rated.push((model.clone(), reward));
    }
    gw.kill().await?;

    nats.restart()?;
    let gw = Gateway::start(&text).await?;
    applied_once(&gw, &rated).await?;
    wait_for_learning(&gw, "the outbox drained", |v| v["outbox"]["events"] == 0).await?;
    // Acknowledged ratings stay taken across the restart.
    let (status, body) = feedback(&gw, json!({ "request_id": answered[0].0, "reward": 1 })).await?;
    assert_eq!(status, 409, "{body}");
    Ok(())
}

/// Regression (issue 16, 3): the memory of routed requests was in memory
/// only, so feedback for a request answered before a restart, graceful or
/// not, was a 404. With a learning store it is kept there.
#[tokio::test]
async fn feedback_for_a_request_answered_before_a_restart_is_accepted() -> Result<()> {
    let (a, b) = fakes().await?;
    let dir = tempfile::tempdir()?;
    let text = config(&a, &b, ((1, 1), (1, 1)), &store(&dir.path().join("learn")));
    let mut gw = Gateway::start(&text).await?;
    let (before_kill, _) = routed(&gw, "learnme before the kill").await?;
    let (rated, _) = routed(&gw, "learnme rated before the kill").await?;
    let (status, _) = feedback(&gw, json!({ "request_id": rated, "reward": 1 })).await?;
    assert_eq!(status, 200);
    // The memory reaches the disk just after the request is routed, off
    // the request path: wait for it, then SIGKILL.
    wait_for_learning(&gw, "the request memory on disk", |v| {
        v["memory"]["durable"] == true && v["memory"]["unflushed"] == 0
    })
    .await?;
    gw.kill().await?;

    let mut gw = Gateway::start(&text).await?;
    let v = gw.get_json("/admin/learning").await?;
    assert_eq!(v["memory"]["requests"], 2, "{v}");
    let (status, body) = feedback(&gw, json!({ "request_id": before_kill, "reward": 0 })).await?;
    assert_eq!(status, 200, "answered before a kill -9: {body}");
    let (status, body) = feedback(&gw, json!({ "request_id": rated, "reward": 0 })).await?;
    assert_eq!(status, 409, "rated before the kill -9: {body}");
    let (before_stop, _) = routed(&gw, "learnme before a graceful stop").await?;
    assert_eq!(gw.terminate().await?, Some(0));

    let gw = Gateway::start(&text).await?;
    let (status, body) = feedback(&gw, json!({ "request_id": before_stop, "reward": 1 })).await?;
    assert_eq!(status, 200, "answered before a graceful restart: {body}");
    let (status, _) = feedback(&gw, json!({ "request_id": before_kill, "reward": 1 })).await?;
    assert_eq!(status, 409);
    assert_eq!(total_rewards(&gw.get_json("/admin/learning").await?), 3);
    Ok(())
}
