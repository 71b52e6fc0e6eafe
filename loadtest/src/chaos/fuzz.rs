//! The HTTP fuzzer: `--cases` fixed-seed cases ([`cases`]) against a real gateway (embedded
//! MiniLM, auth, cache, a block rule, a prompt limit) in front of two FAKE upstreams.
//! Structured cases run on keep-alive connections; byte-level cases one per connection (after
//! 300 ms without an answer the client half-closes, so an incomplete request ends at once).
//!
//! Targets: no panic in the gateway's log; no 5xx of the gateway's own (a 5xx that carries the
//! FAKE upstream's `x-fake-upstream` header is relayed, not made); every 4xx (HEAD excepted: no
//! body) in OpenAI's error shape; every well-formed request answered; RSS growth after the
//! warm-up bounded; the gateway alive and `/healthz` 200 at the end.

pub mod cases;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use self::cases::{Case, Keys, Lane};
use super::client::{self, RawResponse, Read};
use super::configs::{self, Classifier, GatewayConfig, UpstreamCfg};
use super::procs::{FakeProc, GatewayProc, rss_kib};
use super::report::ScenarioReport;
use super::{ChaosError, Scenario, Settings, progress};

/// Connections of the structured lane (keep-alive, one request at a time each).
const STRUCTURED_CONNS: usize = 12;
/// Connections of the byte-level lane (one case each).
const BYTES_CONNS: usize = 32;
/// Share of the cases in the structured lane.
const STRUCTURED_SHARE: f64 = 0.6;
/// The gateway's body limit in this scenario (small, so 413s are cheap).
const MAX_BODY: u64 = 65_536;
/// Examples kept per kind of finding.
const EXAMPLES: usize = 8;

/// A finding, with what it takes to make the case again.
#[derive(Debug, Clone, Serialize)]
struct Example {
    lane: &'static str,
    index: u64,
    kind: &'static str,
    problem: String,
    status: Option<u16>,
    request: String,
    response: String,
}

