//! Deterministic personal-data detectors with byte spans: email, phone,
//! credit card (Luhn), US SSN, IBAN (ISO 7064 mod-97), IPv4/IPv6 — and
//! redaction with typed placeholders.
//!
//! Each detector is a regex for candidates plus a validator (checksums,
//! ranges, digit counts). Where candidates overlap, the more specific kind
//! wins (a card number is not also a phone number).

use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;
use routemesh_common::{PiiKind, PiiSpan};

/// The detectors, compiled once.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    /// In priority order: earlier kinds win overlaps.
    detectors: Vec<(PiiKind, Regex)>,
    /// Words that make a weak phone candidate (two digit groups, no `+` or
    /// area code in parentheses) count, when they come shortly before it.
    phone_context: Regex,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::new()
    }
}

// The patterns are constants; a typo is caught by the unit tests.
#[allow(clippy::expect_used)]
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in PII pattern compiles")
}

impl PiiDetector {
    pub fn new() -> Self {
        let detectors = vec![
            (
                PiiKind::Email,
                re(
                    r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)*\.[a-z]{2,24}\b",
                ),
            ),
            (
                PiiKind::Iban,
                re(r"(?i)\b[a-z]{2}\d{2}(?:[ ]?[a-z0-9]{4}){2,7}(?:[ ]?[a-z0-9]{1,3})?\b"),
            ),
            (PiiKind::CreditCard, re(r"\b\d(?:[ -]?\d){11,18}\b")),
            (PiiKind::UsSsn, re(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")),
            (
                PiiKind::IpAddress,
                re(
                    r"(?i)\b(?:\d{1,3}\.){3}\d{1,3}\b|(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:%[0-9a-z]+)?",
                ),
            ),
            (
                PiiKind::Phone,
                re(
                    r"(?i)(?:(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,8}){1,4}|\+?\d{10,13})(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?",
                ),
            ),
        ];
        let phone_context = re(
            r"(?i)phone|call|\btel\b|mobile|cell|fax|contact|number|reach|dial|text me|sms|whatsapp|answer",
        );
        Self {
            detectors,
            phone_context,
        }
    }

    /// Every piece of personal data in `text`, in text order, not overlapping.
    pub fn detect(&self, text: &str) -> Vec<PiiSpan> {
        let mut spans: Vec<PiiSpan> = Vec::new();
        for (kind, re) in &self.detectors {
            for m in re.find_iter(text) {
                let candidate = m.as_str();
                if !standalone(text, m.start(), m.end()) || !valid(*kind, candidate) {
                    continue;
                }
                if *kind == PiiKind::CreditCard && text[..m.start()].ends_with('+') {
                    continue; // `+44…` is a phone number
                }
                if *kind == PiiKind::Phone
                    && weak_phone(candidate)
                    && !self.phone_context_before(text, m.start())
                {
                    continue;
                }
                if spans.iter().any(|s| s.start < m.end() && m.start() < s.end) {
                    continue; // a more specific kind already covers it
                }
                spans.push(PiiSpan {
                    kind: *kind,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
        spans.sort_by_key(|s| s.start);
        spans
    }
}

impl PiiDetector {
    fn phone_context_before(&self, text: &str, start: usize) -> bool {
        let mut from = start.saturating_sub(PHONE_CONTEXT_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        self.phone_context.is_match(&text[from..start])
    }
}

/// How far before a weak phone candidate its context word may be.
const PHONE_CONTEXT_BYTES: usize = 40;

/// A phone candidate that could as well be a house number and a postcode:
/// fewer than three digit groups, no `+`, no `(area)`.
fn weak_phone(s: &str) -> bool {
    let groups = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .count();
    !s.starts_with('+') && !s.contains('(') && groups < 3
}

/// Not glued to more digits or letters on either side (`\b` is not enough
/// for patterns that start with `+` or `(`, or end inside a longer number).
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !glued(before) && !glued(after)
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

fn valid(kind: PiiKind, s: &str) -> bool {
    match kind {
        PiiKind::Email => true,
        PiiKind::Iban => iban_valid(s),
        PiiKind::CreditCard => {
            let d = digits(s);
            (12..=19).contains(&d.len()) && luhn_valid(&d) && !d.iter().all(|x| *x == d[0])
        }
        PiiKind::UsSsn => ssn_valid(&digits(s)),
        PiiKind::IpAddress => {
            if s.contains('.') {
                s.parse::<Ipv4Addr>().is_ok()
            } else {
                let addr = s.split('%').next().unwrap_or(s);
                addr.matches(':').count() >= 2 && addr.parse::<Ipv6Addr>().is_ok()
            }
        }
        PiiKind::Phone => {
            let n = digits(s).len();
            (7..=15).contains(&n) && !looks_like_date(s)
        }
        // no regex finds these: a PII token head does
        _ => false,
    }
}

/// The Luhn checksum of a card number's digits.
pub fn luhn_valid(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// ISO 13616 IBAN: length 15–34, then mod-97 of the rearranged number is 1.
pub fn iban_valid(s: &str) -> bool {
    let compact: Vec<char> = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged {
        let Some(v) = c.to_digit(36) else {
            return false;
        };
        // Letters expand to two digits (A = 10 … Z = 35).
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn ssn_valid(d: &[u32]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// `2024-05-17`, `2024-05-17 11`, `17.05.2024`, `05/17/2024`: dates (and
/// date-times), not phone numbers.
fn looks_like_date(s: &str) -> bool {
    let parts: Vec<u32> = s
        .split(['-', '.', '/', ' '])
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect();
    let lens: Vec<usize> = s.split(['-', '.', '/', ' ']).map(str::len).collect();
    let year = |i: usize| lens[i] == 4 && (1900..=2099).contains(&parts[i]);
    let day_month =
        |a: u32, b: u32| (1..=31).contains(&a) && (1..=31).contains(&b) && (a <= 12 || b <= 12);
    let date = parts.len() >= 3
        && ((year(0) && day_month(parts[1], parts[2]))
            || (year(2) && day_month(parts[0], parts[1])));
    // A date may be followed by an hour (`2000-04-16 11` before `:34`).
    date && (parts.len() == 3 || (parts.len() == 4 && parts[3] <= 23))
}

/// The detectors' spans and a token head's together, in text order, not
/// overlapping: a token head's span that overlaps a detector's is dropped
/// (checksums and formats are more precise than a tagger), and so is one
/// that is empty, past the end of `text` or off a character boundary.
pub fn merge(text: &str, mut detected: Vec<PiiSpan>, tagged: Vec<PiiSpan>) -> Vec<PiiSpan> {
    let fits = |s: &PiiSpan| {
        s.start < s.end
            && s.end <= text.len()
            && text.is_char_boundary(s.start)
            && text.is_char_boundary(s.end)
    };
    let mut extra: Vec<PiiSpan> = Vec::new();
    for t in tagged.into_iter().filter(fits) {
        let clash = |s: &PiiSpan| s.start < t.end && t.start < s.end;
        if !detected.iter().any(clash) && !extra.iter().any(clash) {
            extra.push(t);
        }
    }
    detected.extend(extra);
    detected.sort_by_key(|s| s.start);
    detected
}

/// `text` with every span replaced by its kind's placeholder. Spans that
/// overlap an earlier one or do not fit the text are skipped.
pub fn redact(text: &str, spans: &[PiiSpan]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in spans {
        if s.start < at
            || s.end > text.len()
            || !text.is_char_boundary(s.start)
            || !text.is_char_boundary(s.end)
        {
            continue;
        }
        out.push_str(&text[at..s.start]);
        out.push_str(s.kind.placeholder());
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests;
