//! Classifiers that run after the encoder in the same batch: trained heads
//! on the pooled embeddings of a text's windows, and full HF models on the
//! text. The encoder runs once per prompt whatever the number of scorers.

pub use routemesh_common::signals::{Output, Span};

/// A text's embeddings as a scorer sees them.
#[derive(Debug, Clone, Copy)]
pub struct TextEmbedding<'a> {
    /// The text's unit vector: the token-weighted mean of its windows
    /// (what similarity and the cache use).
    pub combined: &'a [f32],
    /// One unit vector per window of at most the encoder's `max_tokens`,
    /// in text order; one for a short text.
    pub windows: &'a [Vec<f32>],
    /// Tokens in each window, special tokens included.
    pub window_tokens: &'a [usize],
    /// Every token's state, when a scorer that
    /// [`needs_tokens`](Scorer::needs_tokens) was asked for.
    pub tokens: Option<&'a crate::encoder::TokenStates>,
}

/// A classifier the batcher runs on the texts and embeddings of a batch.
pub trait Scorer: Send + 'static {
    /// The name requests use to ask for it.
    fn name(&self) -> &str;
    /// Whether it reads the token states ([`TextEmbedding::tokens`]): the
    /// encoder then keeps them for the batches that ask for this scorer.
    fn needs_tokens(&self) -> bool {
        false
    }
    /// One output per text; `embeddings[i]` holds the embeddings of `texts[i]`.
    fn score(
        &self,
        texts: &[&str],
        embeddings: &[TextEmbedding<'_>],
    ) -> Result<Vec<Output>, String>;
}

/// Loads the scorer for a classifier folder: a trained head (`head.json`)
/// runs on the embedding; a full HF model (`config.json`) on the text.
pub fn load_scorer(name: &str, dir: &std::path::Path) -> Result<Box<dyn Scorer>, String> {
    if dir.join("head.json").is_file() {
        let head = crate::heads::Head::load(dir).map_err(|e| e.to_string())?;
        if head.info().tokens.is_some() {
            let head = crate::heads::TokenHead::new(head)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            return Ok(Box::new(TokenHeadScorer {
                name: name.to_owned(),
                head,
            }));
        }
        return Ok(Box::new(HeadScorer {
            name: name.to_owned(),
            head,
        }));
    }
    if dir.join("config.json").is_file() {
        let model = crate::hf::HfClassifier::load(dir, HF_MAX_TOKENS).map_err(|e| e.to_string())?;
        return Ok(Box::new(HfScorer {
            name: name.to_owned(),
            model,
        }));
    }
    Err(format!(
        "{}: neither head.json (a trained head) nor config.json (an HF classifier) found",
        dir.display()
    ))
}

/// The label names of a classifier folder, without loading its weights:
/// `labels` of `head.json`, or `id2label` of an HF `config.json`.
pub fn read_labels(dir: &std::path::Path) -> Result<Vec<String>, String> {
    let read = |file: &str| -> Result<serde_json::Value, String> {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    if dir.join("head.json").is_file() {
        let v = read("head.json")?;
        let labels = v["labels"]
            .as_array()
            .ok_or_else(|| format!("{}: no `labels` list", dir.join("head.json").display()))?;
        let labels: Vec<String> = labels
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "a label is not a string".to_owned())
            })
            .collect::<Result<_, _>>()?;
        if v.get("tokens").is_none_or(serde_json::Value::is_null) {
            return Ok(labels);
        }
        // a token head's spans carry entity names: `B-person` → `person`
        let mut entities: Vec<String> = Vec::new();
        for l in &labels {
            if let Some((_, e)) = crate::heads::entity_of(l)
                && !entities.iter().any(|x| x == e)
            {
                entities.push(e.to_owned());
            }
        }
        return Ok(entities);
    }
    if dir.join("config.json").is_file() {
        let v = read("config.json")?;
        let map = v["id2label"]
            .as_object()
            .ok_or_else(|| format!("{}: no `id2label` map", dir.join("config.json").display()))?;
        let mut pairs: Vec<(usize, String)> = map
            .iter()
            .map(|(k, l)| {
                Ok((
                    k.parse::<usize>()
                        .map_err(|_| format!("id2label key `{k}` is not a number"))?,
                    l.as_str().unwrap_or_default().to_owned(),
                ))
            })
            .collect::<Result<_, String>>()?;
        pairs.sort();
        let labels = pairs.into_iter().map(|(_, l)| l);
        let token = v["architectures"][0]
            .as_str()
            .is_some_and(|a| a.ends_with("ForTokenClassification"));
        if !token {
            return Ok(labels.collect());
        }
        // Spans carry entity names: `B-PER`/`I-PER` → `PER`; `O` is no entity.
        let mut entities: Vec<String> = Vec::new();
        for l in labels {
            let e = l
                .strip_prefix("B-")
                .or_else(|| l.strip_prefix("I-"))
                .unwrap_or(&l)
                .to_owned();
            if e != "O" && !entities.contains(&e) {
                entities.push(e);
            }
        }
        return Ok(entities);
    }
    Err(format!(
        "{}: neither head.json (a trained head) nor config.json (an HF classifier) found",
        dir.display()
    ))
}

