//! Signals from a prompt and its embedding: embedding-route similarity,
//! keyword rules, prompt length and personal data.
//!
//! Pure math over embeddings, so it runs wherever the config is (the
//! gateway), whichever transport produced the embeddings.

use regex::Regex;
use routemesh_common::config::SignalsConfig;
use routemesh_common::signals::{ClassifierResult, Language, Output, Threshold};
use routemesh_common::{PiiKind, PiiSpan, Signals};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::pii::PiiDetector;

/// Computes [`Signals`] for the configured routes and keyword rules.
#[derive(Debug, Clone)]
pub struct SignalComputer {
    /// Unit-length embeddings of each route's examples, in route order.
    routes: Vec<Vec<Vec<f32>>>,
    keywords: Vec<Regex>,
    pii: PiiDetector,
    /// Name, labels and threshold of each configured classifier, in
    /// configuration order.
    classifiers: Vec<ClassifierMeta>,
}

impl SignalComputer {
    /// Every route example, in route order: embed these and pass the vectors,
    /// in the same order, to [`SignalComputer::new`].
    pub fn example_texts(config: &SignalsConfig) -> Vec<String> {
        config
            .routes
            .iter()
            .flat_map(|r| r.examples.iter().cloned())
            .collect()
    }

    /// Builds the computer from the embeddings of [`Self::example_texts`].
    ///
    /// Returns `None` when the number of vectors does not match.
    pub fn new(config: &SignalsConfig, example_embeddings: Vec<Vec<f32>>) -> Option<Self> {
        let expected: usize = config.routes.iter().map(|r| r.examples.len()).sum();
        if example_embeddings.len() != expected {
            return None;
        }
        let mut vectors = example_embeddings.into_iter();
        let routes = config
            .routes
            .iter()
            .map(|r| vectors.by_ref().take(r.examples.len()).collect())
            .collect();
        let keywords = config.keywords.iter().map(|k| k.matcher.clone()).collect();
        Some(Self {
            routes,
            keywords,
            pii: PiiDetector::new(),
            classifiers: Vec::new(),
        })
    }

    /// Adds the configured classifiers (in configuration order) whose
    /// outputs become [`Signals::classifiers`].
    pub fn with_classifiers(mut self, classifiers: Vec<ClassifierMeta>) -> Self {
        self.classifiers = classifiers;
        self
    }

    /// The classifiers' names, in configuration order: what to ask the
    /// classifier to run.
    pub fn classifier_names(&self) -> Vec<String> {
        self.classifiers.iter().map(|c| c.name.clone()).collect()
    }

    /// Signals of one prompt. `embedding` must be unit length (as the encoder
    /// returns it), so a dot product is the cosine similarity. Without an
    /// embedding (a degraded classifier) only the keyword and PII signals
    /// are computed; route scores and length stay missing and match no rule.
    pub fn compute(&self, text: &str, embedding: Option<PromptEmbedding<'_>>) -> Signals {
        let keywords = self.keywords.iter().map(|re| re.is_match(text)).collect();
        let pii = self.pii.detect(text);
        let language = whatlang::detect(text)
            .filter(whatlang::Info::is_reliable)
            .map(|i| Language {
                code: i.lang().code().to_owned(),
                confidence: i.confidence() as f32,
            });
        let Some(e) = embedding else {
            return Signals {
                keywords,
                pii,
                language,
                classifiers: vec![None; self.classifiers.len()],
                ..Signals::default()
            };
        };
        let route_scores = self
            .routes
            .iter()
            .map(|examples| {
                examples
                    .iter()
                    .map(|x| dot(x, e.vector))
                    .fold(f32::NEG_INFINITY, f32::max)
                    .max(-1.0)
            })
            .collect();
        let pii = crate::pii::merge(text, pii, self.tagged_pii(e.outputs));
        Signals {
            route_scores,
            keywords,
            prompt_tokens: Some(u32::try_from(e.tokens).unwrap_or(u32::MAX)),
            truncated: e.truncated,
            windows: u32::try_from(e.windows).unwrap_or(u32::MAX),
            pii,
            language,
            classifiers: self
                .classifiers
                .iter()
                .map(|c| {
                    e.outputs.get(&c.name).map(|output| ClassifierResult {
                        labels: c.labels.clone(),
                        output: output.clone(),
                        threshold: c.threshold,
                    })
                })
                .collect(),
        }
    }
}

impl SignalComputer {
    /// The personal data the PII taggers among the classifiers found in
    /// `text`: spans whose label is a kind's name.
    fn tagged_pii(&self, outputs: &BTreeMap<String, Output>) -> Vec<PiiSpan> {
        let mut out = Vec::new();
        for c in self.classifiers.iter().filter(|c| c.is_pii_tagger()) {
            if let Some(Output::Spans { spans }) = outputs.get(&c.name) {
                out.extend(spans.iter().filter_map(|s| {
                    Some(PiiSpan {
                        kind: PiiKind::from_name(&s.label)?,
                        start: s.start,
                        end: s.end,
                    })
                }));
            }
        }
        out // merge() drops what does not fit the text
    }
}

/// What the gateway knows of a configured classifier from its folder.
#[derive(Debug, Clone)]
pub struct ClassifierMeta {
    pub name: String,
    pub labels: Arc<[String]>,
    /// A binary head's recorded decision threshold.
    pub threshold: Option<Threshold>,
}

impl ClassifierMeta {
    /// A PII tagger: a span classifier whose every label names a kind of
    /// personal data (`person`, `street_address`, …). Its spans join the
    /// detectors' in [`Signals::pii`].
    pub fn is_pii_tagger(&self) -> bool {
        !self.labels.is_empty() && self.labels.iter().all(|l| PiiKind::from_name(l).is_some())
    }
}

/// A prompt's embedding as [`SignalComputer::compute`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct PromptEmbedding<'a> {
    pub vector: &'a [f32],
    pub tokens: usize,
    /// Longer than the encoder reads: only the first tokens were embedded.
    pub truncated: bool,
    /// Windows the encoder read the prompt in (1 for a short prompt).
    pub windows: usize,
    /// The classifiers' outputs, by name.
    pub outputs: &'a BTreeMap<String, Output>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
