//! The classifier pool over NATS: a real nats-server, real worker processes,
//! real gateways.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use routemesh_test_support::gateway::{
    Fakes, Gateway, SHIPPED_HEADS, Worker, chat, gateway_bin, header,
};
use routemesh_test_support::nats_server::NatsServer;
use routemesh_test_support::workspace;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PROMPTS: &[&str] = &[
    "What is the integral of x^2 from 0 to 3?",
    "Hello! How are you doing today?",
    "def parse(s):\n    return json.loads(s)\nwhy does this fail?",
    "What is the capital of France?",
    "Write a Python function that reverses a list",
    "Thanks, that was helpful!",
];

async fn route(gw: &Gateway, prompt: &str) -> Result<Value> {
    let resp = gw.post("/v1/route", chat("auto", prompt)).await?;
    anyhow::ensure!(resp.status() == 200, "dry run failed: {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test]
async fn embedded_and_nats_paths_give_identical_signals() -> Result<()> {
    let nats = NatsServer::start()?;
    let _worker = Worker::start(&nats.url(), "minilm").await?;
    let fakes = Fakes::start().await?;
    let embedded = Gateway::start(&fakes.example_config()?).await?;
    let meshed = Gateway::start(&fakes.nats_config(&nats.url(), "minilm", "reject")?).await?;
    for prompt in PROMPTS {
        let (a, b) = (
            route(&embedded, prompt).await?,
            route(&meshed, prompt).await?,
        );
        assert_eq!(a["signals"], b["signals"], "signals differ for {prompt:?}");
        assert_eq!(
            a["decision"], b["decision"],
            "decision differs for {prompt:?}"
        );
        assert_eq!(a["classifier"]["transport"], "embedded");
        assert_eq!(b["classifier"]["transport"], "nats:minilm");
        assert!(b["classifier"]["worker"].is_string(), "{b}");
    }
    // And a real chat request through the mesh.
    let resp = meshed
        .post("/v1/chat/completions", chat("auto", PROMPTS[0]))
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-routemesh-model"), "qwen-math-7b");
    assert_eq!(header(&resp, "x-routemesh-degraded"), "");
    Ok(())
}

#[tokio::test]
async fn two_workers_in_a_pool_share_the_load_and_the_service_lists_them() -> Result<()> {
    let nats = NatsServer::start()?;
    let w1 = Worker::start(&nats.url(), "shared").await?;
    let w2 = Worker::start(&nats.url(), "shared").await?;
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.nats_config(&nats.url(), "shared", "reject")?).await?;
    let mut seen = HashSet::new();
    for i in 0..40 {
        let v = route(&gw, PROMPTS[i % PROMPTS.len()]).await?;
        seen.insert(
            v["classifier"]["worker"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let expected: HashSet<String> = [w1.id.clone(), w2.id.clone()].into();
    assert_eq!(seen, expected, "both workers answered");

    // `$SRV.STATS.routemesh-classifier` reports each instance's requests.
    let client = async_nats::connect(nats.url()).await?;
    let reply_to = client.new_inbox();
    let mut inbox = client.subscribe(reply_to.clone()).await?;
    client
        .publish_with_reply("$SRV.STATS.routemesh-classifier", reply_to, "".into())
        .await?;
    let mut total = 0;
    for _ in 0..2 {
        use futures_util::StreamExt;
        let msg = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await?
            .context("no stats")?;
        let stats: Value = serde_json::from_slice(&msg.payload)?;
        let endpoint = &stats["endpoints"][0];
        assert_eq!(endpoint["subject"], "routemesh.classify.shared", "{stats}");
        assert_eq!(endpoint["queue_group"], "shared", "{stats}");
        total += endpoint["num_requests"].as_u64().unwrap_or(0);
    }
    assert!(total >= 40, "stats count the requests: {total}");
    Ok(())
}

/// Waits until `count` reaches `n`, for at most `limit` (then returns:
/// the assertions that follow say what was missing).
async fn wait_for_answers(count: &AtomicUsize, n: usize, limit: Duration) {
    let until = tokio::time::Instant::now() + limit;
    while count.load(Ordering::Relaxed) < n && tokio::time::Instant::now() < until {
        // Real time: the gateway, the workers and nats-server are child
        // processes on the wall clock, which paused time cannot move.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Regression (issue 16, 9): the requests a SIGKILLed worker held waited
/// out the whole classify deadline and were routed degraded. They are now
/// sent again to a live worker after the hedge delay: under load, no
/// request fails and at most 1% degrade.
#[tokio::test]
async fn requests_held_by_a_killed_worker_are_sent_again_to_a_live_one() -> Result<()> {
    let nats = NatsServer::start()?;
    let mut w1 = Worker::start(&nats.url(), "resilient").await?;
    let _w2 = Worker::start(&nats.url(), "resilient").await?;
    let fakes = Fakes::start().await?;
    let gw =
        Arc::new(Gateway::start(&fakes.nats_config(&nats.url(), "resilient", "degrade")?).await?);

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    // Answers so far, and those to requests sent after the kill.
    let answered = Arc::new(AtomicUsize::new(0));
    let answered_late = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (gw, stop, killed) = (gw.clone(), stop.clone(), killed.clone());
            let (answered, answered_late) = (answered.clone(), answered_late.clone());
            tokio::spawn(async move {
                // (status, degraded, sent after the kill)
                let mut seen = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let after = killed.load(Ordering::Relaxed);
                    let resp = gw
                        .post(
                            "/v1/chat/completions",
                            chat("auto", PROMPTS[i % PROMPTS.len()]),
                        )
                        .await?;
                    seen.push((
                        resp.status().as_u16(),
                        header(&resp, "x-routemesh-degraded"),
                        after,
                    ));
                    answered.fetch_add(1, Ordering::Relaxed);
                    if after {
                        answered_late.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                anyhow::Ok(seen)
            })
        })
        .collect();
    // The load is flowing through both workers before the kill, and goes
    // on after it: counted answers, not fixed waits (the gateway, the
    // workers and NATS are processes on the wall clock).
    wait_for_answers(&answered, 20, Duration::from_secs(60)).await;
    w1.kill().await?;
    killed.store(true, Ordering::Relaxed);
    wait_for_answers(&answered_late, 100, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await??);
    }
    let failed = all.iter().filter(|(status, _, _)| *status != 200).count();
    assert_eq!(
        failed, 0,
        "every request was answered (degraded at worst): {all:?}"
    );
    let degraded = all.iter().filter(|(_, d, _)| !d.is_empty()).count();
    assert!(
        degraded * 100 <= all.len(),
        "at most 1% degraded: {degraded} of {} ({all:?})",
        all.len()
    );
    let late: Vec<_> = all.iter().filter(|(_, _, after)| *after).collect();
    let late_degraded = late.iter().filter(|(_, d, _)| !d.is_empty()).count();
    assert!(
        late.len() > 10,
        "the load went on after the kill: {}",
        late.len()
    );
    assert!(
        late_degraded * 100 <= late.len(),
        "the surviving worker took over: {late_degraded} of {} degraded",
        late.len()
    );
    Ok(())
}

/// A worker that takes requests and never answers them (a simulated model
/// that needs an hour per pass): a worker that will be killed while it
/// holds requests. Its metrics URL says how many it holds.
struct HoldingWorker {
    child: Child,
    metrics: String,
}

impl HoldingWorker {
    async fn start(nats_url: &str, pool: &str) -> Result<Self> {
        let binary = gateway_bin()?.with_file_name("classifier-worker");
        ensure!(binary.is_file(), "{} is not built", binary.display());
        let heads = workspace().join("heads");
        let mut child = Command::new(binary)
            .args(["serve", "--nats-url", nats_url, "--pool", pool])
            // One request per pass: the first sleeps, the others queue.
            .args([
                "--max-wait",
                "0ms",
                "--max-batch",
                "1",
                "--simulated-cost",
                "1h",
            ])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(SHIPPED_HEADS.map(|h| format!("--classifier={h}={}", heads.join(h).display())))
            .env("ROUTEMESH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let wait = async {
            let mut metrics = None;
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("classifier-worker metrics on ") {
                    metrics = Some(url.to_owned());
                }
                if line.contains(", worker ") {
                    return metrics.context("serving without a metrics line");
                }
            }
            bail!("the holding worker exited before serving")
        };
        let metrics = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .context("holding worker not serving within 60 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, metrics })
    }

    /// Requests waiting in its queue (one more is in its hour-long pass).
    async fn queued(&self) -> Result<f64> {
        let text = reqwest::get(&self.metrics).await?.text().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("routemesh_worker_queue_depth "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }
}

/// Regression (issue 16, 9): the requests a worker held when it was
/// SIGKILLed waited out the whole classify deadline and were routed
/// degraded. A classify request unanswered after the hedge delay is sent
/// again, and with the dead worker's subscription gone it reaches the live
/// one: every request is answered, none degraded.
#[tokio::test]
async fn a_request_held_by_a_killed_worker_is_answered_by_a_live_one() -> Result<()> {
    let nats = NatsServer::start()?;
    let _live = Worker::start(&nats.url(), "held").await?;
    let fakes = Fakes::start().await?;
    // A fixed hedge delay, far longer than seeing the holder hold requests
    // and killing it takes: every hedge is sent after the kill, so it can
    // only reach the live worker (an earlier one could reach the holder
    // too, and the test would depend on timing). `hedge: off` fails it.
    let config = fakes.nats_config(&nats.url(), "held", "degrade")?;
    ensure!(
        config.contains("deadline: 1s,"),
        "nats_config changed shape: {config}"
    );
    let config = config.replacen("deadline: 1s,", "deadline: 2s, hedge: 1s,", 1);
    // Ready once the live worker has embedded the route examples.
    let gw = Gateway::start(&config).await?;
    let mut holder = HoldingWorker::start(&nats.url(), "held").await?;

    let requests = futures_util::future::join_all((0..16).map(|i| {
        gw.post(
            "/v1/chat/completions",
            chat("auto", PROMPTS[i % PROMPTS.len()]),
        )
    }));
    let kill = async {
        // Half the requests go to the holder: at least two of 16, one in
        // its pass and one queued, but for a chance of 17 in 65,536.
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let queued = holder.queued().await?;
            if queued >= 1.0 {
                holder.child.kill().await?;
                return anyhow::Ok(queued);
            }
            ensure!(
                tokio::time::Instant::now() < until,
                "the holding worker was given no request"
            );
            // Real time: the worker is a process on the wall clock.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (responses, queued) = tokio::join!(requests, kill);
    let queued = queued?;
    let mut seen = Vec::new();
    for resp in responses {
        let resp = resp?;
        seen.push((
            resp.status().as_u16(),
            header(&resp, "x-routemesh-degraded"),
            header(&resp, "x-routemesh-decision"),
        ));
    }
    let held_and_answered = seen
        .iter()
        .filter(|(status, degraded, _)| *status == 200 && degraded.is_empty())
        .count();
    assert_eq!(
        held_and_answered,
        seen.len(),
        "the requests the killed worker held ({queued} queued at the kill) are \
         answered by the live one, none degraded: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, _, decision)| !decision.is_empty()),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_drained_pool_degrades_or_refuses_as_configured() -> Result<()> {
    let nats = NatsServer::start()?;
    let mut worker = Worker::start(&nats.url(), "lonely").await?;
    let fakes = Fakes::start().await?;
    let degrade = Gateway::start(&fakes.nats_config(&nats.url(), "lonely", "degrade")?).await?;
    let reject = Gateway::start(&fakes.nats_config(&nats.url(), "lonely", "reject")?).await?;
    assert_eq!(
        worker.terminate().await?,
        Some(0),
        "SIGTERM drains and exits cleanly"
    );

    let resp = degrade
        .post(
            "/v1/chat/completions",
            chat("auto", "Why does my Python code crash?"),
        )
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-routemesh-degraded"),
        "classify=no_responders"
    );
    assert_eq!(
        header(&resp, "x-routemesh-decision"),
        "code",
        "keyword rules still route"
    );

    let resp = reject
        .post("/v1/chat/completions", chat("auto", "Hello there!"))
        .await?;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "classifier_unavailable", "{body}");
    Ok(())
}

#[tokio::test]
async fn a_worker_answers_an_unknown_wire_version_with_a_clear_error() -> Result<()> {
    let nats = NatsServer::start()?;
    let _worker = Worker::start(&nats.url(), "versioned").await?;
    let client = async_nats::connect(nats.url()).await?;
    let msg = client
        .request(
            "routemesh.classify.versioned",
            r#"{"v": 99, "texts": ["hi"]}"#.into(),
        )
        .await?;
    let headers = msg.headers.context("a service error carries headers")?;
    let code = headers
        .get(async_nats::service::NATS_SERVICE_ERROR_CODE)
        .map(|v| v.as_str().to_owned());
    let text = headers
        .get(async_nats::service::NATS_SERVICE_ERROR)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    assert_eq!(code.as_deref(), Some("400"));
    assert!(
        text.contains("version 99") && text.contains("speaks version 1"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_classifier_placed_on_another_pool_is_asked_in_parallel() -> Result<()> {
    let nats = NatsServer::start()?;
    let _embedder = Worker::start_with(&nats.url(), "embed", &["domain", "pii"]).await?;
    let mut guard = Worker::start_with(&nats.url(), "guard", &["injection"]).await?;
    let fakes = Fakes::start().await?;
    let embedded = Gateway::start(&fakes.example_config()?).await?;
    let placed = fakes.nats_config(&nats.url(), "embed", "degrade")?;
    let needle = "{ name: injection, path: ";
    anyhow::ensure!(
        placed.contains(needle),
        "config/example.yaml's classifiers changed shape"
    );
    let placed = placed.replacen(needle, "{ name: injection, pool: guard, path: ", 1);
    let meshed = Gateway::start(&placed).await?;

    let prompt = PROMPTS[3];
    let (a, b) = (
        route(&embedded, prompt).await?,
        route(&meshed, prompt).await?,
    );
    assert_eq!(
        a["signals"], b["signals"],
        "every head answered, from two pools"
    );
    assert!(
        b["signals"]["classifiers"]["injection"]["probs"].is_object(),
        "{b}"
    );
    assert!(b["classifier"].get("degraded").is_none(), "{b}");

    // Without the guard pool, only its classifier goes missing.
    guard.terminate().await?;
    let c = route(&meshed, prompt).await?;
    assert!(c["signals"]["classifiers"]["injection"].is_null(), "{c}");
    assert_eq!(
        c["signals"]["classifiers"]["domain"],
        a["signals"]["classifiers"]["domain"]
    );
    assert_eq!(c["classifier"]["degraded"], "no_responders", "{c}");
    Ok(())
}
