//! What translating a streamed answer costs: a chat-completions stream of
//! 256 chunks fed, chunk by chunk, through the Messages translator and the
//! Responses translator, against relaying the same chunks untouched (a
//! copy). Reports, per request, the added time before the first byte can
//! go out (the first chunk) and over the whole stream, p50 / p99.
//!
//! `cargo run --release -p routemesh-gateway --example translate_bench -- [RUNS] [REPORT.md]`

use std::time::{Duration, Instant};

use routemesh_gateway::api::anthropic::answer::StreamTranslator;
use routemesh_gateway::api::openai::responses::{Echo, ResponsesStream};

fn stream(chunks: usize) -> Vec<Vec<u8>> {
    let mut out = vec![
        br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
            .to_vec(),
    ];
    for i in 0..chunks {
        out.push(format!(
            r#"data: {{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":" token{i}"}},"finish_reason":null}}]}}"#
        ).into_bytes());
    }
    out.push(br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_vec());
    out.push(br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":256,"total_tokens":265}}"#.to_vec());
    out.push(b"data: [DONE]".to_vec());
    out.into_iter()
        .map(|mut e| {
            e.extend_from_slice(b"\n\n");
            e
        })
        .collect()
}

/// (first chunk, whole stream) for one request through `feed`.
fn run(chunks: &[Vec<u8>], mut feed: impl FnMut(&[u8]) -> usize) -> (Duration, Duration) {
    let start = Instant::now();
    let mut first = None;
    let mut bytes = 0;
    for c in chunks {
        bytes += feed(c);
        if first.is_none() {
            first = Some(start.elapsed());
        }
    }
    std::hint::black_box(bytes);
    (first.unwrap_or_default(), start.elapsed())
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let report = args.next();
    let chunks = stream(256);
    let mut rows = Vec::new();
    // Interleaved, so the machine's noise falls on all three alike.
    let mut samples: [(Vec<Duration>, Vec<Duration>); 3] = Default::default();
    for _ in 0..runs {
        let (f, w) = run(&chunks, |c| bytes::Bytes::copy_from_slice(c).len());
        samples[0].0.push(f);
        samples[0].1.push(w);
        let mut t = StreamTranslator::new("auto");
        let (f, w) = run(&chunks, |c| t.feed(c).len());
        samples[1].0.push(f);
        samples[1].1.push(w);
        let mut r = ResponsesStream::new("auto", &Echo::default());
        let (f, w) = run(&chunks, |c| r.feed(c).len());
        samples[2].0.push(f);
        samples[2].1.push(w);
    }
    let names = [
        "relay (copy, baseline)",
        "chat → Messages events",
        "chat → Responses events",
    ];
    for (name, (first, whole)) in names.iter().zip(samples.iter_mut()) {
        rows.push(format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            pct(first, 0.5),
            pct(first, 0.99),
            pct(whole, 0.5),
            pct(whole, 0.99)
        ));
    }
    let (profile, flag) = if cfg!(debug_assertions) {
        (
            "dev profile: the gateway's own code unoptimised (its dependencies at opt-level 3), so an upper bound",
            "",
        )
    } else {
        ("release profile", "--release ")
    };
    let text = format!(
        "# Stream translation cost\n\n`cargo run {flag}-p routemesh-gateway --example translate_bench -- {runs}` ({profile}): \
         a chat-completions stream of 256 content chunks (plus role, finish, usage and `[DONE]`), \
         {runs} requests per translator, interleaved. Times in µs per request.\n\n\
         | path | first chunk p50 | first chunk p99 | whole stream p50 | whole stream p99 |\n|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    print!("{text}");
    if let Some(path) = report
        && let Err(e) = std::fs::write(&path, &text)
    {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
}
