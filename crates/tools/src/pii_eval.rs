//! Measuring the PII detectors on labelled data (JSONL records with `text`
//! and character-offset `spans` of presidio entity types, as in
//! `shared/data/pii/pii_train.jsonl`).

use std::collections::BTreeMap;

use routemesh_common::{PiiKind, PiiSpan};
use serde::Deserialize;

use routemesh_signals::pii::PiiDetector;

/// One labelled record.
#[derive(Debug, Deserialize)]
pub struct Record {
    pub text: String,
    pub spans: Vec<LabelledSpan>,
}

/// A gold span: character offsets, end exclusive, presidio type name.
#[derive(Debug, Deserialize)]
pub struct LabelledSpan {
    pub start: usize,
    pub end: usize,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The presidio entity type a kind corresponds to.
pub fn presidio_type(kind: PiiKind) -> &'static str {
    match kind {
        PiiKind::Email => "EMAIL_ADDRESS",
        PiiKind::Phone => "PHONE_NUMBER",
        PiiKind::CreditCard => "CREDIT_CARD",
        PiiKind::UsSsn => "US_SSN",
        PiiKind::Iban => "IBAN_CODE",
        PiiKind::IpAddress => "IP_ADDRESS",
        PiiKind::Person => "PERSON",
        PiiKind::StreetAddress => "STREET_ADDRESS",
        PiiKind::Location => "GPE",
        PiiKind::Organization => "ORGANIZATION",
        PiiKind::DateTime => "DATE_TIME",
        PiiKind::Title => "TITLE",
        PiiKind::Age => "AGE",
        PiiKind::Nrp => "NRP",
        PiiKind::ZipCode => "ZIP_CODE",
        PiiKind::UsDriverLicense => "US_DRIVER_LICENSE",
        PiiKind::DomainName => "DOMAIN_NAME",
    }
}

/// Counts for one kind. A prediction is right when it overlaps a gold span
/// of the same type; a gold span is found when a prediction of its type
/// overlaps it. `exact` counts predictions with exactly the gold offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub gold: usize,
    pub predicted: usize,
    pub true_positives: usize,
    pub found: usize,
    pub exact: usize,
}

impl KindCounts {
    pub fn precision(&self) -> Option<f64> {
        (self.predicted > 0).then(|| self.true_positives as f64 / self.predicted as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        (self.gold > 0).then(|| self.found as f64 / self.gold as f64)
    }
}

/// Runs the detector over the records and counts per kind.
pub fn evaluate(detector: &PiiDetector, records: &[Record]) -> BTreeMap<PiiKind, KindCounts> {
    let mut counts: BTreeMap<PiiKind, KindCounts> = PiiKind::ALL
        .into_iter()
        .map(|k| (k, KindCounts::default()))
        .collect();
    for r in records {
        let gold: Vec<(PiiKind, usize, usize)> = r
            .spans
            .iter()
            .filter_map(|s| {
                let kind = PiiKind::ALL
                    .into_iter()
                    .find(|k| presidio_type(*k) == s.kind)?;
                Some((
                    kind,
                    byte_offset(&r.text, s.start)?,
                    byte_offset(&r.text, s.end)?,
                ))
            })
            .collect();
        let predicted: Vec<PiiSpan> = detector.detect(&r.text);
        let overlaps = |a: (usize, usize), b: (usize, usize)| a.0 < b.1 && b.0 < a.1;
        for &(kind, start, end) in &gold {
            let c = counts.entry(kind).or_default();
            c.gold += 1;
            if predicted
                .iter()
                .any(|p| p.kind == kind && overlaps((p.start, p.end), (start, end)))
            {
                c.found += 1;
            }
        }
        for p in &predicted {
            let c = counts.entry(p.kind).or_default();
            c.predicted += 1;
            if gold
                .iter()
                .any(|&(k, s, e)| k == p.kind && overlaps((p.start, p.end), (s, e)))
            {
                c.true_positives += 1;
            }
            if gold
                .iter()
                .any(|&(k, s, e)| k == p.kind && (s, e) == (p.start, p.end))
            {
                c.exact += 1;
            }
        }
    }
    counts
}

/// The byte offset of character `index` (the end of the text for its length).
fn byte_offset(text: &str, index: usize) -> Option<usize> {
    text.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .nth(index)
}

/// A markdown table of the counts.
pub fn table(counts: &BTreeMap<PiiKind, KindCounts>) -> String {
    let pct = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.3}", v));
    let mut out = String::from(
        "| type | gold | predicted | precision | recall | exact spans |\n|---|--:|--:|--:|--:|--:|\n",
    );
    for (kind, c) in counts {
        out.push_str(&format!(
            "| {} ({}) | {} | {} | {} | {} | {} |\n",
            kind.name(),
            presidio_type(*kind),
            c.gold,
            c.predicted,
            pct(c.precision()),
            pct(c.recall()),
            c.exact
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, spans: &[(usize, usize, &str)]) -> Record {
        Record {
            text: text.to_owned(),
            spans: spans
                .iter()
                .map(|&(start, end, kind)| LabelledSpan {
                    start,
                    end,
                    kind: kind.to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn counts_hits_misses_and_false_alarms_per_kind() {
        // "é" is two bytes: gold offsets are characters.
        let records = [
            record("é mail a@b.io now", &[(7, 13, "EMAIL_ADDRESS")]),
            record(
                "ssn 123-45-6789 and 4111 1111 1111 1111",
                &[(4, 15, "US_SSN")],
            ),
            record("ip 10.0.0.1", &[]),
        ];
        let c = evaluate(&PiiDetector::new(), &records);
        let email = c[&PiiKind::Email];
        assert_eq!(
            (email.gold, email.predicted, email.found, email.exact),
            (1, 1, 1, 1)
        );
        let card = c[&PiiKind::CreditCard];
        assert_eq!(
            (card.gold, card.predicted, card.true_positives),
            (0, 1, 0),
            "unlabelled card: a false alarm"
        );
        assert_eq!(card.precision(), Some(0.0));
        assert_eq!(card.recall(), None);
        assert_eq!(c[&PiiKind::IpAddress].predicted, 1);
        assert!(table(&c).contains("| email (EMAIL_ADDRESS) | 1 | 1 | 1.000 | 1.000 | 1 |"));
    }
}
