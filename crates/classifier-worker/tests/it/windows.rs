//! Long prompts read in windows with the real model and the shipped
//! injection head: nothing past `max_tokens` is dropped any more, only
//! what lies past `max_total_tokens`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use routemesh_classifier_worker::{
    BatchOptions, Batcher, Encoder, EncoderOptions, Replica, scorer,
};
use routemesh_common::signals::{Output, Threshold};
use routemesh_test_support::prompts::{INJECTION, JAILBREAK, benign_text};

use crate::{cosine, model_dir};

/// Windows of at most `max_tokens` for a text of `tokens` (`[CLS]` and `[SEP]` included).
fn windows_for(tokens: usize, max_tokens: usize) -> usize {
    (tokens - 2).div_ceil(max_tokens - 2)
}

#[test]
fn a_long_text_is_read_in_windows_up_to_max_total_tokens() -> Result<()> {
    let encoder = Encoder::load(&model_dir(), &EncoderOptions::new(256))?;
    let long = benign_text(45);
    let short = "What is the capital of France?";
    let out = encoder.encode(&[short, &long])?;

    // A short text: one window, the text's embedding bit for bit, and the
    // same as an encoder that reads one window only.
    assert_eq!(out.windows[0].len(), 1);
    assert_eq!(out.windows[0][0], out.embeddings[0]);
    let one = EncoderOptions {
        max_total_tokens: 256,
        ..EncoderOptions::new(256)
    };
    let cut = Encoder::load(&model_dir(), &one)?;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let alone = encoder.encode(&[short])?;
    assert_eq!(
        bits(&alone.embeddings[0]),
        bits(&cut.encode(&[short])?.embeddings[0])
    );

    // The long text: every token read, in windows of at most 256.
    let tokens = out.token_counts[1];
    assert!(tokens > 3000, "{tokens} tokens");
    assert!(!out.truncated[1], "{tokens} tokens are within 4096");
    let windows = &out.windows[1];
    assert_eq!(windows.len(), windows_for(tokens, 256));
    let in_windows: usize = out.window_tokens[1].iter().sum();
    assert_eq!(
        in_windows,
        tokens + 2 * (windows.len() - 1),
        "each window adds [CLS] and [SEP]"
    );
    assert!(out.window_tokens[1].iter().all(|&t| t <= 256));
    // Its embedding is the token-weighted mean of the windows, unit length.
    let mut mean = vec![0f32; encoder.dim()];
    for (w, &t) in windows.iter().zip(&out.window_tokens[1]) {
        mean.iter_mut().zip(w).for_each(|(m, x)| *m += t as f32 * x);
    }
    let c = cosine(&mean, &out.embeddings[1]);
    assert!(c > 0.99999, "combined vs weighted mean: {c}");
    let norm: f32 = out.embeddings[1].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");

    // A total of 1,024: the text is truncated there, still counted whole.
    let bounded = EncoderOptions {
        max_total_tokens: 1024,
        ..EncoderOptions::new(256)
    };
    let out = Encoder::load(&model_dir(), &bounded)?.encode(&[&long])?;
    assert!(out.truncated[0]);
    assert_eq!(out.token_counts[0], tokens, "counted before truncation");
    assert_eq!(out.windows[0].len(), windows_for(1024, 256));
    assert_eq!(out.window_tokens[0].iter().sum::<usize>(), 1024 + 2 * 4);
    Ok(())
}

/// p(injection) and whether it reaches the head's recorded threshold.
fn injection(outputs: &BTreeMap<String, Output>, t: &Threshold) -> Result<(f32, bool)> {
    let Some(Output::Scores { probs }) = outputs.get("injection") else {
        anyhow::bail!("no injection scores: {outputs:?}");
    };
    let p = *probs.get(t.index).context("no positive label")?;
    Ok((p, p >= t.min))
}

