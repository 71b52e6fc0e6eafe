//! NATS killed and restarted under load. Two gateways share learning through a JetStream stream
//! (`learning.share: jetstream`, each with its own store) and classify over a NATS pool (one
//! simulated-cost worker). Both get routed requests at a fixed rate the whole time, and every
//! answer is rated at once on the gateway that answered it — before, during and after an outage:
//! nats-server is SIGKILLed, left down for a while and restarted on the same port and store.
//!
//! Targets: no chat request fails (a request that cannot be classified is routed degraded);
//! every feedback is acknowledged (not refused while NATS is down: issue 16.2's outbox); on
//! *each* gateway, every acknowledged event is applied exactly once (rewards and Σreward per arm
//! against the ledger of both gateways' feedback).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use super::configs::{self, Classifier, GatewayConfig, UpstreamCfg};
use super::load::{self, Chat, Feedback, Ledger};
use super::procs::{FakeProc, GatewayProc, NatsProc, WorkerProc, free_port};
use super::report::ScenarioReport;
use super::{ChaosError, Scenario, Settings, latency_summary, progress};

const RATE_PER_GATEWAY: f64 = 8.0;
const BEFORE: Duration = Duration::from_secs(4);
const OUTAGE: Duration = Duration::from_secs(6);
const AFTER: Duration = Duration::from_secs(6);
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
const REWARDS: [f64; 4] = [1.0, 0.0, 0.5, 0.75];

#[derive(Debug, Default)]
struct Book {
    ledger: Ledger,
    chats: Vec<(String, Chat)>,
    feedback: Vec<(&'static str, Feedback)>,
}

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Nats;
    let dir = settings.scenario_dir(sc)?;
    let bins = &settings.bins;
    let port = free_port()?;
    let store = dir.join("jetstream");
    let mut nats = NatsProc::start(&bins.nats, port, Some(&store), &dir).await?;
    let _worker =
        WorkerProc::start(&bins.worker, "worker", &nats.url(), "chaos", "5ms", 8, &dir).await?;
    let fake_a = FakeProc::start(&bins.fake, "a", configs::MODEL_A, &[], &dir).await?;
    let fake_b = FakeProc::start(&bins.fake, "b", configs::MODEL_B, &[], &dir).await?;
    let mut gws = Vec::new();
    for name in ["gateway-1", "gateway-2"] {
        let mut cfg = GatewayConfig::two_models(
            Classifier::Nats {
                pool: "chaos".to_owned(),
                deadline: "1s".to_owned(),
                on_unavailable: "degrade".to_owned(),
            },
            UpstreamCfg::new("up-a", &fake_a.base),
            UpstreamCfg::new("up-b", &fake_b.base),
        );
        cfg.nats_url = Some(nats.url());
        let learning_store = dir.join(format!("{name}-learning"));
        cfg.learning = Some(format!(
            "{{ store: {}, share: jetstream, stream: CHAOS_OUTCOMES }}",
            configs::quote(&learning_store.display().to_string())
        ));
        let path = dir.join(format!("{name}.yaml"));
        cfg.write_to(&path)?;
        let spawn = GatewayProc::spawn(name, &bins.gateway, &path, &dir);
        report.setup(format!("{name}: `{}`", spawn.command_line()));
        gws.push(GatewayProc::start(spawn).await?);
    }
    report.setup(format!("nats-server -js on port {port} (store {}), SIGKILLed and restarted on the same port and store", store.display()));
    report.setup("classifier: one classifier-worker with the simulated model (5 ms per pass; a benchmark stand-in, not MiniLM): this scenario is about the bus, not the encoder");
    report.setup(
        "upstreams: two FAKE upstreams (loadtest's fake-upstream, a test fixture, not a model)",
    );
    let client = load::client()?;
    let clock = Instant::now();
    let book = Arc::new(Mutex::new(Book::default()));
    let total = BEFORE + OUTAGE + AFTER;
    let mut loads = Vec::new();
    for (g, gw) in gws.iter().enumerate() {
        let (client, base, book) = (client.clone(), gw.base.clone(), book.clone());
        let seed = settings.seed ^ (0x4e00 + g as u64);
        let outage = (BEFORE, BEFORE + OUTAGE);
        loads.push(tokio::spawn(async move {
            drive(&client, &base, g, seed, total, outage, &book, clock).await;
        }));
    }
    progress(
        sc,
        format!(
            "load on both gateways; NATS goes down at {} s for {} s",
            BEFORE.as_secs(),
            OUTAGE.as_secs()
        ),
    );
    tokio::time::sleep(BEFORE).await;
    nats.kill9().await;
    let down_at = clock.elapsed().as_secs_f64();
    tokio::time::sleep(OUTAGE).await;
    nats.restart().await?;
    let up_at = clock.elapsed().as_secs_f64();
    progress(sc, "NATS is back; load goes on");
    for l in loads {
        let _ = l.await;
    }
    let book = std::mem::take(&mut *book.lock().await);

