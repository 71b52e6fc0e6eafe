//! The encoder reproduces sentence-transformers (the independent reference
//! in tests/fixtures, made by make_reference.py).

use anyhow::Result;
use routemesh_classifier_worker::{Encoder, EncoderOptions};
use routemesh_common::config::EncoderPrecision;
use serde::Deserialize;

use crate::{cosine, model_dir};

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    tokens: usize,
    embedding: Vec<f32>,
}

/// Windows of `max_tokens` and a total of one window: what
/// sentence-transformers does (truncation at `max_seq_length`), in f32.
fn one_window(max_tokens: usize) -> EncoderOptions {
    EncoderOptions {
        max_total_tokens: max_tokens,
        precision: EncoderPrecision::F32,
        ..EncoderOptions::new(max_tokens)
    }
}

fn reference() -> Result<Reference> {
    let text = include_str!("../fixtures/reference_embeddings.json");
    Ok(serde_json::from_str(text)?)
}

#[test]
fn embeddings_match_sentence_transformers() -> Result<()> {
    let r = reference()?;
    let encoder = Encoder::load(&model_dir(), &one_window(r.max_seq_length))?;
    assert_eq!(encoder.dim(), 384);
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    // One batch with mixed lengths: padding must not change any embedding.
    let out = encoder.encode(&texts)?;
    assert_eq!(out.embeddings.len(), r.items.len());
    for (i, item) in r.items.iter().enumerate() {
        let c = cosine(&out.embeddings[i], &item.embedding);
        assert!(
            c >= 0.9999,
            "item {i} ({:.30}…): cosine {c:.7} < 0.9999",
            item.text
        );
        assert_eq!(out.token_counts[i], item.tokens, "item {i}: token count");
        assert_eq!(
            out.truncated[i],
            item.tokens > r.max_seq_length,
            "item {i}: truncation flag"
        );
        let norm: f32 = out.embeddings[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "item {i}: not unit length ({norm})"
        );
    }
    assert!(
        out.truncated.iter().any(|t| *t),
        "the fixture includes a text longer than the maximum"
    );
    Ok(())
}

/// Every precision stays within the accuracy gate's minimum (cosine 0.995,
/// crates/inference/tests/gate.rs) of sentence-transformers on the fixture.
#[test]
fn every_precision_stays_near_sentence_transformers() -> Result<()> {
    let r = reference()?;
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    for precision in EncoderPrecision::ALL {
        let opts = EncoderOptions {
            precision,
            ..one_window(r.max_seq_length)
        };
        let encoder = Encoder::load(&model_dir(), &opts)?;
        let out = encoder.encode(&texts)?;
        for (i, item) in r.items.iter().enumerate() {
            let c = cosine(&out.embeddings[i], &item.embedding);
            assert!(
                c >= 0.995,
                "{precision} ({}), item {i}: cosine {c:.5}",
                encoder.precision_in_use()
            );
        }
    }
    Ok(())
}

#[test]
fn batching_does_not_change_embeddings() -> Result<()> {
    let r = reference()?;
    let encoder = Encoder::load(&model_dir(), &EncoderOptions::new(r.max_seq_length))?;
    let texts: Vec<&str> = r.items.iter().map(|i| i.text.as_str()).collect();
    let batch = encoder.encode(&texts)?;
    for (i, text) in texts.iter().enumerate() {
        let single = encoder.encode(&[text])?;
        let c = cosine(&single.embeddings[0], &batch.embeddings[i]);
        assert!(c > 0.99999, "item {i}: alone vs in a batch, cosine {c}");
    }
    assert!(encoder.encode(&[])?.embeddings.is_empty());
    Ok(())
}

#[test]
fn a_shorter_maximum_truncates_more_and_still_counts_every_token() -> Result<()> {
    let r = reference()?;
    let encoder = Encoder::load(&model_dir(), &one_window(16))?;
    let long = r
        .items
        .iter()
        .find(|i| i.tokens > 100)
        .map(|i| i.text.as_str())
        .unwrap_or_default();
    let out = encoder.encode(&[long, "hi"])?;
    assert!(out.truncated[0] && !out.truncated[1]);
    assert!(out.token_counts[0] > 100, "counted before truncation");
    Ok(())
}

#[test]
fn a_maximum_beyond_the_model_is_refused() {
    let err = Encoder::load(&model_dir(), &EncoderOptions::new(4096))
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("max_tokens 4096"), "{err}");
}
