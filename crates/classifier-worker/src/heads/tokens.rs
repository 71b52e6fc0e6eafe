//! Token heads: entity spans from the encoder's token states.
//!
//! A token head is a [`Head`] whose `head.json` has `tokens`
//! ([`TokenInput`]): its layers read, for every token of the text, the
//! token's last hidden state, the states of `context` neighbours on each
//! side (within the token's window) and [`SHAPE_FEATURES`] flags read from
//! the text itself (the encoder is uncased: whether a word is capitalised
//! only the text knows). Its labels are BIO tags (`O`, `B-person`,
//! `I-person`, …, [`bio_labels`]).
//!
//! Decoding works on words: a run of tokens with no gap between them is one
//! word (a punctuation token is a word of its own), and a word takes the
//! label of its first token. `B-X` opens an entity of type X, `I-X`
//! continues an open X (or opens one), `O` closes. A span runs from its
//! first word's first byte to its last word's last byte, so offsets are the
//! tokenizer's own, mapped back to the text: always on character
//! boundaries, never inside a word.

use std::path::Path;

use routemesh_inference::Dense;

use super::error::HeadError;
use super::info::TokenInput;
use super::model::Head;
use crate::encoder::TokenStates;

/// The shape features' version, as `tokens.shape` in `head.json`.
pub const SHAPE_VERSION: &str = "v1";

/// Shape features per token (version [`SHAPE_VERSION`]).
pub const SHAPE_FEATURES: usize = 10;

/// The labels of a tagger for `entities`: `O`, then `B-e`, `I-e` for each.
pub fn bio_labels(entities: &[&str]) -> Vec<String> {
    let mut labels = vec!["O".to_owned()];
    for e in entities {
        labels.push(format!("B-{e}"));
        labels.push(format!("I-{e}"));
    }
    labels
}

/// `Some((begins, entity))` for `B-entity` / `I-entity`; `None` for `O`
/// and anything else.
pub fn entity_of(label: &str) -> Option<(bool, &str)> {
    if let Some(e) = label.strip_prefix("B-") {
        return (!e.is_empty()).then_some((true, e));
    }
    let e = label.strip_prefix("I-")?;
    (!e.is_empty()).then_some((false, e))
}

/// A text's tokens as a token head reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenFeatures {
    /// `tokens × width`, row-major.
    pub x: Vec<f32>,
    pub width: usize,
    /// Byte offsets of each token in the text, in text order.
    pub offsets: Vec<(usize, usize)>,
}