/// A batcher running the shipped injection head behind an encoder with
/// these options, and the head's recorded threshold.
fn injection_batcher(opts: &EncoderOptions) -> Result<(Batcher, Threshold)> {
    let dir = routemesh_test_support::workspace().join("heads/injection");
    let threshold = scorer::read_threshold(&dir).context("the injection head has a threshold")?;
    let replica = Replica {
        model: Box::new(Encoder::load(&model_dir(), opts)?),
        scorers: vec![scorer::load_scorer("injection", &dir).map_err(anyhow::Error::msg)?],
    };
    let batch = BatchOptions {
        max_batch: 8,
        max_wait: Duration::ZERO,
        queue: 8,
    };
    Ok((Batcher::start_replicas(vec![replica], batch)?, threshold))
}

/// Issue 17, 3: everything past `max_tokens` was dropped, so an injection
/// after 3,000 tokens of benign text never reached the injection head.
/// Now every window is scored and the head (`windows: max`) fires when any
/// window does.
///
/// What the shipped head makes of a window depends on its mix: a trailing
/// jailbreak longer than a window has the last window to itself and is
/// flagged whatever the benign text's length; a one-sentence injection
/// shares its window with some 240 benign tokens and, measured after
/// benign texts of 40 to 51 questions, reached the threshold once in 12
/// (p 0.52; the others at most 0.30, most below 0.05). The head misses
/// such mixes in short prompts too (two questions, then a three-sentence
/// injection: p 0.009), so the sentence is only checked to reach the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_injection_after_3000_benign_tokens_reaches_the_injection_head() -> Result<()> {
    let benign = benign_text(45);
    let hidden = format!("{benign}{JAILBREAK}");
    let sentence = format!("{benign}{INJECTION}");
    let texts = vec![
        INJECTION.to_owned(),
        JAILBREAK.to_owned(),
        benign.clone(),
        hidden.clone(),
        sentence,
    ];
    let (batcher, threshold) = injection_batcher(&EncoderOptions::new(256))?;
    let got = batcher
        .embed_with(texts, vec!["injection".into()], None)
        .await?;
    let [injection_alone, jailbreak, benign, hidden, sentence] = got.items.as_slice() else {
        anyhow::bail!("five items expected, got {}", got.items.len());
    };
    for (name, item) in [
        ("the injection", injection_alone),
        ("the jailbreak", jailbreak),
    ] {
        let (p, flagged) = injection(&item.outputs, &threshold)?;
        assert!(flagged, "{name} alone is flagged: p {p}");
    }
    assert!(benign.tokens > 3000, "{} benign tokens", benign.tokens);
    let (p_benign, flagged) = injection(&benign.outputs, &threshold)?;
    assert!(
        !flagged,
        "the benign text alone is not flagged: p {p_benign} in {} windows",
        benign.windows
    );
    let (p, flagged) = injection(&hidden.outputs, &threshold)?;
    assert!(
        flagged,
        "the jailbreak after {} benign tokens is flagged: p {p} (threshold {})",
        benign.tokens, threshold.min
    );
    assert!(
        !hidden.truncated && hidden.windows > benign.windows,
        "{} windows",
        hidden.windows
    );
    let (p, _) = injection(&sentence.outputs, &threshold)?;
    assert!(
        p != p_benign && !sentence.truncated,
        "the sentence after the benign text is read: p {p} vs {p_benign} without it"
    );

    // Read as before windows (one window of 256), the jailbreak never is:
    // the head sees exactly what it sees for the benign text.
    let one = EncoderOptions {
        max_total_tokens: 256,
        ..EncoderOptions::new(256)
    };
    let (cut, _) = injection_batcher(&one)?;
    let texts = vec![benign_text(45), format!("{}{JAILBREAK}", benign_text(45))];
    let got = cut
        .embed_with(texts, vec!["injection".into()], None)
        .await?;
    let (p_benign, _) = injection(&got.items[0].outputs, &threshold)?;
    let (p, flagged) = injection(&got.items[1].outputs, &threshold)?;
    assert!(got.items[1].truncated && got.items[1].windows == 1);
    assert!(
        !flagged && p.to_bits() == p_benign.to_bits(),
        "cut at 256 tokens, the jailbreak is never read: p {p}, benign {p_benign}"
    );
    Ok(())
}