/// What one connection task counted.
#[derive(Debug, Default, Clone, Serialize)]
struct Stats {
    cases: u64,
    by_kind: BTreeMap<&'static str, u64>,
    statuses: BTreeMap<u16, u64>,
    /// `lane:what` for cases that got no (whole) response.
    no_answer: BTreeMap<String, u64>,
    gateway_5xx: u64,
    /// 502 `upstream_unreachable` / 504 `upstream_timeout`: the gateway reporting an
    /// upstream that failed.
    upstream_reported_5xx: u64,
    relayed_5xx: u64,
    four_xx: u64,
    four_xx_head: u64,
    bad_shape: u64,
    /// By status and where the response was made (`handler` if it has the gateway's request
    /// id header, else `below the handlers`).
    bad_shape_by: BTreeMap<String, u64>,
    /// Well-formed requests that got no response.
    structured_unanswered: u64,
    /// Requests sent again after a kept-alive connection closed under them.
    resent: u64,
    /// Answers of routed (classified) requests: `x-routemesh-decision` other than passthrough.
    routed: u64,
    examples: BTreeMap<&'static str, Vec<Example>>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.cases += o.cases;
        for (k, v) in o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.no_answer {
            *self.no_answer.entry(k).or_default() += v;
        }
        for (k, v) in o.bad_shape_by {
            *self.bad_shape_by.entry(k).or_default() += v;
        }
        self.gateway_5xx += o.gateway_5xx;
        self.upstream_reported_5xx += o.upstream_reported_5xx;
        self.relayed_5xx += o.relayed_5xx;
        self.four_xx += o.four_xx;
        self.four_xx_head += o.four_xx_head;
        self.bad_shape += o.bad_shape;
        self.structured_unanswered += o.structured_unanswered;
        self.resent += o.resent;
        self.routed += o.routed;
        for (k, v) in o.examples {
            let slot = self.examples.entry(k).or_default();
            slot.extend(v);
            slot.truncate(EXAMPLES);
        }
    }

    fn example(
        &mut self,
        what: &'static str,
        case: &Case,
        problem: String,
        resp: Option<&RawResponse>,
    ) {
        let slot = self.examples.entry(what).or_default();
        if slot.len() >= EXAMPLES {
            return;
        }
        slot.push(Example {
            lane: case.lane.name(),
            index: case.index,
            kind: case.kind,
            problem,
            status: resp.map(|r| r.status),
            request: escape(&case.bytes, 240),
            response: resp.map_or_else(String::new, |r| escape(&r.body, 200)),
        });
    }

    /// Judges one response.
    fn response(&mut self, case: &Case, r: &RawResponse, live: &Live) {
        *self.statuses.entry(r.status).or_default() += 1;
        if r.header("x-routemesh-decision")
            .is_some_and(|d| d != "passthrough")
        {
            self.routed += 1;
        }
        if (500..600).contains(&r.status) {
            let code = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            if r.header("x-fake-upstream").is_some() {
                self.relayed_5xx += 1;
            } else if matches!(
                code.as_deref(),
                Some("upstream_unreachable" | "upstream_timeout")
            ) {
                self.upstream_reported_5xx += 1;
                self.example(
                    "upstream_reported_5xx",
                    case,
                    format!("status {}", r.status),
                    Some(r),
                );
            } else {
                self.gateway_5xx += 1;
                live.gateway_5xx.fetch_add(1, Ordering::Relaxed);
                self.example("gateway_5xx", case, format!("status {}", r.status), Some(r));
            }
        }
        if (400..500).contains(&r.status) {
            self.four_xx += 1;
            if case.head {
                self.four_xx_head += 1;
            } else if let Some(problem) = client::error_shape_problem(&r.body) {
                self.bad_shape += 1;
                live.bad_shape.fetch_add(1, Ordering::Relaxed);
                let origin = if r.header("x-routemesh-request-id").is_some() {
                    "handler"
                } else {
                    "below the handlers"
                };
                *self
                    .bad_shape_by
                    .entry(format!("{} {origin}", r.status))
                    .or_default() += 1;
                self.example("bad_shape_4xx", case, problem, Some(r));
            }
        }
    }

    fn no_answer(&mut self, case: &Case, what: &str) {
        *self
            .no_answer
            .entry(format!("{}:{what}", case.lane.name()))
            .or_default() += 1;
        if case.lane == Lane::Structured {
            self.structured_unanswered += 1;
            self.example("structured_unanswered", case, what.to_owned(), None);
        }
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
struct Live {
    done: AtomicU64,
    gateway_5xx: AtomicU64,
    bad_shape: AtomicU64,
}

fn escape(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes
        .iter()
        .take(max)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        s.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    s
}

/// The credentials and limits of the fuzzed gateway (the generator needs them).
pub fn keys() -> Keys {
    Keys {
        api_key: "fuzz-key-0123456789abcdef".to_owned(),
        other_tenant_key: "other-key-0123456789abcdef".to_owned(),
        admin_token: "fuzz-admin-0123456789abcdef".to_owned(),
        models: vec![configs::MODEL_A.to_owned(), configs::MODEL_B.to_owned()],
        blocked_word: "chaosforbidden".to_owned(),
        max_body_bytes: MAX_BODY as usize,
    }
}

/// The raw bytes of one case, as the run sent them (a structured case that rated an earlier
/// request id is made without it).
pub fn case_bytes(lane: Lane, seed: u64, index: u64) -> Vec<u8> {
    let keys = keys();
    match lane {
        Lane::Structured => cases::structured(seed, index, &keys, &[]).bytes,
        Lane::Bytes => cases::bytes(seed, index, &keys).bytes,
    }
}

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Fuzz;
    let dir = settings.scenario_dir(sc)?;
    let bins = &settings.bins;
    let fake_a = FakeProc::start(
        &bins.fake,
        "a",
        configs::MODEL_A,
        &["--reply-tokens", "8"],
        &dir,
    )
    .await?;
    let fake_b = FakeProc::start(
        &bins.fake,
        "b",
        configs::MODEL_B,
        &["--reply-tokens", "8"],
        &dir,
    )
    .await?;
    let keys = keys();
    let mut cfg = GatewayConfig::two_models(
        Classifier::Embedded {
            model_dir: settings.model_dir.display().to_string(),
        },
        UpstreamCfg::new("up-a", &fake_a.base),
        UpstreamCfg::new("up-b", &fake_b.base),
    );
    cfg.max_body_bytes = MAX_BODY;
    cfg.max_prompt_chars = Some(4000);
    cfg.signals = Some(format!(
        "{{ keywords: [{{ name: blocked, patterns: [{}] }}] }}",
        keys.blocked_word
    ));
    cfg.decisions = vec![
        "{ name: blocked, priority: 100, when: { keyword: blocked }, block: \"refused by the chaos config\" }".to_owned(),
        format!(
            "{{ name: private, priority: 50, when: {{ pii: any }}, model: {}, redact_pii: true }}",
            configs::MODEL_A
        ),
    ];
    cfg.cache = Some("{ shards: 2, capacity: 256, deadline: 50ms }".to_owned());
    cfg.auth = Some("{ keys_env: CHAOS_API_KEYS, admin_token_env: CHAOS_ADMIN_TOKEN }".to_owned());
    let config_path = dir.join("gateway.yaml");
    cfg.write_to(&config_path)?;
    let spawn = GatewayProc::spawn("gateway", &bins.gateway, &config_path, &dir)
        .env("ROUTEMESH_LOG", "warn")
        .env(
            "CHAOS_API_KEYS",
            &format!("fuzz:{},other:{}", keys.api_key, keys.other_tenant_key),
        )
        .env("CHAOS_ADMIN_TOKEN", &keys.admin_token);
    report.setup(format!(
        "gateway: `{}` (config {})",
        spawn.command_line(),
        config_path.display()
    ));
    report.setup(format!(
        "upstreams: two FAKE upstreams (loadtest's fake-upstream, a test fixture, not a model) at {} and {}",
        fake_a.base, fake_b.base
    ));
    let mut gw = GatewayProc::start(spawn).await?;
    let addr = gw.addr()?;
    let pid = gw.proc.pid;

    let cases = settings.cases;
    let structured_n = (cases as f64 * STRUCTURED_SHARE).round() as u64;
    let bytes_n = cases - structured_n;
    progress(
        sc,
        format!(
            "{cases} cases ({structured_n} structured, {bytes_n} byte-level), seed {}",
            settings.seed
        ),
    );
    let live = Arc::new(Live::default());
    let started = Instant::now();
    let rss_start = rss_kib(pid);
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_rss(pid, live.clone(), samples.clone()));
    let reporter = tokio::spawn(report_progress(live.clone(), cases, started));
    let keys = Arc::new(keys);
    let mut tasks = Vec::new();
    let next_s = Arc::new(AtomicU64::new(0));
    let next_b = Arc::new(AtomicU64::new(0));
    for w in 0..STRUCTURED_CONNS {
        let (keys, live, next) = (keys.clone(), live.clone(), next_s.clone());
        let seed = settings.seed;
        tasks.push(tokio::spawn(async move {
            structured_lane(addr, w as u64, seed, structured_n, &keys, &next, &live).await
        }));
    }
    for w in 0..BYTES_CONNS {
        let (keys, live, next) = (keys.clone(), live.clone(), next_b.clone());
        let seed = settings.seed;
        tasks.push(tokio::spawn(async move {
            bytes_lane(addr, 1000 + w as u64, seed, bytes_n, &keys, &next, &live).await
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        if let Ok(s) = t.await {
            stats.merge(s);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    reporter.abort();
    // Let the gateway settle (connections closed, answers reported) before the last sample.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampler.abort();
    let _ = sampler.await;
    let (baseline, peak) = rss_after_warmup(&samples, cases);
    let rss_end = rss_kib(pid);
    let alive = gw.proc.running();
    let healthz = reqwest_healthz(&gw.url("/healthz")).await;
    let panics = gw.panics();
    let fake_panics: usize = [&fake_a, &fake_b]
        .iter()
        .map(|f| f.proc.stderr().matches("panicked at").count())
        .sum();
    let accept_errors = gw.proc.stderr().matches("accept error").count();

    report.figure("cases", stats.cases);
    report.figure("structured cases", structured_n);
    report.figure("byte-level cases", bytes_n);
    report.figure("seed", settings.seed);
    report.figure("wall s", (elapsed * 10.0).round() / 10.0);
    report.figure("cases per s", (stats.cases as f64 / elapsed).round());
    report.figure("responses by status", json!(stats.statuses));
    report.figure(
        "no (whole) response, by lane and kind",
        json!(stats.no_answer),
    );
    report.figure("cases by generator kind", json!(stats.by_kind));
    report.figure("answers of routed (classified) requests", stats.routed);
    report.figure("4xx", stats.four_xx);
    report.figure("4xx to HEAD (no body to check)", stats.four_xx_head);
    report.figure("4xx not in the error shape", stats.bad_shape);
    report.figure(
        "4xx not in the error shape, by status and origin",
        json!(stats.bad_shape_by),
    );
    report.figure("gateway-made 5xx", stats.gateway_5xx);
    report.figure("relayed 5xx (x-fake-upstream)", stats.relayed_5xx);
    report.figure(
        "5xx reporting an upstream failure (upstream_unreachable, upstream_timeout)",
        stats.upstream_reported_5xx,
    );
    report.figure("panics in the FAKE upstreams' logs", fake_panics);
    report.figure(
        "well-formed requests unanswered",
        stats.structured_unanswered,
    );
    report.figure(
        "requests re-sent after a kept-alive connection closed",
        stats.resent,
    );
    report.figure("panics in the gateway log", panics.len());
    report.figure("accept errors in the gateway log", accept_errors);
    let rss_mib = |k: Option<u64>| k.map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0);
    report.figure("RSS MiB at start", rss_mib(rss_start));
    report.figure("RSS MiB after warm-up (5% of cases)", rss_mib(baseline));
    report.figure("RSS MiB peak", rss_mib(peak));
    report.figure("RSS MiB at end", rss_mib(rss_end));
    report.figure("examples", json!(stats.examples));

    report.target(
        "panics",
        "0",
        panics.len().to_string(),
        panics.is_empty(),
        None,
    );
    report.target(
        "gateway-made 5xx",
        "0",
        stats.gateway_5xx.to_string(),
        stats.gateway_5xx == 0,
        None,
    );
    report.target(
        "upstream failures reported with the FAKE upstreams healthy",
        "0 (each explained by a panic in a FAKE's log)",
        format!(
            "{} reported, {fake_panics} FAKE panics",
            stats.upstream_reported_5xx
        ),
        stats.upstream_reported_5xx as usize <= fake_panics,
        None,
    );
    let checked = stats.four_xx - stats.four_xx_head;
    report.target(
        "4xx in the OpenAI error shape",
        "100%",
        format!(
            "{} of {checked} ({} not)",
            checked - stats.bad_shape,
            stats.bad_shape
        ),
        stats.bad_shape == 0,
        Some("16.5"),
    );
    report.target(
        "well-formed requests answered",
        "100%",
        format!(
            "{} unanswered of {structured_n}",
            stats.structured_unanswered
        ),
        stats.structured_unanswered == 0,
        None,
    );
    let growth = match (baseline, rss_end) {
        (Some(b), Some(e)) => Some(e.saturating_sub(b) as f64 / 1024.0),
        _ => None,
    };
    report.target(
        "RSS growth after warm-up",
        format!("< {} MiB", settings.rss_growth_mib),
        growth.map_or("unknown".to_owned(), |g| format!("{g:.1} MiB")),
        growth.is_some_and(|g| g < settings.rss_growth_mib as f64),
        None,
    );
    report.target(
        "gateway alive, /healthz 200 at the end",
        "yes",
        format!(
            "alive {alive}, /healthz {}",
            healthz.map_or("no answer".to_owned(), |s| s.to_string())
        ),
        alive && healthz == Some(200),
        None,
    );
    report.note("A 5xx is the gateway's own unless it carries `x-fake-upstream` (the FAKE upstream's identity header, relayed with its answers) or reports an upstream that failed (502 `upstream_unreachable`, 504 `upstream_timeout`). The FAKE upstreams are not meant to fail here, so each such report must be explained by a crash in a FAKE's log (a fixture bug, not the gateway's).");
    report.note("Byte-level cases are damaged on purpose: many are incomplete, so no answer (the connection closed after the client half-closed) is expected there and not a failure; well-formed (structured) cases must all be answered.");
    report.note(format!(
        "Make one case again: `chaos fuzz-case --lane structured|bytes --seed {seed} --index I > case.bin` writes its bytes (loadtest/src/chaos/fuzz/cases.rs); send them with e.g. `nc 127.0.0.1 PORT < case.bin`.",
        seed = settings.seed
    ));
    gw.proc.kill9().await;
    Ok(())
}

async fn structured_lane(
    addr: SocketAddr,
    conn_id: u64,
    seed: u64,
    total: u64,
    keys: &Keys,
    next: &AtomicU64,
    live: &Live,
) -> Stats {
    let mut stats = Stats::default();
    let mut seen_ids: Vec<String> = Vec::new();
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    let mut opened = conn_id;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return stats;
        }
        let case = cases::structured(seed, i, keys, &seen_ids);
        stats.cases += 1;
        *stats.by_kind.entry(case.kind).or_default() += 1;
        for attempt in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                opened += 64;
                match client::connect(addr, opened, Duration::from_secs(5)).await {
                    Ok(s) => conn = Some((s, Vec::new())),
                    Err(_) => {
                        stats.no_answer(&case, "connect failed");
                        break;
                    }
                }
            }
            let Some((stream, buf)) = conn.as_mut() else {
                break;
            };
            let wrote = stream.write_all(&case.bytes).await.is_ok();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            let read = client::read_response(stream, buf, case.head, deadline).await;
            match read {
                Read::Response(r) => {
                    if let Some(id) = r.header("x-routemesh-request-id")
                        && r.status == 200
                        && seen_ids.len() < 32
                    {
                        seen_ids.push(id.to_owned());
                    }
                    stats.response(&case, &r, live);
                    if r.closes {
                        conn = None;
                    }
                    break;
                }
                Read::Closed | Read::Reset if reused && attempt == 0 => {
                    stats.resent += 1;
                    conn = None;
                }
                other => {
                    let what = if wrote {
                        describe(&other)
                    } else {
                        "write failed".to_owned()
                    };
                    stats.no_answer(&case, &what);
                    conn = None;
                    break;
                }
            }
        }
        live.done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn bytes_lane(
    addr: SocketAddr,
    conn_id: u64,
    seed: u64,
    total: u64,
    keys: &Keys,
    next: &AtomicU64,
    live: &Live,
) -> Stats {
    let mut stats = Stats::default();
    let mut opened = conn_id;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return stats;
        }
        let case = cases::bytes(seed, i, keys);
        stats.cases += 1;
        *stats.by_kind.entry(case.kind).or_default() += 1;
        opened += 64;
        match client::connect(addr, opened, Duration::from_secs(5)).await {
            Ok(mut stream) => {
                // The server may answer (and close) before it has read everything: a write
                // error is not the end, the answer may be waiting.
                let _ = stream.write_all(&case.bytes).await;
                let mut buf = Vec::new();
                let now = tokio::time::Instant::now();
                let mut read = client::read_response(
                    &mut stream,
                    &mut buf,
                    false,
                    now + Duration::from_millis(300),
                )
                .await;
                if matches!(read, Read::TimedOut { bytes: 0 }) {
                    let _ = stream.shutdown().await;
                    read = client::read_response(
                        &mut stream,
                        &mut buf,
                        false,
                        now + Duration::from_secs(3),
                    )
                    .await;
                }
                match read {
                    Read::Response(r) => stats.response(&case, &r, live),
                    other => stats.no_answer(&case, &describe(&other)),
                }
            }
            Err(_) => stats.no_answer(&case, "connect failed"),
        }
        live.done.fetch_add(1, Ordering::Relaxed);
    }
}

