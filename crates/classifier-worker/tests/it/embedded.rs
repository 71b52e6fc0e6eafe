//! The embedded classifier: concurrent prompts, signals equal to direct
//! computation, route similarity that makes sense.

use std::path::Path;

use anyhow::Result;
use routemesh_classifier_worker::{EmbeddedClassifier, Encoder, SignalComputer};
use routemesh_common::config;

use crate::model_dir;

const CONFIG: &str = r#"
encoder: { model_dir: unused }
upstreams: [ { name: up, base_url: "http://127.0.0.1:1" } ]
models: [ { name: m, upstream: up } ]
signals:
  routes:
    - name: math
      examples: ["Solve the equation 2x + 3 = 11", "What is the integral of sin(x)?"]
    - name: greeting
      examples: ["Hello!", "Good morning, how are you?"]
  keywords:
    - { name: rust, patterns: ["cargo", "rustc"] }
default: { model: m }
"#;

fn setup() -> Result<(Encoder, SignalComputer)> {
    let cfg = config::parse(CONFIG, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let encoder = Encoder::load(&model_dir(), 256)?;
    let signals = SignalComputer::build(&encoder, &cfg.signals, 8)?;
    Ok((encoder, signals))
}

#[test]
fn route_similarity_prefers_the_matching_route() -> Result<()> {
    let (encoder, signals) = setup()?;
    let prompts = [
        "Compute the derivative of x^2 + 3x",
        "Hi there, nice to meet you!",
        "Run CARGO build",
    ];
    let out = encoder.encode(&prompts)?;
    let s: Vec<_> = (0..3)
        .map(|i| signals.compute(prompts[i], &out.embeddings[i], out.token_counts[i], false))
        .collect();
    assert!(
        s[0].route_scores[0] > s[0].route_scores[1],
        "math prompt: {:?}",
        s[0].route_scores
    );
    assert!(
        s[1].route_scores[1] > s[1].route_scores[0],
        "greeting: {:?}",
        s[1].route_scores
    );
    assert_eq!(
        (s[0].keywords[0], s[2].keywords[0]),
        (false, true),
        "keywords are case-insensitive"
    );
    assert_eq!(s[1].prompt_tokens as usize, out.token_counts[1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prompts_get_the_same_signals_as_one_at_a_time() -> Result<()> {
    let (encoder, signals) = setup()?;
    let prompts: Vec<String> = (0..24)
        .map(|i| format!("Question number {i}: what is {i} plus {}?", i * 7))
        .collect();
    let expected: Vec<_> = prompts
        .iter()
        .map(|p| {
            let e = encoder.encode(&[p.as_str()])?;
            Ok(signals.compute(p, &e.embeddings[0], e.token_counts[0], e.truncated[0]))
        })
        .collect::<Result<_>>()?;
    let classifier = EmbeddedClassifier::start(encoder, signals, 8, 64)?;
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let c = classifier.clone();
            let p = p.clone();
            tokio::spawn(async move { c.classify(p).await })
        })
        .collect();
    let mut max_batch = 0;
    for (h, want) in handles.into_iter().zip(&expected) {
        let got = h.await??;
        max_batch = max_batch.max(got.batch_size);
        assert_eq!(got.signals.prompt_tokens, want.prompt_tokens);
        assert_eq!(got.signals.keywords, want.keywords);
        for (a, b) in got.signals.route_scores.iter().zip(&want.route_scores) {
            assert!((a - b).abs() < 1e-5, "batched {a} vs alone {b}");
        }
    }
    assert!(
        max_batch <= 8,
        "batches never exceed max_batch ({max_batch})"
    );
    Ok(())
}
