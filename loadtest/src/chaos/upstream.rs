//! An upstream that stalls, errors and dies mid-stream. The default decision has two candidate
//! models: `model-a` on the controllable FAKE upstream ([`super::upstream_fixture`], run as a
//! child process), whose prior makes it the first choice every time, and `model-b` on a healthy
//! FAKE upstream. Closed-loop load (half streamed) runs through phases: healthy, stall (no first
//! byte), 503s, 500s, streams cut after 3 chunks, and a slow stream during which the upstream's
//! process is SIGKILLed, then left dead.
//!
//! Targets: whenever the chosen model fails before its first byte (stall, 503, connection
//! refused) the fallback answers (200 from `model-b`; issue 16.4); a broken answer is never
//! stored in the cache; the fallback, which never fails, is never blamed (no reward of 0).
//! A 500 is relayed as the upstream's answer (docs/config.md: not retried), which is reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use super::configs::{self, CandidateCfg, Classifier, GatewayConfig, UpstreamCfg};
use super::load::{self, Chat};
use super::procs::{FakeProc, GatewayProc, Spawn};
use super::report::ScenarioReport;
use super::upstream_fixture;
use super::{ChaosError, Scenario, Settings, latency_summary, progress};

const CLIENTS: usize = 4;
/// Most requests of one phase. After the healthy phase every request fails on the
/// primary, up to 3 times with retries: 6 phases and the re-asked cut prompts
/// (7 × 400 × 3 = 8,400 failures) stay under its breaker threshold (10,000), however
/// fast the gateway answers — an ejected primary is not asked, so not blamed.
const PHASE_REQUESTS: usize = 400;
const PHASE: Duration = Duration::from_secs(3);
const TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Upstream;
    let dir = settings.scenario_dir(sc)?;
    let bins = &settings.bins;
    let spawn = Spawn::new("fixture-primary", &bins.chaos, &dir).args([
        "upstream-fixture",
        "--name",
        "primary",
    ]);
    let mut primary = FakeProc::start_spawn(&spawn).await?;
    let fallback = FakeProc::start(&bins.fake, "fallback", configs::MODEL_B, &[], &dir).await?;
    let mut p = UpstreamCfg::new("up-primary", &primary.base);
    p.first_byte = "500ms".to_owned();
    p.total = "1500ms".to_owned();
    p.retries = 2;
    // The config's most: the primary is never ejected, so every request after the
    // healthy phase reaches it and fails there (at most PHASE_REQUESTS per phase).
    p.breaker_failures = 10_000;
    let f = UpstreamCfg::new("up-fallback", &fallback.base);
    let mut cfg = GatewayConfig::two_models(
        Classifier::Embedded {
            model_dir: settings.model_dir.display().to_string(),
        },
        p,
        f,
    );
    cfg.candidates = vec![
        CandidateCfg {
            model: configs::MODEL_A.to_owned(),
            upstream: "up-primary".to_owned(),
            prior: (1000.0, 1.0),
        },
        CandidateCfg {
            model: configs::MODEL_B.to_owned(),
            upstream: "up-fallback".to_owned(),
            prior: (1.0, 1000.0),
        },
    ];
    cfg.cache = Some("{ deadline: 100ms }".to_owned());
    // Exact tier only: the run's prompts differ in a counter and a few words, which the
    // semantic tier would (rightly) call the same question.
    cfg.default_cache = Some("exact".to_owned());
    let path = dir.join("gateway.yaml");
    cfg.write_to(&path)?;
    let gspawn = GatewayProc::spawn("gateway", &bins.gateway, &path, &dir);
    report.setup(format!(
        "gateway: `{}` (config {})",
        gspawn.command_line(),
        path.display()
    ));
    report.setup(format!(
        "primary: `{}` — the chaos suite's controllable FAKE upstream (a test fixture, not a model); model-a's prior Beta(1000, 1) makes it the first choice; first_byte 500ms, total 1500ms, 2 retries, no breaker ejection",
        spawn.command_line()
    ));
    report.setup(
        "fallback: loadtest's fake-upstream (FAKE, a test fixture), model-b, prior Beta(1, 1000)",
    );
    let gw = GatewayProc::start(gspawn).await?;
    let client = load::client()?;
    let clock = Instant::now();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seed = settings.seed ^ 0x0b;
    let mut phases: Vec<(&'static str, Vec<Chat>)> = Vec::new();
    let mut cut_prompts = Vec::new();

    for (name, mode) in [
        ("healthy", "ok"),
        ("stall", "stall"),
        ("error 503", "error:503"),
        ("error 500", "error:500"),
        ("cut after 3 chunks", "cut:3"),
    ] {
        upstream_fixture::set(&client, &primary.base, mode).await?;
        progress(sc, format!("phase {name}"));
        let (chats, prompts) =
            closed_loop(&client, &gw.base, seed, &counter, clock, PHASE, None).await;
        if mode.starts_with("cut") {
            cut_prompts = prompts;
        }
        phases.push((name, chats));
    }
    // The upstream dies mid-stream: slow streams in flight when its process is SIGKILLed.
    upstream_fixture::set(&client, &primary.base, "slow").await?;
    progress(sc, "phase dies mid-stream (SIGKILL of the primary)");
    let killer = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        primary.proc.kill9().await;
    };
    let (died, _) = tokio::join!(
        closed_loop(
            &client,
            &gw.base,
            seed,
            &counter,
            clock,
            Duration::from_millis(1500),
            Some(true)
        ),
        killer
    );
    phases.push(("dies mid-stream", died.0));
    progress(sc, "phase dead (connection refused)");
    let (dead, _) = closed_loop(&client, &gw.base, seed, &counter, clock, PHASE, None).await;
    phases.push(("dead", dead));

    // Broken answers must not have been stored: ask the cut prompts again (the fallback is
    // healthy, the primary is dead now, so a hit can only come from the cache).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cached_broken = 0;
    for (prompt, stream) in &cut_prompts {
        let c = load::chat(
            &client,
            &gw.base,
            load::chat_body("auto", prompt, *stream),
            *stream,
            TIMEOUT,
            clock,
        )
        .await;
        if c.cache.as_deref() == Some("hit") {
            cached_broken += 1;
        }
    }
    let (arms, _) = load::learning(&client, &gw.base).await?;
    let blamed = |model: &str| {
        arms.iter()
            .find(|a| a.decision == configs::DECISION && a.model == model)
            .map_or(0, |a| a.rewards)
    };

    let mut table = BTreeMap::new();
    for (name, chats) in &phases {
        let statuses = load::counts(chats.iter().map(|c| match c.failure_kind() {
            Some(_) if c.status.is_some_and(|s| s != 200) => "non-200",
            Some(_) => "broken or no answer",
            None => "200",
        }));
        let models = load::counts(
            chats
                .iter()
                .filter(|c| c.ok())
                .filter_map(|c| c.model.as_deref()),
        );
        let failures: Vec<String> = chats.iter().filter_map(Chat::failure_kind).collect();
        let lat: Vec<f64> = chats.iter().map(|c| c.latency_ms).collect();
        table.insert(
            *name,
            json!({
                "requests": chats.len(),
                "answers": statuses,
                "answered by": models,
                "failures": load::counts(failures.iter().map(String::as_str)),
                "latency": latency_summary(&lat),
            }),
        );
    }
    let phase = |name: &str| {
        phases
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c.as_slice())
            .unwrap_or(&[])
    };
    let by_fallback = |chats: &[Chat]| {
        chats
            .iter()
            .filter(|c| c.ok() && c.model.as_deref() == Some(configs::MODEL_B))
            .count()
    };
    for (name, _) in &phases {
        report.figure(
            &format!("phase: {name}"),
            table.get(name).cloned().unwrap_or_default(),
        );
    }
    let e500 = phase("error 500");
    let relayed_500 = e500
        .iter()
        .filter(|c| c.status == Some(500) && c.fake.is_some())
        .count();
    report.figure(
        "500s relayed from the upstream (x-fake-upstream) instead of the fallback",
        relayed_500,
    );
    report.figure(
        "broken answers asked again that were cache hits",
        format!("{cached_broken} of {}", cut_prompts.len()),
    );
    // Every request after the healthy phase failed on the primary once, the re-asked cut
    // prompts included (the primary is dead by then).
    let primary_failed: usize = phases
        .iter()
        .filter(|(n, _)| *n != "healthy")
        .map(|(_, c)| c.len())
        .sum::<usize>()
        + cut_prompts.len();
    report.figure(
        "requests on which the primary failed (all after the healthy phase, re-asks included)",
        primary_failed,
    );
    report.figure(
        "rewards of 0 to model-a (primary)",
        blamed(configs::MODEL_A),
    );
    report.figure(
        "rewards of 0 to model-b (fallback)",
        blamed(configs::MODEL_B),
    );
    report.figure("arms", json!(arms));

    let healthy = phase("healthy");
    let healthy_ok = healthy
        .iter()
        .filter(|c| c.ok() && c.model.as_deref() == Some(configs::MODEL_A))
        .count();
    report.target(
        "healthy: answered by the chosen model",
        "all",
        format!("{healthy_ok} of {}", healthy.len()),
        healthy_ok == healthy.len() && !healthy.is_empty(),
        None,
    );
    for name in ["stall", "error 503", "error 500", "dead"] {
        let chats = phase(name);
        let ok = by_fallback(chats);
        report.target(
            &format!("{name}: the fallback answers"),
            "all 200 from model-b",
            format!("{ok} of {}", chats.len()),
            ok == chats.len() && !chats.is_empty(),
            (name == "stall").then_some("16.4"),
        );
    }
    let cut = phase("cut after 3 chunks");
    let cut_broken = cut.iter().filter(|c| !c.ok()).count();
    report.figure(
        "cut: answers that reached the client broken (cannot be retried after the first byte)",
        format!("{cut_broken} of {}", cut.len()),
    );
    let died = phase("dies mid-stream");
    report.figure(
        "dies mid-stream: broken / answered by model-b",
        format!(
            "{} / {}",
            died.iter().filter(|c| !c.ok()).count(),
            by_fallback(died)
        ),
    );
    report.target(
        "broken answers stored in the cache",
        "0",
        cached_broken.to_string(),
        cached_broken == 0 && !cut_prompts.is_empty(),
        None,
    );
    report.target(
        "the fallback (never failing) blamed",
        "0 rewards of 0",
        blamed(configs::MODEL_B).to_string(),
        blamed(configs::MODEL_B) == 0,
        Some("16.4"),
    );
    report.target(
        "each failure of the primary blamed on it once",
        primary_failed.to_string(),
        blamed(configs::MODEL_A).to_string(),
        blamed(configs::MODEL_A) == primary_failed as u64,
        None,
    );
    report.note("A 500 from the chosen model is its failure like a 503: not retried on its upstream, it goes to the next candidate (docs/config.md).");
    report.note("Once a byte of the answer has reached the client nothing can be retried, so streams cut or killed mid-way reach the client broken; the checks are that such an answer is never cached and that only the model that broke is blamed.");
    drop(gw);
    Ok(())
}

/// `CLIENTS` clients in a closed loop for `span` (or until `PHASE_REQUESTS` were sent);
/// each prompt is new. `stream`: all streamed
/// (`Some(true)`) or half (`None`). Returns the answers and the (prompt, streamed) sent.
async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    seed: u64,
    counter: &Arc<std::sync::atomic::AtomicU64>,
    clock: Instant,
    span: Duration,
    stream: Option<bool>,
) -> (Vec<Chat>, Vec<(String, bool)>) {
    let out = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let until = Instant::now() + span;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, out, counter, sent) = (
            client.clone(),
            base.to_owned(),
            out.clone(),
            counter.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((c as u64) << 8));
            while Instant::now() < until
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < PHASE_REQUESTS
            {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let prompt = load::unique_prompt(&mut rng, "upstream", n);
                let s = stream.unwrap_or_else(|| rng.random_bool(0.5));
                let chat = load::chat(
                    &client,
                    &base,
                    load::chat_body("auto", &prompt, s),
                    s,
                    TIMEOUT,
                    clock,
                )
                .await;
                let mut o = out.lock().await;
                o.0.push(chat);
                o.1.push((prompt, s));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut o = out.lock().await;
    (std::mem::take(&mut o.0), std::mem::take(&mut o.1))
}