impl TokenFeatures {
    /// Rows (tokens) held.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the text had no token with text.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// The inputs of every token of `text` that has text (special tokens have
/// none): its state, `context` neighbours' each side, its shape.
pub fn token_features(text: &str, tokens: &TokenStates, context: usize) -> TokenFeatures {
    let dim = tokens.width;
    let width = (2 * context + 1) * dim + SHAPE_FEATURES;
    // (window, position, offsets) of every token with text, in text order
    let mut at = Vec::new();
    for (w, window) in tokens.windows.iter().enumerate() {
        if dim == 0 || window.states.len() != window.offsets.len() * dim {
            continue; // a window that does not add up reads as no tokens
        }
        for (p, offsets) in window.offsets.iter().enumerate() {
            if let Some((start, end)) = *offsets
                && start < end
                && text.get(start..end).is_some()
            {
                at.push((w, p, (start, end)));
            }
        }
    }
    let spans: Vec<(usize, usize)> = at.iter().map(|&(_, _, o)| o).collect();
    let mut x = Vec::with_capacity(at.len() * width);
    for (i, &(w, p, _)) in at.iter().enumerate() {
        let window = &tokens.windows[w];
        let rows = window.offsets.len();
        for d in 0..=2 * context {
            let q = (p + d).checked_sub(context).filter(|&q| q < rows);
            match q {
                Some(q) => x.extend_from_slice(&window.states[q * dim..(q + 1) * dim]),
                None => x.extend(std::iter::repeat_n(0.0, dim)),
            }
        }
        x.extend(shape(text, &spans, i));
    }
    TokenFeatures {
        x,
        width,
        offsets: spans,
    }
}

/// Shape flags of token `i` of `spans` (its byte offsets in `text`).
fn shape(text: &str, spans: &[(usize, usize)], i: usize) -> [f32; SHAPE_FEATURES] {
    let (start, end) = spans[i];
    let token = &text[start..end];
    let glued_before = i > 0 && spans[i - 1].1 == start;
    let glued_after = spans.get(i + 1).is_some_and(|n| n.0 == end);
    let gap_before = if i == 0 {
        &text[..start]
    } else {
        text.get(spans[i - 1].1..start).unwrap_or("")
    };
    let line_start = i == 0 || gap_before.contains('\n');
    // the word this token belongs to: glued word tokens before it
    let mut first = i;
    while first > 0
        && spans[first - 1].1 == spans[first].0
        && is_word(text_of(text, spans, first - 1))
    {
        first -= 1;
    }
    let word_upper = text_of(text, spans, first)
        .chars()
        .next()
        .is_some_and(char::is_uppercase);
    let letters = token.chars().filter(|c| c.is_alphabetic()).count();
    let chars = token.chars().count();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    [
        flag(token.chars().next().is_some_and(char::is_uppercase)),
        flag(letters > 0 && !token.chars().any(char::is_lowercase)),
        flag(token.chars().any(|c| c.is_ascii_digit())),
        flag(token.chars().all(|c| c.is_ascii_digit())),
        flag(!token.chars().any(char::is_alphanumeric)),
        flag(glued_before),
        flag(line_start),
        flag(word_upper),
        flag(glued_after),
        (chars as f32 / 10.0).min(1.0),
    ]
}

fn text_of<'t>(text: &'t str, spans: &[(usize, usize)], i: usize) -> &'t str {
    text.get(spans[i].0..spans[i].1).unwrap_or("")
}

/// A token of letters or digits (not punctuation): part of a word.
fn is_word(token: &str) -> bool {
    token.chars().any(char::is_alphanumeric)
}

/// An entity a token head found.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSpan {
    /// The entity type (`person`): the label without its `B-`/`I-`.
    pub label: String,
    /// Byte offsets into the text, on character boundaries.
    pub start: usize,
    pub end: usize,
    /// Mean over the span's words of their label's probability.
    pub score: f32,
}

/// A loaded token head: its layers packed for the engine's GEMM.
#[derive(Debug)]
pub struct TokenHead {
    head: Head,
    input: TokenInput,
    layers: Vec<Dense>,
    /// Per label: `(begins, entity index)`; `None` for `O`.
    tags: Vec<Option<(bool, usize)>>,
    entities: Vec<String>,
}

impl TokenHead {
    /// Reads a token head's folder.
    pub fn load(dir: &Path) -> Result<Self, HeadError> {
        let head = Head::load(dir)?;
        Self::new(head).map_err(|message| HeadError::Invalid {
            path: dir.to_owned(),
            message,
        })
    }

    /// A token head from a loaded [`Head`] whose `head.json` has `tokens`.
    pub fn new(head: Head) -> Result<Self, String> {
        let input = head
            .info()
            .tokens
            .clone()
            .ok_or("head.json has no `tokens`: this is a head on the pooled embedding")?;
        let mut entities: Vec<String> = Vec::new();
        let mut tags = Vec::with_capacity(head.labels().len());
        for label in head.labels() {
            let tag = match entity_of(label) {
                Some((begins, e)) => {
                    let k = match entities.iter().position(|x| x == e) {
                        Some(k) => k,
                        None => {
                            entities.push(e.to_owned());
                            entities.len() - 1
                        }
                    };
                    Some((begins, k))
                }
                None if label == "O" => None,
                None => return Err(format!("label `{label}` is not O, B-… or I-…")),
            };
            tags.push(tag);
        }
        let layers = head
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Dense::new(&l.weight, &l.bias, l.outputs, l.inputs)
                    .ok_or_else(|| format!("layers.{i} has inconsistent sizes"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            head,
            input,
            layers,
            tags,
            entities,
        })
    }

