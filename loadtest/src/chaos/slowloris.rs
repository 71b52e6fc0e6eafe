//! Slowloris: the gateway runs with a small file limit (`ulimit -n`, 256 by default) while the
//! client opens `--slow-connections` (2,000) slow connections at once — idle, partial request line
//! and headers, partial body, partial chunk, idle after a request — trickling a byte every 2 s,
//! and reopens any the server closes 1 s later, as an attacker would, at most 500 reopens per
//! second (a slow attack, not a connection flood, and the same one every run). Meanwhile a fresh
//! connection probes `GET /healthz` every 100 ms.
//!
//! Target: every probe answered within 2 s (a generous bound: the latency target, < 100 ms, is
//! reported, not asserted, since a timed assertion on a shared 2-core machine would be flaky).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use super::client::{self, Read};
use super::configs::{Classifier, GatewayConfig, UpstreamCfg};
use super::procs::GatewayProc;
use super::report::ScenarioReport;
use super::{ChaosError, Scenario, Settings, latency_summary, progress};

/// A probe without an answer within this long counts as unanswered.
const PROBE_BOUND: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_millis(100);
const TRICKLE_EVERY: Duration = Duration::from_secs(2);
/// A slow connection the server closed (or refused) is opened again this much later.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Most connections reopened per second (slowhttptest's `-r`) after the first burst of
/// `--slow-connections` opens: a slow attack, not a connection flood, the same on every run.
const OPENS_PER_SEC: u32 = 500;

/// Spaces connection attempts `1 / OPENS_PER_SEC` apart across all slow connections.
#[derive(Debug)]
struct Pacer {
    next: tokio::sync::Mutex<tokio::time::Instant>,
    every: Duration,
}

impl Pacer {
    fn new() -> Self {
        Self {
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            every: Duration::from_secs(1) / OPENS_PER_SEC,
        }
    }

    /// Waits for this attempt's slot.
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.every;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// How a slow connection misbehaves.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Idle,
    PartialHead,
    PartialBody,
    PartialChunk,
    IdleAfterRequest,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Self::Idle,
        Self::PartialHead,
        Self::PartialBody,
        Self::PartialChunk,
        Self::IdleAfterRequest,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle (nothing sent)",
            Self::PartialHead => "partial headers",
            Self::PartialBody => "partial body",
            Self::PartialChunk => "partial chunk",
            Self::IdleAfterRequest => "idle after a request",
        }
    }

    /// What is sent at once.
    fn opening(self) -> &'static [u8] {
        match self {
            Self::Idle => b"",
            Self::PartialHead => b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-slow: ",
            Self::PartialBody => {
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":"
            }
            Self::PartialChunk => {
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\n{"
            }
            Self::IdleAfterRequest => b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        }
    }

    fn trickles(self) -> bool {
        matches!(
            self,
            Self::PartialHead | Self::PartialBody | Self::PartialChunk
        )
    }
}

