//! kill -9 of the gateway during feedback and cache fills, then a restart on the same stores.
//!
//! 1. Requests naming a model (passthrough: the exact cache tier, one scope whatever the
//!    sampler draws) with unique prompts fill the cache; each is asked again and the ones
//!    answered from the cache are *confirmed* entries. Routed requests are answered and half of
//!    them rated (feedback).
//! 2. Load: clients alternate cache fills (some streamed) and routed requests, rating half of
//!    the routed answers at once; after a few seconds the gateway is SIGKILLed in the middle.
//! 3. The gateway restarts on the same learning and cache stores. Then:
//!    - every acknowledged feedback is applied, once (`/admin/learning` rewards and Σreward per
//!      arm against the ledger; a POST whose answer was lost in the kill may count or not);
//!    - rating an acknowledged request again is refused (not applied twice);
//!    - every confirmed cache entry still answers;
//!    - requests answered before the kill but not rated yet can be rated now (the request
//!      memory survives a restart, issue 16.3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Mutex;

use super::configs::{self, Classifier, GatewayConfig, UpstreamCfg};
use super::load::{self, Ledger};
use super::procs::{FakeProc, GatewayProc};
use super::report::ScenarioReport;
use super::{ChaosError, Scenario, Settings, progress};

const FILL: u64 = 24;
const CLIENTS: usize = 6;
const LOAD_FOR: Duration = Duration::from_secs(4);
const REWARDS: [f64; 4] = [1.0, 0.0, 0.25, 0.75];
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the load phase learned about requests, shared by its clients.
#[derive(Debug, Default)]
struct Book {
    ledger: Ledger,
    /// Request ids whose feedback was acknowledged.
    rated: Vec<String>,
    /// Routed and answered (200), never rated.
    unrated: Vec<String>,
    /// Passthrough prompts answered 200 (and so filled) during the load.
    filled: Vec<(&'static str, String, bool)>,
    chats: u64,
    chat_errors_before_kill: u64,
}

/// How the kill is timed to land during a feedback POST.
#[derive(Debug, Default)]
struct Trigger {
    /// Feedback POSTs sent and not answered yet.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Woken when a feedback POST starts.
    feedback_started: tokio::sync::Notify,
}

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Kill9;
    let dir = settings.scenario_dir(sc)?;
    let bins = &settings.bins;
    let fake_a = FakeProc::start(&bins.fake, "a", configs::MODEL_A, &[], &dir).await?;
    let fake_b = FakeProc::start(&bins.fake, "b", configs::MODEL_B, &[], &dir).await?;
    let mut cfg = GatewayConfig::two_models(
        Classifier::Embedded {
            model_dir: settings.model_dir.display().to_string(),
        },
        UpstreamCfg::new("up-a", &fake_a.base),
        UpstreamCfg::new("up-b", &fake_b.base),
    );
    let learning_dir = dir.join("learning-store");
    let cache_dir = dir.join("cache-store");
    cfg.learning = Some(format!(
        "{{ store: {} }}",
        configs::quote(&learning_dir.display().to_string())
    ));
    cfg.cache = Some(format!(
        "{{ store: {}, deadline: 100ms }}",
        configs::quote(&cache_dir.display().to_string())
    ));
    // Exact tier only: the run's prompts differ in a counter and a few words, which the
    // semantic tier would (rightly) call the same question.
    cfg.default_cache = Some("exact".to_owned());
    let config_path = dir.join("gateway.yaml");
    cfg.write_to(&config_path)?;
    let spawn = GatewayProc::spawn("gateway", &bins.gateway, &config_path, &dir);
    report.setup(format!(
        "gateway: `{}` (config {}), restarted with the same command after SIGKILL",
        spawn.command_line(),
        config_path.display()
    ));
    report.setup(
        "upstreams: two FAKE upstreams (loadtest's fake-upstream, a test fixture, not a model)",
    );
    let mut gw = GatewayProc::start(spawn).await?;
    let client = load::client()?;
    let clock = Instant::now();
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x9);
    let mut ledger = Ledger::default();

    progress(
        sc,
        format!(
            "filling the cache with {FILL} answers and confirming them; {FILL} routed requests"
        ),
    );
    // Cache fills name a model (passthrough: exact tier, one scope), so a repeat is a hit
    // whatever the sampler draws; routed requests are the ones rated.
    let mut filled = Vec::new();
    for i in 0..FILL {
        let prompt = load::unique_prompt(&mut rng, "kill9-fill", i);
        let (model, stream) = (pass_model(i), i % 3 == 0);
        let c = load::chat(
            &client,
            &gw.base,
            load::chat_body(model, &prompt, stream),
            stream,
            TIMEOUT,
            clock,
        )
        .await;
        if c.ok() {
            filled.push((model, prompt, stream));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut confirmed = Vec::new();
    for (model, prompt, stream) in &filled {
        let c = load::chat(
            &client,
            &gw.base,
            load::chat_body(model, prompt, *stream),
            *stream,
            TIMEOUT,
            clock,
        )
        .await;
        if c.ok() && c.cache.as_deref() == Some("hit") {
            confirmed.push((*model, prompt.clone(), *stream));
        }
    }
    let mut rated_before = Vec::new();
    let mut unrated_before = Vec::new();
    for i in 0..FILL {
        let prompt = load::unique_prompt(&mut rng, "kill9-routed", i);
        let c = load::chat(
            &client,
            &gw.base,
            load::chat_body("auto", &prompt, false),
            false,
            TIMEOUT,
            clock,
        )
        .await;
        let (Some(id), Some(model)) = (c.request_id, c.model) else {
            continue;
        };
        if i % 2 == 1 {
            unrated_before.push(id);
            continue;
        }
        let reward = REWARDS[i as usize % REWARDS.len()];
        let f = load::feedback(&client, &gw.base, &id, reward, TIMEOUT).await;
        ledger.record(&model, reward, &f);
        if f.acked() {
            rated_before.push(id);
        }
    }

    progress(
        sc,
        format!(
            "load: {CLIENTS} clients, chat + feedback; SIGKILL after {} s",
            LOAD_FOR.as_secs()
        ),
    );
    let book = Arc::new(Mutex::new(Book {
        ledger,
        rated: rated_before,
        unrated: unrated_before,
        ..Book::default()
    }));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger = Arc::new(Trigger::default());
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, book, killed, trigger) = (
            client.clone(),
            gw.base.clone(),
            book.clone(),
            killed.clone(),
            trigger.clone(),
        );
        let seed = settings.seed ^ (c as u64 + 100);
        tasks.push(tokio::spawn(async move {
            let shared = Shared {
                book: &book,
                killed: &killed,
                trigger: &trigger,
            };
            load_client(&client, &base, seed, c as u64, shared, clock).await;
        }));
    }
    tokio::time::sleep(LOAD_FOR).await;
    // SIGKILL 1 ms after the next feedback POST starts (its fsync'd outbox write takes about
    // that long), so the kill lands during feedback, not between requests.
    let next_feedback = trigger.feedback_started.notified();
    let timed = tokio::time::timeout(Duration::from_secs(2), next_feedback)
        .await
        .is_ok();
    if timed {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    let in_flight_at_kill = trigger.in_flight.load(std::sync::atomic::Ordering::SeqCst);
    gw.proc.kill9().await;
    let kill_at = clock.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    progress(sc, "killed; restarting on the same stores");
    let restarted_at = Instant::now();
    let gw2 = gw.restart("restarted").await?;
    let restart_s = restarted_at.elapsed().as_secs_f64();
    let book = std::mem::take(&mut *book.lock().await);

    // 1. Feedback acknowledged before the kill: applied, once.
    let (arms, _) = load::learning(&client, &gw2.base).await?;
    let applied = book.ledger.check(&arms, configs::DECISION, (1.0, 1.0));
    // 2. Rating an acknowledged request again must not be taken.
    let mut again = std::collections::BTreeMap::<String, u64>::new();
    for id in book.rated.iter().take(10) {
        let f = load::feedback(&client, &gw2.base, id, 1.0, TIMEOUT).await;
        let key = f.status.map_or("no answer".to_owned(), |s| s.to_string());
        *again.entry(key).or_default() += 1;
    }
    let rerated = again
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, v)| v)
        .sum::<u64>();
    // 3. Confirmed cache entries still answer.
    let mut lost_entries = 0;
    for (model, prompt, stream) in &confirmed {
        let c = load::chat(
            &client,
            &gw2.base,
            load::chat_body(model, prompt, *stream),
            *stream,
            TIMEOUT,
            clock,
        )
        .await;
        if !(c.ok() && c.cache.as_deref() == Some("hit")) {
            lost_entries += 1;
        }
    }
    let mut load_hits = 0;
    let sampled: Vec<_> = book.filled.iter().rev().take(20).cloned().collect();
    for (model, prompt, stream) in &sampled {
        let c = load::chat(
            &client,
            &gw2.base,
            load::chat_body(model, prompt, *stream),
            *stream,
            TIMEOUT,
            clock,
        )
        .await;
        if c.ok() && c.cache.as_deref() == Some("hit") {
            load_hits += 1;
        }
    }
    // 4. Requests answered before the kill, not rated yet: the memory survives?
    let mut memory = std::collections::BTreeMap::<String, u64>::new();
    let mut memory_ok = 0;
    let tried: Vec<&String> = book.unrated.iter().take(10).collect();
    for id in &tried {
        let f = load::feedback(&client, &gw2.base, id, 1.0, TIMEOUT).await;
        if f.acked() {
            memory_ok += 1;
        }
        let key = match (f.status, &f.code) {
            (Some(s), Some(c)) => format!("{s} {c}"),
            (Some(s), None) => s.to_string(),
            (None, _) => "no answer".to_owned(),
        };
        *memory.entry(key).or_default() += 1;
    }

    report.figure(
        "cache entries filled, then confirmed by a hit before the kill",
        confirmed.len(),
    );
    report.figure("chat requests during the load", book.chats);
    report.figure("chat errors before the kill", book.chat_errors_before_kill);
    report.figure("SIGKILL at s", (kill_at * 10.0).round() / 10.0);
    report.figure("SIGKILL timed 1 ms after a feedback POST started", timed);
    report.figure(
        "feedback POSTs in flight when SIGKILL was sent",
        in_flight_at_kill,
    );
    report.figure("restart to ready s", (restart_s * 10.0).round() / 10.0);
    report.figure(
        "feedback acknowledged before the kill",
        book.ledger.acked_total(),
    );
    report.figure(
        "feedback in flight at the kill (outcome unknown)",
        book.ledger.unknown_total(),
    );
    report.figure("feedback refused, by status", json!(book.ledger.refused));
    report.figure("feedback applied after the restart", applied.applied);
    report.figure(
        "of those in flight, applied after the restart (either is correct)",
        applied
            .applied
            .saturating_sub(book.ledger.acked_total())
            .min(book.ledger.unknown_total()),
    );
    report.figure("acknowledged feedback lost", applied.lost);
    report.figure(
        "feedback applied more than once (beyond acknowledged + unknown)",
        applied.extra,
    );
    report.figure(
        "reward sums that differ",
        json!(applied.reward_sum_mismatch),
    );
    report.figure("arms after the restart", json!(arms));
    report.figure(
        "re-rating an acknowledged request after the restart, by status",
        json!(again),
    );
    report.figure("confirmed cache entries lost", lost_entries);
    report.figure(
        "entries filled during the load that hit after the restart (last 20 sampled)",
        format!("{load_hits} of {}", sampled.len()),
    );
    report.figure(
        "rating a request answered before the kill, by status",
        json!(memory),
    );

    report.target(
        "acknowledged feedback lost",
        "0",
        applied.lost.to_string(),
        applied.lost == 0,
        None,
    );
    report.target(
        "feedback applied once",
        "no extra, Σreward equal",
        format!(
            "{} extra, {} sum mismatches",
            applied.extra,
            applied.reward_sum_mismatch.len()
        ),
        applied.extra == 0 && applied.reward_sum_mismatch.is_empty(),
        None,
    );
    report.target(
        "acknowledged feedback taken again after the restart",
        "0",
        rerated.to_string(),
        rerated == 0,
        None,
    );
    report.target(
        "confirmed cache entries lost",
        "0",
        format!("{lost_entries} of {}", confirmed.len()),
        lost_entries == 0 && !confirmed.is_empty(),
        None,
    );
    report.target(
        "requests answered before the kill can be rated after it",
        "all",
        format!("{memory_ok} of {}", tried.len()),
        memory_ok == tried.len() && !tried.is_empty(),
        Some("16.3"),
    );
    report.note("A cache entry is `confirmed` (acknowledged) once a repeat of its prompt was answered from the cache before the kill; entries filled in the last moments of the load have no such acknowledgement and are reported, not checked.");
    report.note("Feedback whose POST was in flight at the kill may or may not have been applied: the check allows it either way (applied within [acknowledged, acknowledged + unknown]).");
    drop(gw2);
    Ok(())
}