    /// The entity types it finds, in label order.
    pub fn entities(&self) -> &[String] {
        &self.entities
    }

    /// The underlying head (labels, record).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Width of the states it reads (the encoder's).
    pub fn dim(&self) -> usize {
        self.head.info().encoder.dim
    }

    /// What it reads of each token.
    pub fn input(&self) -> &TokenInput {
        &self.input
    }

    /// Softmax probabilities over the labels, `tokens × labels`.
    pub fn probabilities(&self, features: &TokenFeatures) -> Vec<f32> {
        let labels = self.head.labels().len();
        if features.is_empty() || features.width != self.layers[0].inputs() {
            return Vec::new();
        }
        let mut x = features.x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, i < last);
        }
        for row in x.chunks_exact_mut(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        x
    }

    /// The entities in `text`, whose token states are `tokens`, in text
    /// order. Token states of another width find nothing.
    pub fn tag(&self, text: &str, tokens: &TokenStates) -> Vec<TokenSpan> {
        if tokens.width != self.dim() {
            return Vec::new();
        }
        let features = token_features(text, tokens, self.input.context);
        let probs = self.probabilities(&features);
        self.decode(text, &features.offsets, &probs)
    }

    /// Spans from per-token probabilities (`offsets.len() × labels`).
    pub fn decode(&self, text: &str, offsets: &[(usize, usize)], probs: &[f32]) -> Vec<TokenSpan> {
        let labels = self.tags.len();
        if offsets.is_empty() || probs.len() != offsets.len() * labels {
            return Vec::new();
        }
        struct Open {
            entity: usize,
            start: usize,
            end: usize,
            sum: f32,
            words: usize,
        }
        let close = |open: Open, out: &mut Vec<TokenSpan>| {
            out.push(TokenSpan {
                label: self.entities[open.entity].clone(),
                start: open.start,
                end: open.end,
                score: open.sum / open.words as f32,
            });
        };
        let mut out = Vec::new();
        let mut open: Option<Open> = None;
        let mut i = 0;
        while i < offsets.len() {
            // the word: glued word tokens after its first
            let mut j = i + 1;
            let word_token = |k: usize| is_word(text.get(offsets[k].0..offsets[k].1).unwrap_or(""));
            if word_token(i) {
                while j < offsets.len() && offsets[j].0 == offsets[j - 1].1 && word_token(j) {
                    j += 1;
                }
            }
            let row = &probs[i * labels..(i + 1) * labels];
            let best = super::model::argmax(row);
            let (start, end) = (offsets[i].0, offsets[j - 1].1);
            match self.tags[best] {
                None => {
                    if let Some(o) = open.take() {
                        close(o, &mut out);
                    }
                }
                Some((begins, entity)) => match open.as_mut() {
                    Some(o) if !begins && o.entity == entity => {
                        o.end = end;
                        o.sum += row[best];
                        o.words += 1;
                    }
                    _ => {
                        if let Some(o) = open.take() {
                            close(o, &mut out);
                        }
                        open = Some(Open {
                            entity,
                            start,
                            end,
                            sum: row[best],
                            words: 1,
                        });
                    }
                },
            }
            i = j;
        }
        if let Some(o) = open {
            close(o, &mut out);
        }
        join_fragments(text, out)
    }
}

/// Joins consecutive spans of one type (other than `person`: two names side
/// by side are two people) that only whitespace and punctuation separate,
/// at most [`JOIN_GAP`] bytes: an address the tagger began again at a line
/// break or a comma is one address.
fn join_fragments(text: &str, spans: Vec<TokenSpan>) -> Vec<TokenSpan> {
    let mut out: Vec<TokenSpan> = Vec::with_capacity(spans.len());
    for s in spans {
        if let Some(last) = out.last_mut()
            && last.label == s.label
            && s.label != "person"
            && s.start >= last.end
            && s.start - last.end <= JOIN_GAP
            && text.get(last.end..s.start).is_some_and(|g| {
                g.chars()
                    .all(|c| c.is_whitespace() || matches!(c, ',' | '.' | '-' | '/' | '#'))
            })
        {
            last.score = (last.score + s.score) / 2.0;
            last.end = s.end;
            continue;
        }
        out.push(s);
    }
    out
}