/// What the slow connections saw, shared by their tasks.
#[derive(Debug, Default)]
struct SlowStats {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    open_now: AtomicUsize,
    open_peak: AtomicUsize,
    /// Connections whose first connect attempt has ended (connected or not).
    first_tried: AtomicUsize,
    closed: std::sync::Mutex<BTreeMap<&'static str, Vec<f64>>>,
    responses: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// One probe's result.
#[derive(Debug, Clone)]
struct Probe {
    phase: &'static str,
    /// Latency in ms when answered.
    latency_ms: Option<f64>,
    status: Option<u16>,
    failure: Option<String>,
}

pub async fn run(settings: &Settings, report: &mut ScenarioReport) -> Result<(), ChaosError> {
    let sc = Scenario::Slowloris;
    let n = settings.slow_connections;
    let own_limit = open_files_limit();
    if own_limit.is_some_and(|l| l < n as u64 + 256) {
        return Err(ChaosError::setup(format!(
            "this process may open only {} files; {n} slow connections need {}: raise the hard limit (`ulimit -Hn {}` as root; this binary raises the soft one to it)",
            own_limit.unwrap_or(0),
            n + 256,
            n + 1024
        )));
    }
    let dir = settings.scenario_dir(sc)?;
    // No upstream is asked: /healthz and slow requests only.
    let cfg = GatewayConfig::two_models(
        Classifier::Embedded {
            model_dir: settings.model_dir.display().to_string(),
        },
        UpstreamCfg::new("up-a", "http://127.0.0.1:9"),
        UpstreamCfg::new("up-b", "http://127.0.0.1:9"),
    );
    let config_path = dir.join("gateway.yaml");
    cfg.write_to(&config_path)?;
    let mut spawn = GatewayProc::spawn("gateway", &settings.bins.gateway, &config_path, &dir);
    spawn.fd_limit = Some(settings.fd_limit);
    report.setup(format!(
        "gateway: `{}` (config {})",
        spawn.command_line(),
        config_path.display()
    ));
    let mut gw = GatewayProc::start(spawn).await?;
    let addr = gw.addr()?;

    let probes = Arc::new(std::sync::Mutex::new(Vec::<Probe>::new()));
    progress(sc, "baseline probes");
    probe_for(addr, "before", Duration::from_secs(2), &probes).await;

    let stats = Arc::new(SlowStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    progress(
        sc,
        format!(
            "opening {n} slow connections (gateway file limit {})",
            settings.fd_limit
        ),
    );
    let attack_started = Instant::now();
    let pacer = Arc::new(Pacer::new());
    let mut slow = Vec::with_capacity(n);
    for i in 0..n {
        let kind = Kind::ALL[i % Kind::ALL.len()];
        let (stats, stop, pacer) = (stats.clone(), stop_rx.clone(), pacer.clone());
        slow.push(tokio::spawn(slow_connection(
            addr, i as u64, kind, stats, pacer, stop,
        )));
    }
    // The hold starts once every first connect has ended (at most 10 s).
    let burst_until = Instant::now() + Duration::from_secs(10);
    while stats.first_tried.load(Ordering::Relaxed) < n && Instant::now() < burst_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let burst_s = attack_started.elapsed().as_secs_f64();
    let after_burst = stats.open_now.load(Ordering::Relaxed);
    progress(
        sc,
        format!(
            "holding them for {} s while probing /healthz",
            settings.hold.as_secs()
        ),
    );
    probe_for(addr, "during", settings.hold, &probes).await;
    let _ = stop_tx.send(true);
    for t in slow {
        let _ = t.await;
    }
    let attack_s = attack_started.elapsed().as_secs_f64();
    progress(sc, "slow connections dropped; probing again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    probe_for(addr, "after", Duration::from_secs(2), &probes).await;

    let alive = gw.proc.running();
    let log = gw.proc.stderr();
    let accept_errors = log.matches("accept error").count();
    let probes = probes.lock().map(|p| p.clone()).unwrap_or_default();
    let unanswered: Vec<&Probe> = probes.iter().filter(|p| p.latency_ms.is_none()).collect();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for p in &unanswered {
        *failures
            .entry(format!(
                "{}: {}",
                p.phase,
                p.failure.as_deref().unwrap_or("?")
            ))
            .or_default() += 1;
    }
    let phase = |name: &str| -> Vec<f64> {
        probes
            .iter()
            .filter(|p| p.phase == name)
            .filter_map(|p| p.latency_ms)
            .collect()
    };
    let non_200 = probes
        .iter()
        .filter(|p| p.status.is_some_and(|s| s != 200))
        .count();
    let closed = stats.closed.lock().map(|c| c.clone()).unwrap_or_default();
    let closed_fig: BTreeMap<&str, serde_json::Value> = closed
        .iter()
        .map(|(k, ages)| {
            (
                *k,
                json!({ "closed": ages.len(), "median_age_s": super::quantile(ages, 0.5).map(|a| (a * 10.0).round() / 10.0) }),
            )
        })
        .collect();
    let closed_total: usize = closed.values().map(Vec::len).sum();

    report.figure(
        "slow connections opened at once (the attacker's sockets)",
        n,
    );
    report.figure("s to open them", (burst_s * 100.0).round() / 100.0);
    report.figure(
        "slow connections still open when the burst ended (client's view)",
        after_burst,
    );
    report.figure("connections reopened per second, at most", OPENS_PER_SEC);
    report.figure("gateway file limit (ulimit -n)", settings.fd_limit);
    report.figure("attack s", (attack_s * 10.0).round() / 10.0);
    report.figure(
        "slow connections opened (reopened ones included)",
        stats.opened.load(Ordering::Relaxed),
    );
    report.figure(
        "slow connects failed (timeout or refused)",
        stats.connect_failed.load(Ordering::Relaxed),
    );
    report.figure(
        "slow connections open at once, peak (client's view)",
        stats.open_peak.load(Ordering::Relaxed),
    );
    report.figure("slow connections closed by the server", closed_total);
    report.figure("closed by the server, by kind", json!(closed_fig));
    report.figure(
        "responses the slow connections got",
        json!(
            stats
                .responses
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default()
        ),
    );
    report.figure("probes", probes.len());
    report.figure("probes unanswered within 2 s", unanswered.len());
    report.figure("probes answered non-200", non_200);
    report.figure("probe failures", json!(failures));
    report.figure(
        "probe latency before the attack",
        latency_summary(&phase("before")),
    );
    report.figure(
        "probe latency during the attack",
        latency_summary(&phase("during")),
    );
    report.figure(
        "probe latency after the attack",
        latency_summary(&phase("after")),
    );
    report.figure("accept errors in the gateway log", accept_errors);
    report.figure("gateway alive at the end", alive);

    report.target(
        "/healthz probes answered within 2 s",
        "all",
        format!("{} of {} unanswered", unanswered.len(), probes.len()),
        unanswered.is_empty(),
        Some("16.1"),
    );
    report.target(
        "/healthz probes answered 200",
        "all",
        format!("{non_200} non-200"),
        non_200 == 0,
        Some("16.1"),
    );
    report.target("gateway alive", "yes", alive.to_string(), alive, None);
    let during = phase("during");
    let p99 = super::quantile(&during, 0.99);
    report.note(format!(
        "Latency target < 100 ms (reported, not asserted): during the attack p99 {} ms over {} answered probes.",
        p99.map_or("n/a".to_owned(), |v| format!("{v:.1}")),
        during.len()
    ));
    report.note("Each probe is a new connection (connect + GET /healthz + close), so it measures whether the server still accepts, not only whether a kept connection is served.");
    report.note(format!("All {n} slow connections are opened at once (the server accepts each and, past `server.max_connections` — 3/4 of its file limit — evicts the longest-silent one); one the server closes is reopened 1 s later, as an attacker would, at most {OPENS_PER_SEC} reopens per second in all. `closed by the server` is the listener's timeouts and connection limit at work; the client's peak of open connections counts sockets the server had already evicted but whose close the client had not read yet."));
    gw.proc.kill9().await;
    Ok(())
}

/// Probes `/healthz` every 100 ms for `span`, each on a fresh connection.
async fn probe_for(
    addr: SocketAddr,
    phase: &'static str,
    span: Duration,
    out: &Arc<std::sync::Mutex<Vec<Probe>>>,
) {
    let until = Instant::now() + span;
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let p = probe(addr, phase, 100_000 + n).await;
            if let Ok(mut v) = out.lock() {
                v.push(p);
            }
        }));
        tokio::time::sleep(PROBE_EVERY).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn probe(addr: SocketAddr, phase: &'static str, n: u64) -> Probe {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + PROBE_BOUND;
    let fail = |why: &str| Probe {
        phase,
        latency_ms: None,
        status: None,
        failure: Some(why.to_owned()),
    };
    let mut stream = match client::connect(addr, n, PROBE_BOUND).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return fail("connect timed out"),
        Err(_) => return fail("connect failed"),
    };
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return fail("write failed");
    }
    let mut buf = Vec::new();
    match client::read_response(&mut stream, &mut buf, false, deadline).await {
        Read::Response(r) => Probe {
            phase,
            latency_ms: Some(started.elapsed().as_secs_f64() * 1e3),
            status: Some(r.status),
            failure: None,
        },
        Read::TimedOut { .. } => fail("no answer within 2 s"),
        Read::Closed | Read::Reset => fail("closed without an answer"),
        _ => fail("broken answer"),
    }
}