/// Tokens an HF classifier sees per text (BERT-family models take 512).
const HF_MAX_TOKENS: usize = 512;

/// A full HF classifier: sequence models give label probabilities, token
/// models labelled spans.
struct HfScorer {
    name: String,
    model: crate::hf::HfClassifier,
}

impl Scorer for HfScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(
        &self,
        texts: &[&str],
        _embeddings: &[TextEmbedding<'_>],
    ) -> Result<Vec<Output>, String> {
        match self.model.kind() {
            crate::hf::HfKind::Sequence => {
                let probs = self.model.classify(texts).map_err(|e| e.to_string())?;
                Ok(probs
                    .into_iter()
                    .map(|probs| Output::Scores { probs })
                    .collect())
            }
            crate::hf::HfKind::Token => {
                let tagged = self.model.tag(texts).map_err(|e| e.to_string())?;
                Ok(tagged
                    .into_iter()
                    .map(|spans| Output::Spans {
                        spans: spans
                            .into_iter()
                            .map(|s| Span {
                                label: s.label,
                                start: s.start,
                                end: s.end,
                                score: s.score,
                            })
                            .collect(),
                    })
                    .collect())
            }
        }
    }
}

/// A trained head on the pooled embedding of every window of a text,
/// pooled over the windows as its `head.json` says (`windows`).
struct HeadScorer {
    name: String,
    head: crate::heads::Head,
}

impl Scorer for HeadScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(
        &self,
        _texts: &[&str],
        embeddings: &[TextEmbedding<'_>],
    ) -> Result<Vec<Output>, String> {
        embeddings
            .iter()
            .map(|e| {
                if let Some(w) = e.windows.iter().find(|w| w.len() != self.head.dim()) {
                    return Err(format!(
                        "the head takes {}-dim embeddings but the encoder gives {} (trained for another encoder?)",
                        self.head.dim(),
                        w.len()
                    ));
                }
                Ok(Output::Scores {
                    probs: self.head.predict_windows(e.windows, e.window_tokens),
                })
            })
            .collect()
    }
}

/// A token head: entity spans from the token states of every window.
struct TokenHeadScorer {
    name: String,
    head: crate::heads::TokenHead,
}

impl Scorer for TokenHeadScorer {
    fn name(&self) -> &str {
        &self.name
    }

    fn needs_tokens(&self) -> bool {
        true
    }

    fn score(
        &self,
        texts: &[&str],
        embeddings: &[TextEmbedding<'_>],
    ) -> Result<Vec<Output>, String> {
        texts
            .iter()
            .zip(embeddings)
            .map(|(text, e)| {
                let Some(tokens) = e.tokens else {
                    return Err("the encoder kept no token states for a token head".to_owned());
                };
                if tokens.width != self.head.dim() {
                    return Err(format!(
                        "the head takes {}-dim token states but the encoder gives {} (trained for another encoder?)",
                        self.head.dim(),
                        tokens.width
                    ));
                }
                let spans = self
                    .head
                    .tag(text, tokens)
                    .into_iter()
                    .map(|s| Span {
                        label: s.label,
                        start: s.start,
                        end: s.end,
                        score: s.score,
                    })
                    .collect();
                Ok(Output::Spans { spans })
            })
            .collect()
    }
}

/// A binary head's recorded threshold (`positive_label` and `threshold` in
/// `head.json`) as an index into its labels; `None` for other folders.
pub fn read_threshold(dir: &std::path::Path) -> Option<routemesh_common::signals::Threshold> {
    let text = std::fs::read_to_string(dir.join("head.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let positive = v["positive_label"].as_str()?;
    let min = v["threshold"].as_f64()? as f32;
    let index = v["labels"]
        .as_array()?
        .iter()
        .position(|l| l.as_str() == Some(positive))?;
    Some(routemesh_common::signals::Threshold { index, min })
}