/// What the load clients share with the scenario.
#[derive(Clone, Copy)]
struct Shared<'a> {
    book: &'a Mutex<Book>,
    killed: &'a std::sync::atomic::AtomicBool,
    trigger: &'a Trigger,
}

async fn load_client(
    client: &reqwest::Client,
    base: &str,
    seed: u64,
    id: u64,
    shared: Shared<'_>,
    clock: Instant,
) {
    let Shared {
        book,
        killed,
        trigger,
    } = shared;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !killed.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        // A cache fill (passthrough, exact tier)…
        let prompt = load::unique_prompt(&mut rng, &format!("kill9-fill-{id}"), n);
        let (model, stream) = (pass_model(n), rng.random_bool(0.3));
        let c = load::chat(
            client,
            base,
            load::chat_body(model, &prompt, stream),
            stream,
            TIMEOUT,
            clock,
        )
        .await;
        let dead = killed.load(std::sync::atomic::Ordering::SeqCst);
        {
            let mut b = book.lock().await;
            b.chats += 1;
            if c.ok() {
                b.filled.push((model, prompt, stream));
            } else if !dead {
                b.chat_errors_before_kill += 1;
            }
        }
        // … and a routed request, rated half of the time.
        let prompt = load::unique_prompt(&mut rng, &format!("kill9-load-{id}"), n);
        let c = load::chat(
            client,
            base,
            load::chat_body("auto", &prompt, false),
            false,
            TIMEOUT,
            clock,
        )
        .await;
        let dead = killed.load(std::sync::atomic::Ordering::SeqCst);
        let mut b = book.lock().await;
        b.chats += 1;
        if !c.ok() {
            if !dead {
                b.chat_errors_before_kill += 1;
            }
            continue;
        }
        let (Some(rid), Some(model)) = (c.request_id, c.model) else {
            continue;
        };
        // Half are rated; none after the kill (answered before it, so the memory check after
        // the restart may take it).
        if rng.random_bool(0.5) || killed.load(std::sync::atomic::Ordering::SeqCst) {
            b.unrated.push(rid);
            continue;
        }
        drop(b);
        let reward = REWARDS[rng.random_range(0..REWARDS.len())];
        trigger
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        trigger.feedback_started.notify_waiters();
        let f = load::feedback(client, base, &rid, reward, TIMEOUT).await;
        trigger
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        let mut b = book.lock().await;
        b.ledger.record(&model, reward, &f);
        if f.acked() {
            b.rated.push(rid);
        }
    }
}

/// The model a cache fill names (passthrough), alternating.
fn pass_model(n: u64) -> &'static str {
    if n.is_multiple_of(2) {
        configs::MODEL_A
    } else {
        configs::MODEL_B
    }
}
