//! Signals: what the classifier learned about one prompt.
//!
//! Signals are positional: `route_scores[i]` belongs to the i-th configured
//! embedding route and `keywords[i]` to the i-th keyword rule, so the rule
//! engine looks them up by index, never by name. Names are attached only at
//! the edges (the dry-run endpoint).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Index of an embedding route in [`crate::config::SignalsConfig::routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteId(pub usize);

/// Index of a keyword rule in [`crate::config::SignalsConfig::keywords`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeywordId(pub usize);

/// Index of a classifier in [`crate::config::SignalsConfig::classifiers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassifierId(pub usize);

/// Signals computed for one prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Cosine similarity of the prompt to each embedding route (the best
    /// match among the route's examples), in configuration order.
    pub route_scores: Vec<f32>,
    /// Whether each keyword rule matched, in configuration order.
    pub keywords: Vec<bool>,
    /// Length of the prompt in encoder tokens, before truncation, including
    /// the two special tokens; `None` when the classifier did not answer.
    pub prompt_tokens: Option<u32>,
    /// The prompt was longer than the encoder reads
    /// (`encoder.max_total_tokens`): only its first tokens were embedded
    /// (the length signal still counts every token).
    pub truncated: bool,
    /// Windows of at most `encoder.max_tokens` tokens the prompt was read
    /// in (1 for a short prompt); 0 when the classifier did not answer.
    #[serde(default)]
    pub windows: u32,
    /// Personal data found in the prompt, in text order, not overlapping.
    pub pii: Vec<PiiSpan>,
    /// The prompt's language, when it could be told reliably.
    pub language: Option<Language>,
    /// What each configured classifier said, in configuration order; `None`
    /// when it did not run (a degraded classifier).
    pub classifiers: Vec<Option<ClassifierResult>>,
}

/// A classifier's output with the names of its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierResult {
    pub labels: Arc<[String]>,
    pub output: Output,
    /// A binary head's recorded decision rule: its positive label is the
    /// top label when its probability reaches `min` (else the other label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
}

/// "Label `index` wins from probability `min`" (a binary head's threshold,
/// chosen on validation data by the trainer).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub index: usize,
    pub min: f32,
}

impl ClassifierResult {
    /// The probability of `label` (scores), or the best score of a span
    /// with that label (spans); `None` for an unknown label or no span.
    pub fn probability(&self, label: &str) -> Option<f32> {
        match &self.output {
            Output::Scores { probs } => {
                let i = self.labels.iter().position(|l| l == label)?;
                probs.get(i).copied()
            }
            Output::Spans { spans } => spans
                .iter()
                .filter(|s| s.label == label)
                .map(|s| s.score)
                .reduce(f32::max),
        }
    }

    /// The top label: with a [`Threshold`], the positive label when it
    /// reaches the threshold and the best other label when not; otherwise
    /// the most probable label. For spans, the label of the best-scored span.
    pub fn top(&self) -> Option<&str> {
        match &self.output {
            Output::Scores { probs } => {
                let skip = match self.threshold {
                    Some(t) if probs.get(t.index).is_some_and(|p| *p >= t.min) => {
                        return self.labels.get(t.index).map(String::as_str);
                    }
                    Some(t) => Some(t.index),
                    None => None,
                };
                let (i, _) = probs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != skip)
                    .max_by(|a, b| a.1.total_cmp(b.1))?;
                self.labels.get(i).map(String::as_str)
            }
            Output::Spans { spans } => spans
                .iter()
                .max_by(|a, b| a.score.total_cmp(&b.score))
                .map(|s| s.label.as_str()),
        }
    }
}

/// A detected language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Language {
    /// ISO 639-3 code (`eng`, `deu`, `cmn`).
    pub code: String,
    /// The detector's confidence in [0, 1].
    pub confidence: f32,
}

/// A kind of personal data: the structured kinds the deterministic
/// detectors find (email … ip_address), and the kinds a token head (a PII
/// tagger over the encoder's token states, `heads/pii`) finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    CreditCard,
    UsSsn,
    Iban,
    IpAddress,
    Person,
    StreetAddress,
    Location,
    Organization,
    DateTime,
    Title,
    Age,
    Nrp,
    ZipCode,
    UsDriverLicense,
    DomainName,
}