    // Every gateway must converge on the same applied events.
    progress(sc, "waiting for both gateways to apply every event");
    let started = Instant::now();
    let mut results = Vec::new();
    loop {
        results.clear();
        for gw in &gws {
            let (arms, seq) = load::learning(&client, &gw.base).await.unwrap_or_default();
            let applied = book.ledger.check(&arms, configs::DECISION, (1.0, 1.0));
            results.push((applied, seq));
        }
        if results.iter().all(|(a, _)| a.exact()) || started.elapsed() > CONVERGE_WITHIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged_s = started.elapsed().as_secs_f64();
    // Exactly once means it stays so: a copy delivered late (a redelivery, a replayed outbox)
    // would show up as extra. Look again a little later.
    if results.iter().all(|(a, _)| a.exact()) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        results.clear();
        for gw in &gws {
            let (arms, seq) = load::learning(&client, &gw.base).await.unwrap_or_default();
            let applied = book.ledger.check(&arms, configs::DECISION, (1.0, 1.0));
            results.push((applied, seq));
        }
    }

    let phase_of = |t: f64| {
        if t < down_at {
            "before"
        } else if t < up_at {
            "outage"
        } else {
            "after"
        }
    };
    let chat_failures: Vec<String> = book
        .chats
        .iter()
        .filter_map(|(_, c)| c.failure_kind())
        .collect();
    let degraded = book
        .chats
        .iter()
        .filter(|(_, c)| c.degraded.is_some())
        .count();
    let mut degraded_by_phase = std::collections::BTreeMap::<&str, u64>::new();
    for (_, c) in &book.chats {
        if c.degraded.is_some() {
            *degraded_by_phase.entry(phase_of(c.sent_s)).or_default() += 1;
        }
    }
    let fb_outage: Vec<f64> = book
        .feedback
        .iter()
        .filter(|(p, _)| *p == "outage")
        .map(|(_, f)| f.latency_ms)
        .collect();
    let fb_other: Vec<f64> = book
        .feedback
        .iter()
        .filter(|(p, _)| *p != "outage")
        .map(|(_, f)| f.latency_ms)
        .collect();
    let mut fb_by = std::collections::BTreeMap::<String, u64>::new();
    for (p, f) in &book.feedback {
        let s = f
            .status
            .map_or_else(|| f.error.clone().unwrap_or_default(), |s| s.to_string());
        *fb_by.entry(format!("{p}: {s}")).or_default() += 1;
    }
    let not_acked = book.ledger.refused_total() + book.ledger.unknown_total();

