//! Tests of the open-loop load generator against in-process fakes on 127.0.0.1: request counts
//! follow the schedule, failures are sorted by kind, latency is measured from the intended send
//! time, and a run's report files are written. Short, low-rate runs; no performance assertions.
#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use routemesh_loadtest::bench::HostInfo;
use routemesh_loadtest::loadgen::{self, Overrides, Report, Run, RunOptions, Scenario};
use routemesh_test_support::fake::{self, FakeConfig};
use serde_json::Value;

async fn serve(app: Router) -> String {
    routemesh_runtime::install_tls_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn start_fake(cfg: FakeConfig) -> String {
    serve(fake::router(cfg).unwrap()).await
}

/// A scenario from YAML lines (`target` comes from `base`; a plain mix unless one is given).
fn scenario(base: &str, yaml: &str) -> Scenario {
    let mix = if yaml.contains("mix:") {
        ""
    } else {
        "mix: [{prompt: hello}]"
    };
    let text = format!("name: test\n{yaml}\n{mix}\n");
    let over = Overrides {
        target: Some(base.to_owned()),
        ..Overrides::default()
    };
    Scenario::from_yaml(&text, "test", &over).unwrap()
}

async fn run(s: &Scenario) -> Run {
    loadgen::run(s, RunOptions::default()).await.unwrap()
}

fn report(s: &Scenario, run: &Run) -> Report {
    Report::new(
        s,
        run,
        "loadgen run test.yaml".to_owned(),
        HostInfo::detect(),
    )
}

async fn fake_requests(base: &str) -> u64 {
    let body = reqwest::get(format!("{base}/stats"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&body).unwrap();
    stats["requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_rate_times_duration_and_records_every_answer() {
    let base = start_fake(FakeConfig {
        tokens_per_sec: 2000.0,
        reply_tokens: 4,
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(
        &base,
        "rate: 100\nduration: 1s\nwarmup: 200ms\nmix:\n  - {prompt: a}\n  - {prompt: b, stream: true}",
    );
    let ran = run(&s).await;
    let r = &ran.recorder;
    // Constant arrivals: exactly rate × duration measured, rate × warm-up before them.
    assert_eq!((r.scheduled, r.warmup_sent), (100, 20));
    assert_eq!((r.ok, r.answered, r.error_count()), (100, 100, 0));
    assert_eq!(fake_requests(&base).await, 120);
    assert_eq!(r.latency.len(), 100);
    assert_eq!(r.service.len(), 100);
    // Streams (about half of the mix) have a time to first byte, and it comes before the end.
    let streams = r.first_byte.len();
    assert!(streams > 0 && streams < 100, "{streams}");
    assert!(r.first_byte.value_at_quantile(0.5) <= r.service.max());
    // Answers without the gateway's headers are counted as such.
    assert_eq!(r.models[loadgen::NONE], 100);
    assert!(!ran.interrupted);

    let report = report(&s, &ran);
    let timeline_total: u64 = report.timeline.iter().map(|p| p.scheduled).sum();
    let timeline_ok: u64 = report.timeline.iter().map(|p| p.ok).sum();
    assert_eq!((timeline_total, timeline_ok), (100, 100));
    assert!(report.timeline[0].p50_ms.is_some());
    assert_eq!(report.counts.sent, 100);
    assert_eq!(report.target_rate_rps, Some(100.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_kind() {
    let failing = start_fake(FakeConfig {
        error_rate: 1.0,
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(&failing, "rate: 50\nduration: 400ms");
    let ran = run(&s).await;
    let failed = report(&s, &ran);
    assert_eq!(failed.counts.scheduled, 20);
    assert_eq!(
        failed.errors.get("http_500"),
        Some(&20),
        "{:?}",
        failed.errors
    );
    assert_eq!(failed.error_classes.get("http_5xx"), Some(&20));
    assert_eq!((failed.counts.ok, failed.counts.answered), (0, 20));
    assert_eq!(failed.latency_ms.count, 0);
    assert_eq!(failed.latency_ms.p50, None);

    let picky = start_fake(FakeConfig {
        served_models: vec!["llama-3.2-1b".to_owned()],
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(&picky, "rate: 50\nduration: 200ms");
    let not_found = report(&s, &run(&s).await);
    assert_eq!(
        not_found.errors.get("http_404"),
        Some(&10),
        "{:?}",
        not_found.errors
    );
    assert_eq!(not_found.error_classes.get("http_4xx"), Some(&10));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let s = scenario(&closed, "rate: 50\nduration: 200ms");
    let refused = report(&s, &run(&s).await);
    assert_eq!(
        refused.errors.get("connect"),
        Some(&10),
        "{:?}",
        refused.errors
    );
    assert_eq!(refused.counts.answered, 0);

    let slow = start_fake(FakeConfig {
        latency: Duration::from_millis(400),
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(&slow, "rate: 20\nduration: 200ms\ntimeout: 50ms");
    let timed_out = report(&s, &run(&s).await);
    assert_eq!(
        timed_out.errors.get("timeout"),
        Some(&4),
        "{:?}",
        timed_out.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_beyond_the_in_flight_cap_are_dropped_not_delayed() {
    let base = start_fake(FakeConfig {
        latency: Duration::from_millis(150),
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(&base, "rate: 100\nduration: 500ms\nmax_in_flight: 2");
    let ran = run(&s).await;
    let report = report(&s, &ran);
    let c = &report.counts;
    assert_eq!(c.scheduled, 50);
    assert!(c.dropped > 0, "{c:?}");
    assert_eq!(c.sent + c.dropped, c.scheduled);
    assert_eq!(report.errors.get("dropped"), Some(&c.dropped));
    assert_eq!(fake_requests(&base).await, c.sent);
    // The schedule was kept: every slot was reached, dropped ones included, on time.
    let timeline_scheduled: u64 = report.timeline.iter().map(|p| p.scheduled).sum();
    assert_eq!(timeline_scheduled, 50);
}

/// The coordinated-omission property: when the server is slower than the arrival rate and the
/// client can only have a few requests in flight, requests wait; latency measured from the
/// intended send time includes that wait, service time does not. A closed-loop tool would
/// report only the service time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_from_the_intended_time_includes_waiting_that_service_time_hides() {
    let base = start_fake(FakeConfig {
        // Longer than the 10 ms between arrivals at 100 req/s.
        latency: Duration::from_millis(40),
        ..FakeConfig::default()
    })
    .await;
    let queued = scenario(
        &base,
        "rate: 100\nduration: 400ms\nmax_in_flight: 2\nmax_queue: 1000",
    );
    let ran = run(&queued).await;
    let q = report(&queued, &ran);
    assert_eq!(
        (q.counts.scheduled, q.counts.ok, q.counts.dropped),
        (40, 40, 0)
    );
    let (lat, svc, delay) = (&q.latency_ms, &q.service_time_ms, &q.send_delay_ms);
    assert!(lat.p50.unwrap() > svc.p50.unwrap(), "{lat:?} vs {svc:?}");
    assert!(lat.p99.unwrap() > svc.p99.unwrap(), "{lat:?} vs {svc:?}");
    assert!(lat.max.unwrap() > svc.max.unwrap(), "{lat:?} vs {svc:?}");
    // The difference is the wait for a slot, and it grows as the backlog builds.
    assert!(delay.max.unwrap() > delay.p50.unwrap(), "{delay:?}");
    let gap_queued = lat.mean.unwrap() - svc.mean.unwrap();

    // With room for every request, nothing waits: the gap is only the scheduler's own lag,
    // smaller than the wait above.
    let open = scenario(&base, "rate: 100\nduration: 400ms");
    let o = report(&open, &run(&open).await);
    let gap_open = o.latency_ms.mean.unwrap() - o.service_time_ms.mean.unwrap();
    assert!(gap_open >= 0.0, "{gap_open}");
    assert!(
        gap_queued > gap_open,
        "queued {gap_queued} ms, open {gap_open} ms"
    );
}

/// A stand-in gateway that answers at once with routing headers picked from the prompt.
async fn routing_gateway() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|body: String| async move {
            let (model, decision) = if body.contains("integral") {
                ("qwen-math-7b", "math")
            } else {
                ("llama-3.2-1b", "general")
            };
            let mut headers = HeaderMap::new();
            headers.insert("x-routemesh-model", model.parse().unwrap());
            headers.insert("x-routemesh-decision", decision.parse().unwrap());
            (headers, "{}")
        }),
    );
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_counted_by_routing_headers() {
    let base = routing_gateway().await;
    let s = scenario(
        &base,
        "rate: 100\nduration: 500ms\nseed: 9\nmix:\n  - {prompt: an integral}\n  - {prompt: hello}",
    );
    let report = report(&s, &run(&s).await);
    let (math, general) = (report.models["qwen-math-7b"], report.models["llama-3.2-1b"]);
    assert_eq!(math + general, 50);
    assert!(math > 0 && general > 0, "{:?}", report.models);
    assert_eq!(report.decisions["math"], math);
    assert_eq!(report.decisions["general"], general);
    assert!(
        report
            .to_markdown()
            .contains(&format!("| qwen-math-7b | {math} |"))
    );
}

#[tokio::test]
async fn a_stop_signal_ends_the_schedule_early() {
    let base = start_fake(FakeConfig::default()).await;
    let s = scenario(&base, "rate: 50\nduration: 10s");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopper = tokio::spawn(async move {
        // Real: the scheduler sleeps a thread of its own on `std::time`
        // (paused tokio time would not move it); any moment within its 10 s
        // schedule will do, 200 ms lets it send some requests first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
        tx // kept alive until the run is over
    });
    let opts = RunOptions {
        progress: false,
        stop: Some(rx),
    };
    let ran = loadgen::run(&s, opts).await.unwrap();
    drop(stopper.await.unwrap());
    assert!(ran.interrupted);
    assert!(ran.recorder.scheduled > 0 && ran.recorder.scheduled < 500);
    assert_eq!(ran.recorder.ok, ran.recorder.scheduled);
    assert!(report(&s, &ran).to_markdown().contains("Interrupted"));
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "loadgen-test-{name}-{}-{nanos}",
        std::process::id()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_a_json_report_a_markdown_summary_and_an_svg_plot() {
    let base = start_fake(FakeConfig {
        latency: Duration::from_millis(5),
        error_rate: 0.2,
        seed: 4,
        ..FakeConfig::default()
    })
    .await;
    let s = scenario(
        &base,
        "rate: 100\nduration: 1500ms\narrival: poisson\nseed: 5",
    );
    let ran = run(&s).await;
    let report = report(&s, &ran);
    let root = temp_dir("report");
    let dir = loadgen::default_out_dir(&root, &s.name, ran.started_at);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("test-") && name.ends_with('Z'), "{name}");
    let written = loadgen::write_outputs(&dir, &report).unwrap();

    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
    assert_eq!(json["scenario"]["name"], "test");
    assert_eq!(json["scenario"]["arrival"], "poisson");
    assert_eq!(json["command"], "loadgen run test.yaml");
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["machine"]["cpu"].is_string());
    assert!(json["started_at"].as_str().unwrap().ends_with('Z'));
    let counts = &json["counts"];
    assert_eq!(counts["scheduled"], report.counts.scheduled);
    let errors = json["errors"]["http_500"].as_u64().unwrap();
    assert!(errors > 0 && errors < report.counts.scheduled, "{errors}");
    for key in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(json["latency_ms"][key].is_f64(), "latency_ms.{key}");
        assert!(
            json["service_time_ms"][key].is_f64(),
            "service_time_ms.{key}"
        );
    }
    let timeline = json["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 2, "{timeline:?}");
    for key in ["second", "scheduled", "ok", "errors", "p50_ms", "p99_ms"] {
        assert!(timeline[0].get(key).is_some(), "timeline[0].{key}");
    }

    let md = std::fs::read_to_string(&written.markdown).unwrap();
    assert!(md.starts_with("# loadgen: test"), "{md}");
    assert!(md.contains("| http_500 |"), "{md}");

    let svg = std::fs::read_to_string(&written.svg).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("p99") && svg.contains("achieved (ok)"));
    assert!(svg.matches("<polyline").count() >= 4, "lines drawn");

    // The same folder is never reused.
    assert_ne!(
        loadgen::default_out_dir(&root, &s.name, ran.started_at),
        dir
    );
    std::fs::remove_dir_all(&root).unwrap();
}