impl PiiKind {
    pub const ALL: [PiiKind; 17] = [
        Self::Email,
        Self::Phone,
        Self::CreditCard,
        Self::UsSsn,
        Self::Iban,
        Self::IpAddress,
        Self::Person,
        Self::StreetAddress,
        Self::Location,
        Self::Organization,
        Self::DateTime,
        Self::Title,
        Self::Age,
        Self::Nrp,
        Self::ZipCode,
        Self::UsDriverLicense,
        Self::DomainName,
    ];

    /// The name used in config and output (`credit_card`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::CreditCard => "credit_card",
            Self::UsSsn => "us_ssn",
            Self::Iban => "iban",
            Self::IpAddress => "ip_address",
            Self::Person => "person",
            Self::StreetAddress => "street_address",
            Self::Location => "location",
            Self::Organization => "organization",
            Self::DateTime => "date_time",
            Self::Title => "title",
            Self::Age => "age",
            Self::Nrp => "nrp",
            Self::ZipCode => "zip_code",
            Self::UsDriverLicense => "us_driver_license",
            Self::DomainName => "domain_name",
        }
    }

    /// The kind with this config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Found by the regular-expression detectors (always on); the others
    /// need a PII token head among the classifiers.
    pub fn is_structured(self) -> bool {
        matches!(
            self,
            Self::Email
                | Self::Phone
                | Self::CreditCard
                | Self::UsSsn
                | Self::Iban
                | Self::IpAddress
        )
    }

    /// What redaction puts in place of a value (`[CREDIT_CARD]`).
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Email => "[EMAIL]",
            Self::Phone => "[PHONE]",
            Self::CreditCard => "[CREDIT_CARD]",
            Self::UsSsn => "[US_SSN]",
            Self::Iban => "[IBAN]",
            Self::IpAddress => "[IP_ADDRESS]",
            Self::Person => "[PERSON]",
            Self::StreetAddress => "[ADDRESS]",
            Self::Location => "[LOCATION]",
            Self::Organization => "[ORGANIZATION]",
            Self::DateTime => "[DATE_TIME]",
            Self::Title => "[TITLE]",
            Self::Age => "[AGE]",
            Self::Nrp => "[NRP]",
            Self::ZipCode => "[ZIP_CODE]",
            Self::UsDriverLicense => "[DRIVER_LICENSE]",
            Self::DomainName => "[DOMAIN_NAME]",
        }
    }
}

/// Where a piece of personal data sits in a text: byte offsets, end
/// exclusive, always on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

impl Signals {
    /// Similarity to a route; `None` when the signal is missing (a degraded
    /// classifier), which no predicate treats as a match.
    pub fn route_score(&self, id: RouteId) -> Option<f32> {
        self.route_scores.get(id.0).copied()
    }

    /// Whether a keyword rule matched; false for an unknown index.
    pub fn keyword(&self, id: KeywordId) -> bool {
        self.keywords.get(id.0).copied().unwrap_or(false)
    }
}

/// What a scorer says about one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// A probability per label, in the scorer's label order.
    Scores { probs: Vec<f32> },
    /// Labelled spans (token classification): byte offsets into the text.
    Spans { spans: Vec<Span> },
}

/// A labelled piece of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(p_positive: f32, threshold: Option<Threshold>) -> ClassifierResult {
        ClassifierResult {
            labels: vec!["benign".to_owned(), "injection".to_owned()].into(),
            output: Output::Scores {
                probs: vec![1.0 - p_positive, p_positive],
            },
            threshold,
        }
    }

    #[test]
    fn a_binary_heads_threshold_decides_its_top_label() {
        let t = Some(Threshold { index: 1, min: 0.4 });
        assert_eq!(
            binary(0.45, t).top(),
            Some("injection"),
            "above the threshold, below argmax"
        );
        assert_eq!(binary(0.35, t).top(), Some("benign"));
        assert_eq!(
            binary(0.45, None).top(),
            Some("benign"),
            "without a threshold: argmax"
        );
        let strict = Some(Threshold { index: 1, min: 0.9 });
        assert_eq!(
            binary(0.8, strict).top(),
            Some("benign"),
            "argmax says injection, the threshold does not"
        );
    }
}