    report.figure("NATS down at s", (down_at * 10.0).round() / 10.0);
    report.figure("NATS back at s", (up_at * 10.0).round() / 10.0);
    report.figure("chat requests", book.chats.len());
    report.figure("chat failures", chat_failures.len());
    report.figure(
        "chat failures by kind",
        load::counts(chat_failures.iter().map(String::as_str)),
    );
    report.figure("degraded answers", degraded);
    report.figure("degraded answers by phase", json!(degraded_by_phase));
    report.figure("feedback given", book.feedback.len());
    report.figure("feedback by phase and answer", json!(fb_by));
    report.figure("feedback acknowledged", book.ledger.acked_total());
    report.figure(
        "feedback latency during the outage",
        latency_summary(&fb_outage),
    );
    report.figure("feedback latency otherwise", latency_summary(&fb_other));
    for (i, (a, seq)) in results.iter().enumerate() {
        report.figure(
            &format!("gateway-{} applied", i + 1),
            json!({ "applied": a.applied, "lost": a.lost, "extra": a.extra, "reward_sum_mismatch": a.reward_sum_mismatch, "last_sequence": seq }),
        );
    }
    report.figure(
        "s until both gateways agreed (or gave up)",
        (converged_s * 10.0).round() / 10.0,
    );

    report.target(
        "chat requests failed",
        "0",
        format!("{} of {}", chat_failures.len(), book.chats.len()),
        chat_failures.is_empty(),
        None,
    );
    report.target(
        "feedback acknowledged (none refused or unanswered, NATS down included)",
        "all",
        format!("{not_acked} of {} not acknowledged", book.feedback.len()),
        not_acked == 0,
        Some("16.2"),
    );
    for (i, (a, _)) in results.iter().enumerate() {
        report.target(
            &format!(
                "gateway-{}: acknowledged feedback applied exactly once",
                i + 1
            ),
            "0 lost, 0 extra",
            format!(
                "{} lost, {} extra, {} sum mismatches",
                a.lost,
                a.extra,
                a.reward_sum_mismatch.len()
            ),
            a.exact(),
            Some("16.2"),
        );
    }
    report.note("The applied counts are read once both gateways agree with the ledger (or after 30 s), and again 2 s later: the figures and targets are the second reading, so a copy applied late fails too.");
    report.note("`extra` counts events applied beyond the acknowledged ones (and those whose POST got no answer): feedback refused with 503 during the outage yet applied later shows up there.");
    report.note(format!(
        "Load: {RATE_PER_GATEWAY} routed requests/s per gateway (open loop), each answer rated at once on its gateway; degraded answers during the outage are expected (no classifier without the bus) and are not failures."
    ));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    client: &reqwest::Client,
    base: &str,
    gateway: usize,
    seed: u64,
    total: Duration,
    outage: (Duration, Duration),
    book: &Arc<Mutex<Book>>,
    clock: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let every = Duration::from_secs_f64(1.0 / RATE_PER_GATEWAY);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < total {
        n += 1;
        let prompt = load::unique_prompt(&mut rng, &format!("nats-{gateway}"), n);
        let reward = REWARDS[rng.random_range(0..REWARDS.len())];
        let (client, base, book) = (client.clone(), base.to_owned(), book.clone());
        tasks.push(tokio::spawn(async move {
            let c = load::chat(
                &client,
                &base,
                load::chat_body("auto", &prompt, false),
                false,
                Duration::from_secs(15),
                clock,
            )
            .await;
            let rated = c.ok().then(|| (c.request_id.clone(), c.model.clone()));
            book.lock().await.chats.push((base.clone(), c));
            let Some((Some(rid), Some(model))) = rated else {
                return;
            };
            let at = clock.elapsed();
            let phase = if at < outage.0 {
                "before"
            } else if at < outage.1 {
                "outage"
            } else {
                "after"
            };
            let f = load::feedback(&client, &base, &rid, reward, Duration::from_secs(20)).await;
            let mut b = book.lock().await;
            b.ledger.record(&model, reward, &f);
            b.feedback.push((phase, f));
        }));
        tokio::time::sleep_until(start + every * n as u32).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}