/// Most bytes between two fragments of one span.
const JOIN_GAP: usize = 4;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::encoder::WindowStates;
    use crate::heads::info::{Architecture, EncoderInfo, HeadInfo};
    use crate::heads::model::Layer;

    /// A tagger over 1-dim states whose state is the label to predict.
    fn tagger(entities: &[&str]) -> TokenHead {
        let labels = bio_labels(entities);
        let n = labels.len();
        let input = TokenInput {
            context: 0,
            shape: SHAPE_VERSION.into(),
        };
        let inputs = input.width(1);
        // logit of label c = 10 · (1 − |state − c|): the state picks the label
        let mut weight = vec![0.0; n * inputs];
        let mut bias = vec![0.0; n];
        for c in 0..n {
            weight[c * inputs] = 10.0 * c as f32;
            bias[c] = -5.0 * (c * c) as f32;
        }
        let info = HeadInfo {
            format: 1,
            name: "pii".into(),
            description: String::new(),
            labels,
            encoder: EncoderInfo {
                name: "test".into(),
                sha256: String::new(),
                dim: 1,
                max_tokens: None,
            },
            architecture: Architecture::from_hidden(vec![]),
            positive_label: None,
            threshold: None,
            windows: Default::default(),
            tokens: Some(input),
            span_metrics: None,
            data: Default::default(),
            metrics: Default::default(),
            training: Default::default(),
        };
        let layer = Layer {
            inputs,
            outputs: n,
            weight,
            bias,
        };
        TokenHead::new(Head::new(info, vec![layer]).unwrap()).unwrap()
    }

    /// States for `text`'s whitespace- and punctuation-split tokens, each
    /// with the label index given, in one window between [CLS] and [SEP].
    fn states(text: &str, tokens: &[(&str, usize)]) -> TokenStates {
        let mut offsets = vec![None];
        let mut states = vec![-1.0];
        let mut from = 0;
        for (t, label) in tokens {
            let start = from + text[from..].find(t).unwrap();
            offsets.push(Some((start, start + t.len())));
            states.push(*label as f32);
            from = start + t.len();
        }
        offsets.push(None);
        states.push(-1.0);
        TokenStates {
            width: 1,
            windows: vec![WindowStates { states, offsets }],
        }
    }

    #[test]
    fn bio_words_become_spans_with_exact_byte_offsets() {
        // labels: O=0, B-person=1, I-person=2, B-street=3, I-street=4
        let head = tagger(&["person", "street"]);
        let text = "Ask Zoë Szöllösy, at 12 Main St.";
        let st = states(
            text,
            &[
                ("Ask", 0),
                ("Zoë", 1),
                ("Sz", 2),
                ("öllösy", 2), // a continuation piece: same word
                (",", 0),
                ("at", 0),
                ("12", 3),
                ("Main", 4),
                ("St", 4),
                (".", 0),
            ],
        );
        let spans = head.tag(text, &st);
        let got: Vec<(&str, &str)> = spans
            .iter()
            .map(|s| (s.label.as_str(), &text[s.start..s.end]))
            .collect();
        assert_eq!(
            got,
            vec![("person", "Zoë Szöllösy"), ("street", "12 Main St")]
        );
        assert!(spans.iter().all(|s| s.score > 0.9 && s.score <= 1.0));
    }

    #[test]
    fn a_word_takes_its_first_tokens_label_and_begin_splits_entities() {
        let head = tagger(&["person"]);
        let text = "Anna Bob";
        // "Anna" is B, its glued piece says O but belongs to the word;
        // "Bob" begins a second person.
        let st = states(text, &[("An", 1), ("na", 0), ("Bob", 1)]);
        let got: Vec<&str> = head
            .tag(text, &st)
            .iter()
            .map(|s| &text[s.start..s.end])
            .collect();
        assert_eq!(got, vec!["Anna", "Bob"]);
    }

    #[test]
    fn inside_without_begin_opens_and_another_type_closes() {
        let head = tagger(&["person", "street"]);
        let text = "x Lee Road y";
        let st = states(text, &[("x", 0), ("Lee", 2), ("Road", 4), ("y", 0)]);
        let got: Vec<(String, &str)> = head
            .tag(text, &st)
            .iter()
            .map(|s| (s.label.clone(), &text[s.start..s.end]))
            .collect();
        assert_eq!(
            got,
            vec![("person".to_owned(), "Lee"), ("street".to_owned(), "Road")]
        );
    }

    #[test]
    fn fragments_of_one_address_join_but_two_names_stay_two() {
        let head = tagger(&["person", "street"]);
        let text = "12 Main St,\nSpringfield; Ann Lee";
        let st = states(
            text,
            &[
                ("12", 3),
                ("Main", 4),
                ("St", 4),
                (",", 0),
                ("Springfield", 3),
                (";", 0),
                ("Ann", 1),
                ("Lee", 1),
            ],
        );
        let got: Vec<&str> = head
            .tag(text, &st)
            .iter()
            .map(|s| &text[s.start..s.end])
            .collect();
        assert_eq!(got, vec!["12 Main St,\nSpringfield", "Ann", "Lee"]);
    }

    #[test]
    fn states_of_another_width_or_broken_windows_find_nothing() {
        let head = tagger(&["person"]);
        let text = "Anna";
        let mut st = states(text, &[("Anna", 1)]);
        assert_eq!(head.tag(text, &st).len(), 1);
        st.width = 2;
        assert!(head.tag(text, &st).is_empty());
        let mut st = states(text, &[("Anna", 1)]);
        st.windows[0].states.pop();
        assert!(head.tag(text, &st).is_empty());
        // offsets outside the text or off a character boundary are skipped
        let mut st = states("Zoë", &[("Zoë", 1)]);
        st.windows[0].offsets[1] = Some((0, 3)); // inside the ë
        assert!(head.tag("Zoë", &st).is_empty());
    }

    #[test]
    fn shape_flags_read_casing_digits_and_spacing() {
        let text = "Hi McDONALD,\n42x";
        let spans = [(0, 2), (3, 5), (5, 11), (11, 12), (13, 15), (15, 16)];
        let f = |i| shape(text, &spans, i);
        assert_eq!(f(0)[0], 1.0); // "Hi" capitalised
        assert_eq!(f(0)[6], 1.0); // first token: a line start
        assert_eq!(f(2)[1], 1.0); // "DONALD" all caps
        assert_eq!(f(2)[5], 1.0); // glued to "Mc"
        assert_eq!(f(2)[7], 1.0); // its word "McDONALD" starts upper
        assert_eq!(f(3)[4], 1.0); // "," punctuation
        assert_eq!(f(4)[3], 1.0); // "42" all digits
        assert_eq!(f(4)[6], 1.0); // after a newline
        assert_eq!(f(4)[8], 1.0); // glued to "x"
        assert_eq!(f(1)[2], 0.0); // "Mc" has no digit
    }

    #[test]
    fn features_hold_neighbours_within_the_window() {
        let text = "a b";
        let st = TokenStates {
            width: 2,
            windows: vec![WindowStates {
                states: vec![9.0, 9.0, 1.0, 1.0, 2.0, 2.0, 8.0, 8.0],
                offsets: vec![None, Some((0, 1)), Some((2, 3)), None],
            }],
        };
        let f = token_features(text, &st, 1);
        assert_eq!(f.width, 3 * 2 + SHAPE_FEATURES);
        assert_eq!(f.offsets, vec![(0, 1), (2, 3)]);
        assert_eq!(&f.x[..6], &[9.0, 9.0, 1.0, 1.0, 2.0, 2.0]); // [CLS] a b
        let second = &f.x[f.width..f.width + 6];
        assert_eq!(second, &[1.0, 1.0, 2.0, 2.0, 8.0, 8.0]); // a b [SEP]
    }
}