/// One slow connection, reopened whenever the server closes it, until `stop`.
async fn slow_connection(
    addr: SocketAddr,
    id: u64,
    kind: Kind,
    stats: Arc<SlowStats>,
    pacer: Arc<Pacer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt = 0u64;
    while !*stop.borrow() {
        attempt += 1;
        // The first open is the burst; reopens are paced.
        if attempt > 1 {
            tokio::select! {
                () = pacer.wait() => {}
                _ = stop.changed() => return,
            }
        }
        let stream = tokio::select! {
            s = client::connect(addr, id + attempt * 7919, Duration::from_secs(3)) => s,
            _ = stop.changed() => return,
        };
        if attempt == 1 {
            stats.first_tried.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(stream) = stream else {
            stats.connect_failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(REOPEN_AFTER).await;
            continue;
        };
        stats.opened.fetch_add(1, Ordering::Relaxed);
        let now_open = stats.open_now.fetch_add(1, Ordering::Relaxed) + 1;
        stats.open_peak.fetch_max(now_open, Ordering::Relaxed);
        let opened = Instant::now();
        let closed_by_server = hold(stream, kind, &stats, &mut stop).await;
        stats.open_now.fetch_sub(1, Ordering::Relaxed);
        if !closed_by_server {
            return;
        }
        if let Ok(mut c) = stats.closed.lock() {
            c.entry(kind.name())
                .or_default()
                .push(opened.elapsed().as_secs_f64());
        }
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// Keeps one connection slow; true when the server closed it, false when told to stop.
async fn hold(
    stream: tokio::net::TcpStream,
    kind: Kind,
    stats: &SlowStats,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let (mut rd, mut wr) = stream.into_split();
    if wr.write_all(kind.opening()).await.is_err() {
        return true;
    }
    let mut buf = [0u8; 4096];
    let mut seen_status = false;
    let mut tick = tokio::time::interval(TRICKLE_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return false,
            _ = tick.tick() => {
                if kind.trickles() && wr.write_all(b"a").await.is_err() {
                    return true;
                }
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(k) => {
                    if !seen_status {
                        seen_status = true;
                        let head = String::from_utf8_lossy(&buf[..k.min(12)]).into_owned();
                        let status = head.split_whitespace().nth(1).unwrap_or("?").to_owned();
                        if let Ok(mut r) = stats.responses.lock() {
                            *r.entry(format!("{}: {status}", kind.name())).or_default() += 1;
                        }
                    }
                }
            },
        }
    }
}

/// The soft open-file limit of this process (the binary raised it to the hard one at start).
fn open_files_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}
