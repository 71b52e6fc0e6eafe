//! The HTTP listener against hostile clients, over raw TCP: idle and slow
//! connections are closed, a small file limit does not lock out a client
//! that sends its request at once, and what hyper refuses below the
//! handlers still gets the API's error body.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use routemesh_test_support::gateway::{Fakes, Gateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A bound for what the gateway must do by itself, so a test that would
/// hang fails instead; not a measurement.
const PATIENCE: Duration = Duration::from_secs(20);

fn addr(gw: &Gateway) -> String {
    gw.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a new connection and reads until the gateway closes
/// it: the whole response, as text.
async fn exchange(gw: &Gateway, request: &[u8]) -> Result<String> {
    let mut tcp = TcpStream::connect(addr(gw)).await?;
    tcp.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut out))
        .await
        .context("the gateway neither answered nor closed the connection")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The status and JSON error body of a raw response.
fn error_of(response: &str) -> Result<(u16, Value)> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no response head in {response:?}"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let v: Value = serde_json::from_str(body)
        .with_context(|| format!("the body of {head:?} is not JSON: {body:?}"))?;
    let e = &v["error"];
    if !(e["message"].as_str().is_some_and(|m| !m.is_empty())
        && e["type"].is_string()
        && e["code"].is_string()
        && e.get("param").is_some())
    {
        bail!("not the OpenAI error shape: {v}");
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    Ok((status, e.clone()))
}

/// Regression (issue 16, 5): malformed headers, a bad Content-Length,
/// obs-fold, an odd Transfer-Encoding (400), too many or too large headers
/// (431) and long URIs (414) were answered with empty bodies.
#[tokio::test]
async fn rejections_made_below_the_handlers_have_the_error_body() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start(&fakes.example_config()?).await?;
    let post = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let many_headers: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed header",
            format!("{post}bad header line\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            "bad content-length",
            format!("{post}content-length: 12abc\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            "two content-lengths",
            format!("{post}content-length: 2\r\ncontent-length: 3\r\n\r\nab"),
            400,
            "malformed_request",
        ),
        (
            "obs-fold",
            format!("{post}x-a: one\r\n  folded\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            "odd transfer-encoding",
            format!("{post}transfer-encoding: gzip, identity\r\n\r\n"),
            400,
            "malformed_request",
        ),
        (
            "bad request line",
            "GARBAGE\r\n\r\n".to_owned(),
            400,
            "malformed_request",
        ),
        (
            "too many headers",
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
            "headers_too_large",
        ),
        (
            "header too large",
            format!(
                "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
                "a".repeat(600_000)
            ),
            431,
            "headers_too_large",
        ),
        (
            "long URI",
            format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000)),
            414,
            "uri_too_long",
        ),
    ];
    for (what, request, status, code) in cases {
        let response = exchange(&gw, request.as_bytes()).await?;
        let (got, e) = error_of(&response).with_context(|| what.to_owned())?;
        assert_eq!((got, e["code"].as_str()), (status, Some(code)), "{what}");
    }
    // The gateway is still fine.
    let ok = exchange(
        &gw,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await?;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    Ok(())
}

/// Regression (issue 16, 1): with no header-read, idle or body-read
/// timeout, connections that send nothing, half a head or half a body were
/// never closed. Each is now closed (the half body with a 408 first).
#[tokio::test]
async fn idle_and_slow_connections_are_closed_by_their_timeouts() -> Result<()> {
    let fakes = Fakes::start().await?;
    let config = fakes.example_config()?.replace(
        "max_body_bytes: 1048576",
        "max_body_bytes: 1048576\n  timeouts: { header_read: 1s, body_read: 1s, idle: 1s }",
    );
    let gw = Gateway::start(&config).await?;

    // Nothing at all: closed at `idle`.
    let silent = exchange(&gw, b"").await?;
    assert_eq!(silent, "", "closed without a response");

    // A head trickling a byte every 100 ms: closed at `header_read`.
    let mut tcp = TcpStream::connect(addr(&gw)).await?;
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nx-slow: aaaaaaaaaaaa" {
            if tcp.write_all(&[*b]).await.is_err() {
                return Ok::<bool, anyhow::Error>(true);
            }
            // Real time: the gateway is a child process on the wall clock,
            // and its header timer is what this trickle must outlast; paused
            // time cannot move it (the watchdog's own rule is pinned on
            // paused time in `listener::conn`'s unit tests).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut rest = Vec::new();
        Ok(tcp.read_to_end(&mut rest).await.is_ok() && rest.is_empty())
    };
    let closed = tokio::time::timeout(PATIENCE, trickle)
        .await
        .context("a trickling head was never closed")??;
    assert!(closed, "the trickling head's connection was closed");

    // Half a body: 408 in the error shape.
    let half = b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":";
    let response = exchange(&gw, half).await?;
    let (status, e) = error_of(&response)?;
    assert_eq!((status, e["code"].as_str()), (408, Some("request_timeout")));

    let alive = gw.get_json("/healthz").await?;
    assert_eq!(alive["status"], "ok");
    Ok(())
}

/// Regression (issue 16, 1): with the file limit at 256, 300 connections
/// that send nothing made `/healthz` time out. Under a file limit of 128,
/// 300 idle, half-head and half-body connections held open do not keep
/// out clients that send their request at once, and the listener closes
/// slow ones to make room.
#[tokio::test]
async fn slow_connections_do_not_lock_out_healthz_under_a_small_file_limit() -> Result<()> {
    let fakes = Fakes::start().await?;
    let gw = Gateway::start_with_file_limit(&fakes.example_config()?, 128).await?;
    let mut held = Vec::new();
    for i in 0..300 {
        let Ok(Ok(mut tcp)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr(&gw))).await
        else {
            // The kernel's backlog is full: enough are held.
            break;
        };
        let start: &[u8] = match i % 3 {
            0 => b"",
            1 => b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: a",
            _ => b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{",
        };
        let _ = tcp.write_all(start).await;
        held.push(tcp);
    }
    assert!(
        held.len() > 128,
        "only {} connections were opened",
        held.len()
    );
    for probe in 0..20 {
        let answer = exchange(
            &gw,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
        .with_context(|| format!("probe {probe}"))?;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "probe {probe}: {answer}"
        );
    }
    // The listener made room by closing held connections.
    let mut closed = 0;
    for tcp in &mut held {
        let mut buf = [0u8; 512];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(10), tcp.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 20, "only {closed} held connections were closed");
    Ok(())
}
