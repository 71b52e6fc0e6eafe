//! Classifier workers SIGKILLed under load: three workers (simulated model, 200 ms per pass of
//! up to 8 prompts, so each holds requests when it dies) serve a gateway's pool while routed
//! requests arrive at 20 per second (open loop); two of the workers are SIGKILLed, one after the
//! other, mid-run.
//!
//! Targets: 0 client errors; at most 1% degraded answers (a request the dead worker held must
//! be sent to a live one, not wait out the classify deadline: issue 16.9).

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::configs::{self, Classifier, GatewayConfig, UpstreamCfg};
use super::load::{self, Chat};
use super::procs::{FakeProc, GatewayProc, NatsProc, WorkerProc, free_port};
use super::report::ScenarioReport;
use super::{ChaosError, Scenario, Settings, latency_summary, progress};

const RATE: f64 = 20.0;
const RUN_FOR: Duration = Duration::from_secs(18);
const KILLS_AT: [Duration; 2] = [Duration::from_secs(6), Duration::from_secs(12)];
const DEADLINE: &str = "2s";
const COST: &str = "200ms";

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Worker;
    let dir = settings.scenario_dir(sc)?;
    let bins = &settings.bins;
    let nats = NatsProc::start(&bins.nats, free_port()?, None, &dir).await?;
    let mut workers = Vec::new();
    for i in 1..=3 {
        workers.push(
            WorkerProc::start(
                &bins.worker,
                &format!("worker-{i}"),
                &nats.url(),
                "chaos",
                COST,
                8,
                &dir,
            )
            .await?,
        );
    }
    let fake_a = FakeProc::start(&bins.fake, "a", configs::MODEL_A, &[], &dir).await?;
    let fake_b = FakeProc::start(&bins.fake, "b", configs::MODEL_B, &[], &dir).await?;
    let mut cfg = GatewayConfig::two_models(
        Classifier::Nats {
            pool: "chaos".to_owned(),
            deadline: DEADLINE.to_owned(),
            on_unavailable: "degrade".to_owned(),
        },
        UpstreamCfg::new("up-a", &fake_a.base),
        UpstreamCfg::new("up-b", &fake_b.base),
    );
    cfg.nats_url = Some(nats.url());
    let path = dir.join("gateway.yaml");
    cfg.write_to(&path)?;
    let spawn = GatewayProc::spawn("gateway", &bins.gateway, &path, &dir);
    report.setup(format!(
        "gateway: `{}` (classifier.deadline {DEADLINE}, on_unavailable degrade)",
        spawn.command_line()
    ));
    report.setup(format!("3 classifier-workers with the simulated model ({COST} per pass, max batch 8: a benchmark stand-in that holds requests like a busy GPU worker, not MiniLM)"));
    report.setup(
        "upstreams: two FAKE upstreams (loadtest's fake-upstream, a test fixture, not a model)",
    );
    let gw = GatewayProc::start(spawn).await?;
    let client = load::client()?;
    let clock = Instant::now();
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x3);
    progress(
        sc,
        format!(
            "{RATE} req/s for {} s; SIGKILL of worker-1 and worker-2 at {:?}",
            RUN_FOR.as_secs(),
            KILLS_AT
        ),
    );
    let every = Duration::from_secs_f64(1.0 / RATE);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    let mut kills = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < RUN_FOR {
        if let Some(at) = KILLS_AT.get(kills.len())
            && start.elapsed() >= *at
            && let Some(w) = workers.get_mut(kills.len())
        {
            w.proc.kill9().await;
            kills.push((w.proc.name.clone(), clock.elapsed().as_secs_f64()));
            progress(sc, format!("SIGKILL {}", w.proc.name));
        }
        n += 1;
        let prompt = load::unique_prompt(&mut rng, "worker", n);
        let (client, base) = (client.clone(), gw.base.clone());
        tasks.push(tokio::spawn(async move {
            load::chat(
                &client,
                &base,
                load::chat_body("auto", &prompt, false),
                false,
                Duration::from_secs(15),
                clock,
            )
            .await
        }));
        tokio::time::sleep_until(start + every * n as u32).await;
    }
    let mut chats: Vec<Chat> = Vec::new();
    for t in tasks {
        if let Ok(c) = t.await {
            chats.push(c);
        }
    }
    let deadline_ms = humantime::parse_duration(DEADLINE).map_or(2000.0, |d| d.as_secs_f64() * 1e3);
    let failures: Vec<String> = chats.iter().filter_map(Chat::failure_kind).collect();
    let degraded: Vec<&Chat> = chats.iter().filter(|c| c.degraded.is_some()).collect();
    let waited = chats
        .iter()
        .filter(|c| c.classify_ms.is_some_and(|ms| ms >= deadline_ms * 0.9))
        .count();
    let latencies: Vec<f64> = chats
        .iter()
        .filter(|c| c.ok())
        .map(|c| c.latency_ms)
        .collect();
    let classify: Vec<f64> = chats.iter().filter_map(|c| c.classify_ms).collect();
    let degraded_share = degraded.len() as f64 / chats.len().max(1) as f64;
    let served: Vec<_> = workers
        .iter()
        .map(|w| (w.proc.name.clone(), w.id.clone()))
        .collect();

    report.figure("requests", chats.len());
    report.figure("rate req/s", RATE);
    report.figure("SIGKILLs (worker, s)", json!(kills));
    report.figure("workers", json!(served));
    report.figure("client errors", failures.len());
    report.figure(
        "client errors by kind",
        load::counts(failures.iter().map(String::as_str)),
    );
    report.figure("degraded answers", degraded.len());
    report.figure(
        "degraded answers by reason",
        load::counts(degraded.iter().filter_map(|c| c.degraded.as_deref())),
    );
    report.figure(
        "degraded sent at s",
        json!(
            degraded
                .iter()
                .map(|c| (c.sent_s * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        ),
    );
    report.figure("answers whose classify took ≥ 90% of the deadline", waited);
    report.figure("latency of answers", latency_summary(&latencies));
    report.figure("classify stage (Server-Timing)", latency_summary(&classify));

    report.target(
        "client errors",
        "0",
        format!("{} of {}", failures.len(), chats.len()),
        failures.is_empty() && !chats.is_empty(),
        None,
    );
    report.target(
        "degraded answers",
        "≤ 1%",
        format!(
            "{:.2}% ({} of {})",
            degraded_share * 100.0,
            degraded.len(),
            chats.len()
        ),
        degraded_share <= 0.01,
        None,
    );
    report.target(
        "requests that waited out the classify deadline (held by a killed worker)",
        "0",
        waited.to_string(),
        waited == 0,
        Some("16.9"),
    );
    report.note("A SIGKILLed worker's connection closes at once, so NATS sends it nothing new; what it held when it died is lost unless the gateway asks another worker (hedging). Without that, those requests wait the classify deadline and are routed degraded (`classify=timeout`).");
    drop(gw);
    Ok(())
}
