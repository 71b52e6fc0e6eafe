//! Tests of the gateway benchmark's bookkeeping against in-process fakes (no timing assertions).
#![allow(clippy::unwrap_used)] // a test may panic on what it did not expect

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use routemesh_loadtest::bench::{self, BenchConfig, BenchError, HostInfo, Report};
use routemesh_test_support::fake::{self, FakeConfig};
use serde_json::{Value, json};

async fn serve(app: Router) -> String {
    routemesh_runtime::install_tls_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn start_fake(name: &str, served: &[&str]) -> String {
    let cfg = FakeConfig {
        name: name.to_owned(),
        served_models: served.iter().map(|m| (*m).to_owned()).collect(),
        ..FakeConfig::default()
    };
    serve(fake::router(cfg).unwrap()).await
}

fn small(gateway: &str, direct: &str) -> BenchConfig {
    BenchConfig {
        requests: 30,
        warmup: 5,
        concurrency: 2,
        batch: Some(10),
        ..BenchConfig::new(gateway, direct)
    }
}

fn report(cfg: &BenchConfig, m: &bench::Measurements) -> Report {
    Report::new(
        cfg,
        m,
        HostInfo::detect(),
        "bench-gateway --test".to_owned(),
    )
}

#[tokio::test]
async fn gateway_without_server_timing_reports_stages_as_missing() {
    let gateway = start_fake("not-a-gateway", &[]).await;
    let direct = start_fake("direct", &["llama-3.2-1b"]).await;
    let cfg = small(&gateway, &direct);
    let measured = bench::run(&cfg).await.unwrap();
    assert_eq!(measured.gateway.target.e2e.len(), 30);
    assert_eq!(measured.direct.e2e.len(), 30);
    assert_eq!(measured.gateway.with_timing, 0);
    assert!(measured.gateway.stages.is_empty());

    // preflight + warm-up + measured requests reached each fake
    for base in [&gateway, &direct] {
        let stats: Value = reqwest::get(format!("{base}/stats"))
            .await
            .unwrap()
            .json_bytes()
            .await;
        assert_eq!(stats["requests"], 1 + 5 + 30, "{base}");
    }

    let report = report(&cfg, &measured);
    assert_eq!(report.stages.len(), 4);
    assert!(
        report
            .stages
            .iter()
            .all(|s| s.latency.count == 0 && s.latency.p50_ms.is_none())
    );
    assert!(report.added_ms["p50"].is_some());
    assert_eq!(report.gateway_own_overhead.n, 0);
    let md = report.to_markdown();
    assert!(
        md.contains("| classify | n/a | n/a | n/a | n/a | n/a | n/a |"),
        "{md}"
    );
    assert!(md.contains("`bench-gateway --test`"), "{md}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["stages"][0]["stage"], "classify");
    assert_eq!(json["stages"][0]["p50_ms"], Value::Null);
    assert_eq!(json["gateway"]["end_to_end"]["count"], 30);
}

/// A stand-in gateway that answers at once with fixed `Server-Timing` and model headers.
async fn timed_gateway() -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let mut headers = HeaderMap::new();
            let timing =
                "classify;dur=1.5, decide;dur=0.25, upstream;dur=2, total;dur=4.5, cache;dur=0.1";
            headers.insert("server-timing", timing.parse().unwrap());
            headers.insert("x-routemesh-model", "qwen-math-7b".parse().unwrap());
            (headers, axum::Json(json!({ "object": "chat.completion" })))
        }),
    );
    serve(app).await
}

#[tokio::test]
async fn server_timing_stages_and_overheads_are_reported() {
    let gateway = timed_gateway().await;
    let direct = start_fake("direct", &[]).await;
    let cfg = small(&gateway, &direct);
    let measured = bench::run(&cfg).await.unwrap();
    let report = report(&cfg, &measured);
    assert_eq!(report.with_server_timing, 30);
    let names: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(names, ["classify", "decide", "upstream", "total", "cache"]);
    let p50 = |i: usize| report.stages[i].latency.p50_ms.unwrap();
    assert!((p50(0) - 1.5).abs() < 0.01 && (p50(1) - 0.25).abs() < 0.01);
    assert!((p50(3) - 4.5).abs() < 0.01);
    let own = report.gateway_own_overhead;
    assert_eq!(own.n, 30);
    assert!((own.mean_ms.unwrap() - 2.5).abs() < 1e-9, "{own:?}");
    assert!((report.proxy_overhead.mean_ms.unwrap() - 0.75).abs() < 1e-9);
    assert_eq!(report.models["qwen-math-7b"], 30);
    assert!(report.to_markdown().contains("| qwen-math-7b | 30 |"));
}

#[tokio::test]
async fn an_unreachable_or_refusing_target_fails_before_measuring() {
    let direct = start_fake("direct", &["llama-3.2-1b"]).await;
    let refusing = start_fake("gw", &["other-model"]).await;
    let err = bench::run(&small(&refusing, &direct)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            BenchError::Preflight {
                target: "gateway",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("404"), "{err}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let open = start_fake("open", &[]).await;
    let err = bench::run(&small(&open, &closed)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            BenchError::Preflight {
                target: "direct upstream",
                ..
            }
        ),
        "{err}"
    );
}

trait JsonBytes {
    async fn json_bytes(self) -> Value;
}

impl JsonBytes for reqwest::Response {
    async fn json_bytes(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