fn describe(read: &Read) -> String {
    match read {
        Read::Response(_) => "response".to_owned(),
        Read::Closed => "closed without a response".to_owned(),
        Read::Reset => "reset without a response".to_owned(),
        Read::Truncated { .. } => "response cut off".to_owned(),
        Read::TimedOut { bytes: 0 } => "no answer in time".to_owned(),
        Read::TimedOut { .. } => "response not complete in time".to_owned(),
        Read::Garbage { .. } => "unparsable response".to_owned(),
    }
}

/// RSS samples `(cases done, KiB)`.
type Samples = Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

/// Samples the gateway's RSS every 250 ms.
async fn sample_rss(pid: u32, live: Arc<Live>, samples: Samples) {
    loop {
        if let Some(kib) = rss_kib(pid)
            && let Ok(mut s) = samples.lock()
        {
            s.push((live.done.load(Ordering::Relaxed), kib));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// RSS after the warm-up (the first sample past 5% of the cases) and the peak.
fn rss_after_warmup(samples: &Samples, cases: u64) -> (Option<u64>, Option<u64>) {
    let s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let warm = cases / 20;
    let baseline = s.iter().find(|(done, _)| *done >= warm).map(|(_, k)| *k);
    let peak = s.iter().map(|(_, k)| *k).max();
    (baseline, peak)
}

async fn report_progress(live: Arc<Live>, cases: u64, started: Instant) {
    let mut last_tenth = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let done = live.done.load(Ordering::Relaxed);
        let tenth = done * 10 / cases.max(1);
        if tenth > last_tenth {
            last_tenth = tenth;
            progress(
                Scenario::Fuzz,
                format!(
                    "{done}/{cases} cases, {:.0}/s, gateway-made 5xx {}, 4xx not in the error shape {}",
                    done as f64 / started.elapsed().as_secs_f64(),
                    live.gateway_5xx.load(Ordering::Relaxed),
                    live.bad_shape.load(Ordering::Relaxed),
                ),
            );
        }
    }
}

async fn reqwest_healthz(url: &str) -> Option<u16> {
    let client = super::load::client().ok()?;
    client
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
