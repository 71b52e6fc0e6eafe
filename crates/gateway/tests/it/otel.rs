//! OpenTelemetry trace export (`tracing.otlp`): a fake OTLP/HTTP collector
//! (a test fixture: an axum server that records what is posted to
//! `/v1/traces`) receives each request's `request` span with its request
//! id, flushed at exit, and never the prompt; a bad `tracing.otlp` key is
//! refused before anything starts.

use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::StatusCode;
use routemesh_test_support::gateway::{Fake, Gateway, chat, header};
use routemesh_test_support::model_dir;
use tokio::net::TcpListener;

type Bodies = Arc<Mutex<Vec<Bytes>>>;

/// A fake OTLP/HTTP collector: answers 200 to every export and keeps the
/// protobuf bodies.
struct Collector {
    endpoint: String,
    bodies: Bodies,
}

impl Collector {
    async fn start() -> Result<Self> {
        let bodies = Bodies::default();
        let app = Router::new()
            .route("/v1/traces", post(record))
            .with_state(bodies.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake collector stopped: {e}");
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}/v1/traces"),
            bodies,
        })
    }

    /// Everything posted so far, concatenated.
    fn received(&self) -> Result<Vec<u8>> {
        let bodies = self
            .bodies
            .lock()
            .map_err(|_| anyhow::anyhow!("collector lock poisoned"))?;
        Ok(bodies.concat())
    }
}

async fn record(State(bodies): State<Bodies>, body: Bytes) -> StatusCode {
    match bodies.lock() {
        Ok(mut b) => {
            b.push(body);
            StatusCode::OK
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn config(fake: &Fake, tracing: &str) -> String {
    format!(
        r#"
encoder: {{ model_dir: "{model}" }}
upstreams:
  - {{ name: a, base_url: "{a}/v1" }}
models:
  - {{ name: model-a, upstream: a }}
default: {{ model: model-a }}
tracing: {tracing}
"#,
        model = model_dir().display(),
        a = fake.base,
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn request_spans_are_exported_with_their_id_flushed_at_exit_without_the_prompt() -> Result<()>
{
    let collector = Collector::start().await?;
    let fake = Fake::serving("a", "model-a").await?;
    let text = config(
        &fake,
        &format!(
            "{{ otlp: {{ endpoint: \"{}\", service_name: routemesh-under-test }} }}",
            collector.endpoint
        ),
    );
    // The batch processor's scheduled export comes only after an hour, so
    // what reaches the collector is the flush at exit.
    let mut gw = Gateway::start_with_env(&text, &[("OTEL_BSP_SCHEDULE_DELAY", "3600000")]).await?;
    let prompt = "Which otter guards the marmalade vault at midnight?";
    let resp = gw
        .post("/v1/chat/completions", chat("auto", prompt))
        .await?;
    ensure!(resp.status() == 200, "status {}", resp.status());
    let id = header(&resp, "x-routemesh-request-id");
    ensure!(id.len() == 32, "request id `{id}`");
    assert!(
        collector.received()?.is_empty(),
        "nothing is exported before the scheduled delay or the exit"
    );

    let code = gw.terminate().await?;
    assert_eq!(code, Some(0), "clean shutdown");
    let got = collector.received()?;
    ensure!(
        !got.is_empty(),
        "the collector received nothing; gateway log:\n{}",
        gw.logs()
    );
    // Protobuf strings are raw UTF-8: the span's `request_id` attribute
    // holds the id as written in the response header.
    assert!(
        contains(&got, id.as_bytes()),
        "the request id was not exported"
    );
    // `Span.name` is field 5 (tag 0x2a), length 7, "request".
    assert!(
        contains(&got, b"\x2a\x07request"),
        "no span named `request` was exported"
    );
    assert!(
        contains(&got, b"routemesh-under-test"),
        "service.name is the configured one"
    );
    for needle in [prompt, "marmalade"] {
        assert!(
            !contains(&got, needle.as_bytes()),
            "the prompt (`{needle}`) reached the collector"
        );
    }
    Ok(())
}

#[test]
fn a_sample_ratio_above_one_is_refused_with_exit_64_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "encoder: { model_dir: m }\n\
         upstreams: [{ name: a, base_url: \"http://127.0.0.1:9/v1\" }]\n\
         models: [{ name: model-a, upstream: a }]\n\
         default: { model: model-a }\n\
         tracing: { otlp: { endpoint: \"http://127.0.0.1:4318/v1/traces\", sample_ratio: 2 } }\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_routemesh"))
        .arg("check-config")
        .arg(&path)
        .output()
        .context("run routemesh check-config")?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("tracing.otlp.sample_ratio"), "{err}");
    Ok(())
}
