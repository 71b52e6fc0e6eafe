//! The batcher with the real model: concurrent prompts, signals equal to
//! direct computation, route similarity that makes sense.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use routemesh_classifier_worker::{
    BatchOptions, Batcher, ClassifyError, Encoder, EncoderOptions, SimulatedModel,
};
use routemesh_common::config;
use routemesh_signals::{PromptEmbedding, SignalComputer};

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
    let encoder = Encoder::load(&model_dir(), &EncoderOptions::new(256))?;
    let texts = SignalComputer::example_texts(&cfg.signals);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = encoder.encode(&refs)?.embeddings;
    let signals = SignalComputer::new(&cfg.signals, vectors)
        .ok_or_else(|| anyhow::anyhow!("count mismatch"))?;
    Ok((encoder, signals))
}

fn compute(
    signals: &SignalComputer,
    encoder: &Encoder,
    text: &str,
) -> Result<routemesh_common::Signals> {
    let e = encoder.encode(&[text])?;
    let p = PromptEmbedding {
        vector: &e.embeddings[0],
        tokens: e.token_counts[0],
        truncated: e.truncated[0],
        windows: e.windows[0].len(),
        outputs: &std::collections::BTreeMap::new(),
    };
    Ok(signals.compute(text, Some(p)))
}

#[test]
fn route_similarity_prefers_the_matching_route() -> Result<()> {
    let (encoder, signals) = setup()?;
    let math = compute(&signals, &encoder, "Compute the derivative of x^2 + 3x")?;
    let hello = compute(&signals, &encoder, "Hi there, nice to meet you!")?;
    let cargo = compute(&signals, &encoder, "Run CARGO build")?;
    assert!(
        math.route_scores[0] > math.route_scores[1],
        "math prompt: {:?}",
        math.route_scores
    );
    assert!(
        hello.route_scores[1] > hello.route_scores[0],
        "greeting: {:?}",
        hello.route_scores
    );
    assert_eq!(
        (math.keywords[0], cargo.keywords[0]),
        (false, true),
        "keywords are case-insensitive"
    );
    assert!(hello.prompt_tokens.is_some_and(|t| t > 2));
    let german = signals.compute(
        "Wie spät ist es heute Abend in Berlin, und regnet es noch?",
        None,
    );
    assert_eq!(german.language.map(|l| l.code).as_deref(), Some("deu"));
    let english = compute(
        &signals,
        &encoder,
        "Could you please explain how the immune system fights infections?",
    )?;
    assert_eq!(english.language.map(|l| l.code).as_deref(), Some("eng"));
    let degraded = signals.compute("cargo test", None);
    assert!(degraded.route_scores.is_empty() && degraded.prompt_tokens.is_none());
    assert_eq!(degraded.keywords, vec![true], "keywords need no embedding");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prompts_get_the_same_embeddings_as_one_at_a_time() -> Result<()> {
    let (encoder, _) = setup()?;
    let prompts: Vec<String> = (0..24)
        .map(|i| format!("Question number {i}: what is {i} plus {}?", i * 7))
        .collect();
    let expected: Vec<_> = prompts
        .iter()
        .map(|p| Ok(encoder.encode(&[p.as_str()])?))
        .collect::<Result<_>>()?;
    let opts = BatchOptions {
        max_batch: 8,
        max_wait: Duration::from_millis(5),
        queue: 64,
    };
    let batcher = Batcher::start(vec![Box::new(encoder)], opts)?;
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let b = batcher.clone();
            let p = p.clone();
            tokio::spawn(async move { b.embed(vec![p], None).await })
        })
        .collect();
    let mut max_batch = 0;
    for (h, want) in handles.into_iter().zip(&expected) {
        let got = h.await??;
        max_batch = max_batch.max(got.batch_size);
        assert_eq!(got.items[0].tokens, want.token_counts[0]);
        let c = crate::cosine(&got.items[0].vector, &want.embeddings[0]);
        assert!(c > 0.99999, "batched vs alone: cosine {c}");
    }
    assert!(max_batch > 1, "concurrent prompts shared a forward pass");
    assert!(
        max_batch <= 8,
        "batches never exceed max_batch ({max_batch})"
    );
    Ok(())
}

#[tokio::test]
async fn a_job_larger_than_max_batch_is_split_and_keeps_its_order() -> Result<()> {
    let model = SimulatedModel {
        cost: Duration::ZERO,
        dim: 8,
    };
    let batcher = Batcher::start(
        vec![Box::new(model)],
        BatchOptions {
            max_batch: 3,
            max_wait: Duration::ZERO,
            queue: 4,
        },
    )?;
    let texts: Vec<String> = [
        "a",
        "much longer text here",
        "bb",
        "ccc ccc",
        "d",
        "eeeeeeeeee",
        "f",
    ]
    .map(String::from)
    .into();
    let got = batcher.embed(texts.clone(), None).await?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want = routemesh_classifier_worker::EmbeddingModel::encode(&model, &refs)?;
    let vectors: Vec<_> = got.items.iter().map(|i| i.vector.clone()).collect();
    assert_eq!(
        vectors, want.embeddings,
        "answers come back in submission order"
    );
    assert!(got.batch_size <= 3);
    Ok(())
}

#[tokio::test]
async fn a_full_queue_is_refused_and_an_expired_job_is_not_run() -> Result<()> {
    let model = SimulatedModel {
        cost: Duration::from_millis(200),
        dim: 8,
    };
    let batcher = Batcher::start(
        vec![Box::new(model)],
        BatchOptions {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue: 1,
        },
    )?;
    // Occupies the replica for 200 ms.
    let busy = tokio::spawn({
        let b = batcher.clone();
        async move { b.embed(vec!["first".into()], None).await }
    });
    // Real: the replica is an OS thread and the model sleeps the thread, so
    // paused time would not move either; and nothing observable says the
    // replica has taken the job (the queue reads 0 before and after), so
    // this gives it 50 ms to.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Waits in the single queue slot; its deadline passes before the replica is free.
    let expired = tokio::spawn({
        let b = batcher.clone();
        async move {
            b.embed(
                vec!["second".into()],
                Some(Instant::now() + Duration::from_millis(20)),
            )
            .await
        }
    });
    // Until it is queued (polled, not a fixed wait): the queue is full then.
    let until = Instant::now() + Duration::from_secs(10);
    while batcher.queued() < 1 {
        assert!(Instant::now() < until, "the second job was never queued");
        // Real time: the queue is drained by replica OS threads on
        // `std` time, which tokio's paused time cannot move.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused = batcher.embed(vec!["third".into()], None).await;
    assert!(
        matches!(refused, Err(ClassifyError::Overloaded { .. })),
        "{refused:?}"
    );
    assert!(busy.await?.is_ok());
    let expired = expired.await?;
    assert!(
        matches!(expired, Err(ClassifyError::DeadlineExceeded)),
        "{expired:?}"
    );
    Ok(())
}
